//! Operators: one file per family, each with its forward computation and its gradient rule
//! (vector-Jacobian product). Attacks ask only for gradients with respect to activations;
//! training (`crate::train`) also asks for those of the learnable constants (Conv, Gemm and
//! MatMul weights, biases, batch-norm scales and shifts), flagged in `need` like any input.

use std::any::Any;
use std::fmt::Debug;

use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

pub mod attention;
pub mod batch_norm;
pub mod binary;
pub mod concat;
pub mod constant;
pub mod conv;
pub mod cumsum;
pub mod einsum;
pub mod fused_conv;
pub mod gather;
pub mod gather_nd;
pub mod matmul;
pub mod norm;
pub mod pad;
pub mod pool;
pub mod quantize;
pub mod range;
pub mod reduce;
pub mod reshape;
pub mod resize;
pub mod scatter_nd;
pub mod slice;
pub mod softmax;
pub mod split;
mod strided;
pub mod tile;
pub mod topk;
pub mod transpose;
pub mod trilu;
pub mod unary;
pub mod where_op;

pub use attention::Attention;
pub use batch_norm::{BatchNorm, BatchNormTrain};
pub use binary::{Binary, BinaryKind};
pub use concat::Concat;
pub use constant::{Cast, ConstantOfShape, Expand};
pub use conv::Conv;
pub use cumsum::CumSum;
pub use einsum::Einsum;
pub use fused_conv::FusedConv;
pub use gather::Gather;
pub use gather_nd::GatherNd;
pub use matmul::{Gemm, GemmPrepared, MatMul};
pub use norm::{NormKind, Normalize};
pub use pad::{Pad, PadMode};
pub use pool::{GlobalAveragePool, Pool, PoolKind};
pub use quantize::{DequantizeLinear, IntegerProduct, QRange, QuantizeLinear};
pub use range::Range;
pub use reduce::{Reduce, ReduceKind};
pub use reshape::{Flatten, Reshape, Shape, Squeeze, Unsqueeze};
pub use resize::{CoordMode, NearestMode, Resize};
pub use scatter_nd::ScatterNd;
pub use slice::Slice;
pub use softmax::Softmax;
pub use split::SplitPart;
pub use tile::Tile;
pub use topk::TopK;
pub use transpose::Transpose;
pub use trilu::Trilu;
pub use unary::{Unary, UnaryKind};
pub use where_op::Where;

/// An operator of the graph. Inputs are positional; an absent optional input is `None`.
pub trait Op: Send + Sync + Debug {
    /// The ONNX name of the operator.
    fn name(&self) -> &'static str;
    /// Computes the output. Used at run time and for constant folding alike.
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor>;
    /// Given the gradient of a scalar with respect to the output, returns the gradients with
    /// respect to the inputs flagged in `need` (`None` for the others).
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let _ = (inputs, output, grad);
        if need.iter().any(|&n| n) {
            return Err(shape_err(self.name(), "no gradient rule for this operator"));
        }
        Ok(vec![None; need.len()])
    }
    /// [`Op::backward`] for `copies` seeds at once (the multi-output product,
    /// `Forward::input_grads`): `grad` is the output gradient of the batch replicated `copies`
    /// times (copy-major: rows `c·n .. (c + 1)·n` are copy `c`), while the inputs and the
    /// output are those of the batch itself, once; `batched[k]` says whether input `k` carries
    /// the batch on its first axis (else it is shared by every copy, as a weight) and
    /// `out_batched` the same of the output. The result must equal [`Op::backward`] on the
    /// replicated operands bit for bit. By default it is exactly that (the batch-carrying
    /// operands are copied); operators whose gradient reads their operands little or not at
    /// all (convolutions, pooling, ReLU, Gemm, views) skip the copies, and max pooling finds
    /// each window's maximum once for all copies.
    fn backward_copies(
        &self,
        inputs: &[Option<&Tensor>],
        output: &Tensor,
        grad: &Tensor,
        need: &[bool],
        copies: Copies,
    ) -> Result<Vec<Option<Tensor>>> {
        backward_replicated(self, inputs, output, grad, need, copies)
    }
    /// For downcasting in graph passes.
    fn as_any(&self) -> &dyn Any;
    /// A boxed copy (graphs are cloned to turn a training graph into an inference model).
    fn clone_op(&self) -> Box<dyn Op>;
}

/// How [`Op::backward_copies`] is called: the number of copies and which operands carry the
/// batch.
#[derive(Debug, Clone, Copy)]
pub struct Copies<'a> {
    /// Copies of the batch in the gradient.
    pub copies: usize,
    /// Per input: whether it carries the batch on its first axis.
    pub batched: &'a [bool],
    /// Whether the output carries the batch.
    pub out_batched: bool,
}

impl Copies<'_> {
    /// Whether input `k` carries the batch.
    pub fn batched(&self, k: usize) -> bool {
        self.batched.get(k).copied().unwrap_or(false)
    }
    /// `shape` with its first axis (the batch) multiplied by the number of copies.
    pub fn times(&self, shape: &[usize]) -> Vec<usize> {
        let mut s = shape.to_vec();
        if let Some(n) = s.first_mut() {
            *n *= self.copies;
        }
        s
    }
}

/// The default [`Op::backward_copies`]: [`Op::backward`] on the batch-carrying operands
/// replicated.
pub(crate) fn backward_replicated<O: Op + ?Sized>(
    op: &O,
    inputs: &[Option<&Tensor>],
    output: &Tensor,
    grad: &Tensor,
    need: &[bool],
    c: Copies,
) -> Result<Vec<Option<Tensor>>> {
    let reps: Vec<Option<Tensor>> = inputs
        .iter()
        .enumerate()
        .map(|(k, t)| t.filter(|_| c.batched(k)).map(|t| t.repeat_batch(c.copies)))
        .collect();
    let ins: Vec<Option<&Tensor>> = inputs
        .iter()
        .zip(&reps)
        .map(|(t, r)| r.as_ref().or(*t))
        .collect();
    let out_rep;
    let out = if c.out_batched {
        out_rep = output.repeat_batch(c.copies);
        &out_rep
    } else {
        output
    };
    op.backward(&ins, out, grad, need)
}

/// Input `i`, which the operator requires.
pub(crate) fn input<'a>(
    op: &'static str,
    inputs: &[Option<&'a Tensor>],
    i: usize,
) -> Result<&'a Tensor> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| shape_err(op, format!("missing required input {i}")))
}

/// Input `i` as floats.
pub(crate) fn input_f32<'a>(
    op: &'static str,
    inputs: &[Option<&'a Tensor>],
    i: usize,
) -> Result<&'a Tensor> {
    let t = input(op, inputs, i)?;
    if !t.is_f32() {
        return Err(shape_err(
            op,
            format!("input {i} must be float32, got {}", t.dtype()),
        ));
    }
    Ok(t)
}

/// Implements `as_any` for an operator struct.
macro_rules! impl_any {
    () => {
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn clone_op(&self) -> Box<dyn $crate::ops::Op> {
            Box::new(self.clone())
        }
    };
}
pub(crate) use impl_any;

/// Sums `grad` (shaped like the broadcast output) down to `shape`, the shape of an operand
/// that was broadcast (numpy rules: aligned on the right, size-1 or missing dimensions).
pub(crate) fn unbroadcast(grad: &Tensor, shape: &[usize]) -> Tensor {
    if grad.shape() == shape {
        return grad.clone();
    }
    let out_shape = grad.shape();
    let r = out_shape.len();
    let pad = r - shape.len();
    let full: Vec<usize> = (0..r)
        .map(|i| if i < pad { 1 } else { shape[i - pad] })
        .collect();
    let fstr = crate::tensor::strides(&full);
    let mut res = vec![0.0f32; shape.iter().product()];
    let g = grad.fs();
    let mut idx = vec![0usize; r];
    for &v in g {
        let mut off = 0;
        for d in 0..r {
            if full[d] != 1 {
                off += idx[d] * fstr[d];
            }
        }
        res[off] += v;
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < out_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Tensor::f32(shape.to_vec(), res)
}

#[cfg(test)]
mod tests {
    use super::conv::{AutoPad, Window};
    use super::*;

    fn win(k: usize, s: usize, p: usize) -> Window {
        Window {
            kernel: [k, k],
            strides: [s, s],
            dilations: [1, 1],
            pads: [p; 4],
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
        }
    }

    /// Values with ties, zeros of both signs and both signs of everything else.
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| match (i * 7919 + seed * 31) % 13 {
                0 => 0.0,
                1 => -0.0,
                v => (v as f32 - 6.5) * 0.25,
            })
            .collect()
    }

    /// Every operator with a rule of its own gives, for 3 copies of a batch of 2, exactly
    /// (bit for bit) the gradients of its plain rule on the operands replicated.
    #[test]
    fn copies_equal_the_plain_rule_on_replicated_operands() {
        let (n, copies) = (2, 3);
        let img =
            |c: usize, h: usize, seed| Tensor::f32(vec![n, c, h, h], values(n * c * h * h, seed));
        let conv = || Conv::new(win(3, 1, 1), 1);
        let w = Tensor::f32(vec![4, 3, 3, 3], values(108, 5));
        let fc = Tensor::f32(vec![5, 48], values(240, 6));
        let cases: Vec<(Box<dyn Op>, Vec<Tensor>)> = vec![
            (
                Box::new(Pool {
                    kind: PoolKind::Max,
                    window: win(2, 2, 0),
                    relu_input: false,
                }),
                vec![img(3, 6, 1)],
            ),
            (
                // Behind a ReLU, on rows of 17 windows (16 at once where the CPU vectorises).
                Box::new(Pool {
                    kind: PoolKind::Max,
                    window: win(2, 2, 0),
                    relu_input: true,
                }),
                vec![img(2, 34, 10)],
            ),
            (
                Box::new(Pool {
                    kind: PoolKind::Max,
                    window: win(3, 2, 1),
                    relu_input: false,
                }),
                vec![img(3, 7, 2)],
            ),
            (Box::new(conv()), vec![img(3, 5, 3), w.clone()]),
            (
                Box::new(FusedConv {
                    conv: conv(),
                    residual: false,
                    relu: true,
                    grad_masked: false,
                }),
                vec![img(3, 5, 4), w],
            ),
            (Box::new(Unary::new(UnaryKind::Relu)), vec![img(3, 4, 7)]),
            (
                Box::new(Gemm {
                    trans_b: true,
                    ..Gemm::default()
                }),
                vec![Tensor::f32(vec![n, 48], values(n * 48, 8)), fc],
            ),
            (Box::new(Flatten { axis: 1 }), vec![img(3, 4, 9)]),
        ];
        for (op, ins) in cases {
            let refs: Vec<Option<&Tensor>> = ins.iter().map(Some).collect();
            let out = op.forward(&refs).unwrap();
            let grad = Tensor::f32(
                out.repeat_batch(copies).shape().to_vec(),
                values(copies * out.len(), 11),
            );
            let mut batched = vec![false; ins.len()];
            batched[0] = true;
            let mut need = vec![false; ins.len()];
            need[0] = true;
            let c = Copies {
                copies,
                batched: &batched,
                out_batched: true,
            };
            let got = op.backward_copies(&refs, &out, &grad, &need, c).unwrap();
            let want = backward_replicated(op.as_ref(), &refs, &out, &grad, &need, c).unwrap();
            let bits = |t: &Option<Tensor>| {
                t.as_ref().map(|t| {
                    (
                        t.shape().to_vec(),
                        t.fs().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    )
                })
            };
            assert_eq!(bits(&got[0]), bits(&want[0]), "{}", op.name());
            assert!(
                got[0].as_ref().unwrap().fs().iter().any(|&v| v != 0.0),
                "{}",
                op.name()
            );
        }
    }
}
