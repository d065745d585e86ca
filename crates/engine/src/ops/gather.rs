//! Gather along an axis with int64 indices (negative indices count from the end).
//! Gradient: scatter-add into the data's shape.

use super::{impl_any, input, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{norm_axis, Data, Tensor};

/// Picks slices of `data` along `axis` at `indices`.
#[derive(Debug, Clone)]
pub struct Gather {
    /// The axis (may be negative).
    pub axis: i64,
}

impl Gather {
    #[allow(clippy::type_complexity)]
    fn plan(
        &self,
        data: &Tensor,
        idx: &Tensor,
    ) -> Result<(usize, usize, usize, Vec<usize>, Vec<usize>)> {
        let s = data.shape();
        let a = norm_axis("Gather", self.axis, s.len())?;
        let n = s[a] as i64;
        let ids = idx
            .to_i64_vec()
            .into_iter()
            .map(|i| {
                let j = if i < 0 { i + n } else { i };
                if (0..n).contains(&j) {
                    Ok(j as usize)
                } else {
                    Err(shape_err(
                        "Gather",
                        format!("index {i} out of range for axis of size {n}"),
                    ))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let outer: usize = s[..a].iter().product();
        let inner: usize = s[a + 1..].iter().product();
        let mut shape = s[..a].to_vec();
        shape.extend_from_slice(idx.shape());
        shape.extend_from_slice(&s[a + 1..]);
        Ok((outer, s[a], inner, ids, shape))
    }
}

fn take<T: Copy>(v: &[T], outer: usize, n: usize, inner: usize, ids: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(outer * ids.len() * inner);
    for o in 0..outer {
        for &i in ids {
            let at = (o * n + i) * inner;
            out.extend_from_slice(&v[at..at + inner]);
        }
    }
    out
}

impl Op for Gather {
    fn name(&self) -> &'static str {
        "Gather"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let data = input("Gather", inputs, 0)?;
        let idx = input("Gather", inputs, 1)?;
        let (outer, n, inner, ids, shape) = self.plan(data, idx)?;
        Ok(match data.data() {
            Data::F32(v) => Tensor::f32(shape, take(v, outer, n, inner, &ids)),
            Data::I64(v) => Tensor::i64(shape, take(v, outer, n, inner, &ids)),
        })
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _o: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        if need[0] {
            let data = input("Gather", inputs, 0)?;
            let (outer, n, inner, ids, _) = self.plan(data, input("Gather", inputs, 1)?)?;
            let g = grad.fs();
            let mut dx = vec![0.0f32; data.len()];
            let mut k = 0;
            for o in 0..outer {
                for &i in &ids {
                    let at = (o * n + i) * inner;
                    for j in 0..inner {
                        dx[at + j] += g[k];
                        k += 1;
                    }
                }
            }
            res[0] = Some(Tensor::f32(data.shape().to_vec(), dx));
        }
        Ok(res)
    }
    impl_any!();
}
