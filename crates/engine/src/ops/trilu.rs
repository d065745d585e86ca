//! Trilu: keeps the upper (or lower) triangle of the last two axes, from diagonal `k` (input
//! 1, default 0), zeroing the rest. Gradient: the same mask.

use super::{impl_any, input, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{Data, Tensor};

/// Triangular mask.
#[derive(Debug, Clone)]
pub struct Trilu {
    /// Keep j − i ≥ k (upper) instead of j − i ≤ k (lower).
    pub upper: bool,
}

impl Trilu {
    fn keep(&self, inputs: &[Option<&Tensor>], shape: &[usize]) -> Result<Vec<bool>> {
        let r = shape.len();
        if r < 2 {
            return Err(shape_err(
                "Trilu",
                format!("input {shape:?} has rank below 2"),
            ));
        }
        let k = inputs
            .get(1)
            .copied()
            .flatten()
            .map(|t| t.to_i64_vec().first().copied().unwrap_or(0))
            .unwrap_or(0);
        let (h, w) = (shape[r - 2], shape[r - 1]);
        let n: usize = shape.iter().product();
        Ok((0..n)
            .map(|e| {
                let (i, j) = (((e / w) % h.max(1)) as i64, (e % w) as i64);
                if self.upper {
                    j - i >= k
                } else {
                    j - i <= k
                }
            })
            .collect())
    }
}

impl Op for Trilu {
    fn name(&self) -> &'static str {
        "Trilu"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input("Trilu", inputs, 0)?;
        let m = self.keep(inputs, x.shape())?;
        let s = x.shape().to_vec();
        Ok(match x.data() {
            Data::F32(v) => Tensor::f32(
                s,
                v.iter()
                    .zip(&m)
                    .map(|(&v, &k)| if k { v } else { 0.0 })
                    .collect(),
            ),
            Data::I64(v) => Tensor::i64(
                s,
                v.iter()
                    .zip(&m)
                    .map(|(&v, &k)| if k { v } else { 0 })
                    .collect(),
            ),
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
            let m = self.keep(inputs, grad.shape())?;
            let g = grad
                .fs()
                .iter()
                .zip(&m)
                .map(|(&v, &k)| if k { v } else { 0.0 })
                .collect();
            out[0] = Some(Tensor::f32(grad.shape().to_vec(), g));
        }
        Ok(out)
    }
    impl_any!();
}
