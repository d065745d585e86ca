//! Softmax. Before opset 13 the input is coerced to 2-D at `axis` (the softmax runs over all
//! trailing dimensions together); from opset 13 it runs along the single `axis`.

use super::{impl_any, input_f32, Op};
use crate::error::Result;
use crate::tensor::{norm_axis, Tensor};

/// Softmax (or LogSoftmax) along an axis.
#[derive(Debug, Clone)]
pub struct Softmax {
    /// The axis (may be negative).
    pub axis: i64,
    /// Opset < 13 semantics: flatten everything from `axis` on.
    pub coerce_2d: bool,
    /// LogSoftmax instead of Softmax.
    pub log: bool,
}

impl Softmax {
    /// (outer, n, inner) blocks: softmax over n with stride inner.
    fn blocks(&self, shape: &[usize]) -> Result<(usize, usize, usize)> {
        let a = norm_axis(self.name_(), self.axis, shape.len())?;
        let outer: usize = shape[..a].iter().product();
        if self.coerce_2d {
            Ok((outer, shape[a..].iter().product(), 1))
        } else {
            Ok((outer, shape[a], shape[a + 1..].iter().product()))
        }
    }
    fn name_(&self) -> &'static str {
        if self.log {
            "LogSoftmax"
        } else {
            "Softmax"
        }
    }
}

impl Op for Softmax {
    fn name(&self) -> &'static str {
        self.name_()
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input_f32(self.name_(), inputs, 0)?;
        let (outer, n, inner) = self.blocks(x.shape())?;
        let xs = x.fs();
        let mut y = vec![0.0f32; xs.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| o * n * inner + j * inner + i;
                let m = (0..n).map(|j| xs[at(j)]).fold(f32::NEG_INFINITY, f32::max);
                let s: f32 = (0..n).map(|j| (xs[at(j)] - m).exp()).sum();
                for j in 0..n {
                    y[at(j)] = if self.log {
                        xs[at(j)] - m - s.ln()
                    } else {
                        (xs[at(j)] - m).exp() / s
                    };
                }
            }
        }
        Ok(Tensor::f32(x.shape().to_vec(), y))
    }
    fn backward(
        &self,
        _inputs: &[Option<&Tensor>],
        output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        if !need[0] {
            return Ok(res);
        }
        let (outer, n, inner) = self.blocks(output.shape())?;
        let (y, g) = (output.fs(), grad.fs());
        let mut dx = vec![0.0f32; y.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| o * n * inner + j * inner + i;
                if self.log {
                    let gs: f32 = (0..n).map(|j| g[at(j)]).sum();
                    for j in 0..n {
                        dx[at(j)] = g[at(j)] - y[at(j)].exp() * gs;
                    }
                } else {
                    let dot: f32 = (0..n).map(|j| g[at(j)] * y[at(j)]).sum();
                    for j in 0..n {
                        dx[at(j)] = y[at(j)] * (g[at(j)] - dot);
                    }
                }
            }
        }
        res[0] = Some(Tensor::f32(output.shape().to_vec(), dx));
        Ok(res)
    }
    impl_any!();
}
