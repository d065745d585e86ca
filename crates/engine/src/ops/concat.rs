//! Concat along an axis; the gradient splits the output gradient back into the pieces.

use super::{impl_any, input, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{norm_axis, Data, Tensor};

/// Joins tensors along `axis`.
#[derive(Debug, Clone)]
pub struct Concat {
    /// The axis (may be negative).
    pub axis: i64,
}

impl Concat {
    fn plan(&self, inputs: &[Option<&Tensor>]) -> Result<(usize, usize, Vec<usize>)> {
        let first = input("Concat", inputs, 0)?;
        let r = first.shape().len();
        let a = norm_axis("Concat", self.axis, r)?;
        let mut shape = first.shape().to_vec();
        shape[a] = 0;
        for t in inputs.iter().flatten() {
            let s = t.shape();
            if s.len() != r || (0..r).any(|d| d != a && s[d] != first.shape()[d]) {
                return Err(shape_err(
                    "Concat",
                    format!("{s:?} does not fit {:?} on axis {a}", first.shape()),
                ));
            }
            shape[a] += s[a];
        }
        let outer: usize = shape[..a].iter().product();
        Ok((a, outer, shape))
    }
}

impl Op for Concat {
    fn name(&self) -> &'static str {
        "Concat"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let (a, outer, shape) = self.plan(inputs)?;
        let parts: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
        let chunk = |t: &Tensor| t.shape()[a..].iter().product::<usize>();
        if parts.iter().all(|t| t.is_f32()) {
            let mut out = Vec::with_capacity(shape.iter().product());
            for o in 0..outer {
                for t in &parts {
                    let c = chunk(t);
                    out.extend_from_slice(&t.fs()[o * c..(o + 1) * c]);
                }
            }
            Ok(Tensor::f32(shape, out))
        } else {
            let mut out = Vec::with_capacity(shape.iter().product());
            for o in 0..outer {
                for t in &parts {
                    let c = chunk(t);
                    match t.data() {
                        Data::I64(v) => out.extend_from_slice(&v[o * c..(o + 1) * c]),
                        Data::F32(_) => return Err(shape_err("Concat", "mixed element types")),
                    }
                }
            }
            Ok(Tensor::i64(shape, out))
        }
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _o: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let (a, outer, shape) = self.plan(inputs)?;
        let row: usize = shape[a..].iter().product();
        let g = grad.fs();
        let mut res = vec![None; need.len()];
        let mut start = 0;
        for (i, t) in inputs.iter().enumerate() {
            let Some(t) = t else { continue };
            let c: usize = t.shape()[a..].iter().product();
            if need[i] {
                let mut d = Vec::with_capacity(t.len());
                for o in 0..outer {
                    d.extend_from_slice(&g[o * row + start..o * row + start + c]);
                }
                res[i] = Some(Tensor::f32(t.shape().to_vec(), d));
            }
            start += c;
        }
        Ok(res)
    }
    impl_any!();
}
