//! CumSum along an axis given as input 1, optionally exclusive and/or reversed. Gradient: the
//! cumulative sum of the output gradient in the opposite direction (same exclusivity).

use super::{impl_any, input, Op};
use crate::error::Result;
use crate::tensor::{norm_axis, Data, Tensor};

/// Cumulative sum.
#[derive(Debug, Clone)]
pub struct CumSum {
    /// Leave out the element itself.
    pub exclusive: bool,
    /// Sum from the end.
    pub reverse: bool,
}

fn scan<T: Copy + Default + std::ops::Add<Output = T>>(
    v: &[T],
    shape: &[usize],
    axis: usize,
    exclusive: bool,
    reverse: bool,
) -> Vec<T> {
    let inner: usize = shape[axis + 1..].iter().product();
    let dim = shape[axis];
    let outer: usize = shape[..axis].iter().product();
    let mut out = vec![T::default(); v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = T::default();
            for k in 0..dim {
                let k = if reverse { dim - 1 - k } else { k };
                let at = (o * dim + k) * inner + i;
                if exclusive {
                    out[at] = acc;
                    acc = acc + v[at];
                } else {
                    acc = acc + v[at];
                    out[at] = acc;
                }
            }
        }
    }
    out
}

impl Op for CumSum {
    fn name(&self) -> &'static str {
        "CumSum"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input("CumSum", inputs, 0)?;
        let a = input("CumSum", inputs, 1)?.to_i64_vec();
        let axis = norm_axis("CumSum", a.first().copied().unwrap_or(0), x.shape().len())?;
        let s = x.shape().to_vec();
        Ok(match x.data() {
            Data::F32(v) => Tensor::f32(s.clone(), scan(v, &s, axis, self.exclusive, self.reverse)),
            Data::I64(v) => Tensor::i64(s.clone(), scan(v, &s, axis, self.exclusive, self.reverse)),
        })
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut out = vec![None; need.len()];
        if need[0] {
            let a = input("CumSum", inputs, 1)?.to_i64_vec();
            let s = grad.shape().to_vec();
            let axis = norm_axis("CumSum", a.first().copied().unwrap_or(0), s.len())?;
            let g = scan(grad.fs(), &s, axis, self.exclusive, !self.reverse);
            out[0] = Some(Tensor::f32(s, g));
        }
        Ok(out)
    }
    impl_any!();
}
