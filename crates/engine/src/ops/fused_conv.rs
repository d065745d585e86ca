//! `y = relu?(Conv(x, W, b) + r?)`: a convolution followed by its residual Add and ReLU, created
//! by the `fuse_activation` load-time pass (ResNets are chains of exactly this). Fusing saves a
//! sweep over memory and a kept activation per folded operator: the Add and the ReLU run on each
//! sample's output while it is still in cache, and the backward pass needs only the output
//! (`y > 0` is the ReLU mask) to turn `dy` into the gradients of `x` and `r`.

use super::conv::Kernel;
use super::{
    backward_replicated, impl_any, input_f32, unbroadcast, Binary, BinaryKind, Conv, Copies, Op,
};
use crate::error::Result;
use crate::kernels::relu_mask_into;
use crate::tensor::Tensor;

/// A Conv with a fused epilogue. Inputs: `x`, `W`, optional `b`, then the residual `r` when
/// `residual` is set.
#[derive(Debug, Clone)]
pub struct FusedConv {
    /// The convolution.
    pub conv: Conv,
    /// Whether input 3 is added to the convolution's output.
    pub residual: bool,
    /// Whether a ReLU follows.
    pub relu: bool,
    /// Whether the gradient reaching the output is zero wherever the ReLU is off already (a
    /// max pooling that alone reads the output masks it, see `Pool::relu_input`): the
    /// backward pass then skips the mask. Set by the load-time pass `mask_at_pool`.
    pub grad_masked: bool,
}

impl FusedConv {
    fn residual_input<'a>(&self, inputs: &[Option<&'a Tensor>]) -> Result<Option<&'a Tensor>> {
        if self.residual {
            input_f32("Conv", inputs, 3).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// `dy · [y > 0]`, the gradient through a ReLU given its output; `grad` may hold several
/// copies of the batch (one after the other), all masked by the same `y`.
pub(crate) fn relu_mask(grad: &[f32], y: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(grad.len());
    relu_mask_into(&mut out, grad, y);
    out
}

impl Op for FusedConv {
    fn name(&self) -> &'static str {
        "Conv"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input_f32("Conv", inputs, 0)?;
        let w = input_f32("Conv", inputs, 1)?;
        let b = inputs.get(2).copied().flatten();
        let r = self.residual_input(inputs)?;
        match r {
            // A residual that broadcasts (rare) goes through the unfused operators.
            Some(r) if r.shape() != self.conv.output_shape(x, w)?.as_slice() => {
                let c = self.conv.forward_fused(x, w, b, None, false)?;
                let s = Binary::new(BinaryKind::Add).forward(&[Some(&c), Some(r)])?;
                Ok(if self.relu {
                    s.map_f32(|v| v.max(0.0))
                } else {
                    s
                })
            }
            _ => self.conv.forward_fused(x, w, b, r, self.relu),
        }
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        let x = input_f32("Conv", inputs, 0)?;
        let w = input_f32("Conv", inputs, 1)?;
        let masked = (self.relu && !self.grad_masked)
            .then(|| Tensor::f32(grad.shape().to_vec(), relu_mask(grad.fs(), output.fs())));
        let dy = masked.as_ref().unwrap_or(grad);
        let conv_shape = self.conv.output_shape(x, w)?;
        // dy has the convolution's shape unless a residual broadcast it larger.
        let summed;
        let dy_conv = if dy.shape() == conv_shape.as_slice() {
            dy
        } else {
            summed = unbroadcast(dy, &conv_shape);
            &summed
        };
        let (need_w, need_b) = (
            need.get(1).copied().unwrap_or(false),
            need.get(2).copied().unwrap_or(false),
        );
        if need_w || need_b {
            let (dw, db) = self.conv.param_grads(x, w, dy_conv.fs(), need_b)?;
            res[1] = need_w.then_some(dw);
            res[2] = db;
        }
        if need[0] {
            res[0] = Some(self.conv.input_grad(x.shape(), w, dy_conv.fs(), 1)?);
        }
        if let Some(r) = self.residual_input(inputs)? {
            if need.get(3).copied().unwrap_or(false) {
                res[3] = Some(match masked {
                    Some(m) if m.shape() == r.shape() => m,
                    _ => unbroadcast(dy, r.shape()),
                });
            }
        }
        Ok(res)
    }
    /// The input gradient alone needs no copies: the ReLU mask is the kept output's, and the
    /// convolution's input gradient reads only the input's shape.
    fn backward_copies(
        &self,
        inputs: &[Option<&Tensor>],
        output: &Tensor,
        grad: &Tensor,
        need: &[bool],
        c: Copies,
    ) -> Result<Vec<Option<Tensor>>> {
        let only_x = need[0] && need.iter().skip(1).all(|&n| !n);
        if !only_x || self.residual || !c.batched(0) || !c.out_batched {
            return backward_replicated(self, inputs, output, grad, need, c);
        }
        let x = input_f32("Conv", inputs, 0)?;
        let w = input_f32("Conv", inputs, 1)?;
        let relu = (self.relu && !self.grad_masked).then(|| output.fs());
        let xs = c.times(x.shape());
        let mut res = vec![None; need.len()];
        res[0] =
            Some(
                self.conv
                    .input_grad_with(&xs, w, grad.fs(), c.copies, relu, Kernel::Auto)?,
            );
        Ok(res)
    }
    impl_any!();
}
