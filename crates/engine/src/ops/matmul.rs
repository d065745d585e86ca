//! Gemm (`Y = α·A'·B' + β·C`) and MatMul (numpy semantics, broadcast batch dimensions).
//! Both reduce to one batched product helper so that the forward and both gradient products
//! share a single code path.

use super::binary::{broadcast_shape, broadcast_strides};
use super::{backward_replicated, impl_any, input_f32, unbroadcast, Copies, Op};
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;
use faultline_matmul::{matmul, View};
use std::sync::Arc;

/// Batched `op(a) · op(b)` where `a` is `[batch…, r, c]`: `ta`/`tb` transpose the last two
/// dimensions. Batch dimensions broadcast. Returns the output shape and data.
fn bmm(op: &'static str, a: &Tensor, ta: bool, b: &Tensor, tb: bool) -> Result<Tensor> {
    let (ash, bsh) = (a.shape(), b.shape());
    if ash.len() < 2 || bsh.len() < 2 {
        return Err(shape_err(
            op,
            format!("operands must have rank ≥ 2, got {ash:?} and {bsh:?}"),
        ));
    }
    let (ar, ac) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (br, bc) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if tb { (bc, br) } else { (br, bc) };
    if k != k2 {
        return Err(shape_err(
            op,
            format!(
                "inner dimensions differ: {ash:?}{} × {bsh:?}{}",
                if ta { "ᵀ" } else { "" },
                if tb { "ᵀ" } else { "" }
            ),
        ));
    }
    let abatch = &ash[..ash.len() - 2];
    let bbatch = &bsh[..bsh.len() - 2];
    let batch = broadcast_shape(op, abatch, bbatch)?;
    let nb: usize = batch.iter().product();
    let sa = broadcast_strides(abatch, &batch);
    let sb = broadcast_strides(bbatch, &batch);
    let mut out = vec![0.0f32; nb * m * n];
    let (amat, bmat) = (ar * ac, br * bc);
    // Flatten the leading dims of a when b has no batch: one big product instead of many.
    if bbatch.iter().product::<usize>() == 1 && !ta && nb > 1 {
        let av = View::rows(a.fs(), ac);
        let bv = if tb {
            View::rows_t(b.fs(), bc)
        } else {
            View::rows(b.fs(), bc)
        };
        matmul(nb * m, n, k, &mut out, n, false, av, bv, true);
    } else {
        let mut idx = vec![0usize; batch.len()];
        for bi in 0..nb {
            // Broadcast strides count whole matrices.
            let (mut oa, mut ob) = (0, 0);
            for d in 0..batch.len() {
                oa += idx[d] * sa[d] * amat;
                ob += idx[d] * sb[d] * bmat;
            }
            let asl = &a.fs()[oa..];
            let bsl = &b.fs()[ob..];
            let av = if ta {
                View::rows_t(asl, ac)
            } else {
                View::rows(asl, ac)
            };
            let bv = if tb {
                View::rows_t(bsl, bc)
            } else {
                View::rows(bsl, bc)
            };
            matmul(
                m,
                n,
                k,
                &mut out[bi * m * n..(bi + 1) * m * n],
                n,
                false,
                av,
                bv,
                true,
            );
            for d in (0..batch.len()).rev() {
                idx[d] += 1;
                if idx[d] < batch[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    Ok(Tensor::f32(shape, out))
}

/// ONNX Gemm: `Y = α·op(A)·op(B) + β·C`, with `op` an optional transpose.
#[derive(Debug, Clone)]
pub struct Gemm {
    /// α (default 1).
    pub alpha: f32,
    /// β (default 1).
    pub beta: f32,
    /// Transpose A.
    pub trans_a: bool,
    /// Transpose B.
    pub trans_b: bool,
    /// `op(B)` laid out at load time when B is a graph constant (see [`GemmPrepared`]); made
    /// by the engine's load-time pass, so leave it `None` (`..Gemm::default()`).
    pub prepared: Option<Arc<GemmPrepared>>,
}

impl Default for Gemm {
    fn default() -> Self {
        Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
            prepared: None,
        }
    }
}

/// A constant `op(B)` (`k × n`) stored row-major with its rows padded to `cols`, a whole number
/// of 16-float vectors. The gemm crate computes a row-major product as its transpose, so this
/// layout is the column-major left operand its microkernel reads directly; with B as stored
/// (a `[n, k]` classifier weight with transB) it would pack all of B on every call, which for
/// the 8-row chunks of an attack cost as much as the product (11 % of FAB on LeNet-5, `perf`).
#[derive(Debug)]
pub struct GemmPrepared {
    /// The shape of the B this was made from (a call with another B ignores it).
    shape: Vec<usize>,
    cols: usize,
    data: Vec<f32>,
}

/// Constants larger than this (floats) are not laid out twice.
const PREPARED_MAX: usize = 16 << 20;

impl Gemm {
    /// This Gemm with its constant B laid out for the forward product; None when B is not a
    /// 2-D f32 matrix or is too large to keep twice.
    pub(crate) fn with_prepared(&self, b: &Tensor) -> Option<Gemm> {
        let s = b.shape();
        if s.len() != 2 || !b.is_f32() || b.len() > PREPARED_MAX {
            return None;
        }
        let (k, n) = if self.trans_b {
            (s[1], s[0])
        } else {
            (s[0], s[1])
        };
        let cols = n.div_ceil(16) * 16;
        let mut data = vec![0.0f32; k * cols];
        let bf = b.fs();
        for (kk, row) in data.chunks_mut(cols).enumerate() {
            for (j, v) in row[..n].iter_mut().enumerate() {
                *v = if self.trans_b {
                    bf[j * k + kk]
                } else {
                    bf[kk * n + j]
                };
            }
        }
        let prepared = GemmPrepared {
            shape: s.to_vec(),
            cols,
            data,
        };
        Some(Gemm {
            prepared: Some(Arc::new(prepared)),
            ..self.clone()
        })
    }

    /// `A · op(B)` on the prepared B, where it fits this call.
    fn product_prepared(&self, a: &Tensor, b: &Tensor) -> Option<Tensor> {
        let p = self.prepared.as_deref().filter(|p| p.shape == b.shape())?;
        let (ash, k) = (a.shape(), p.data.len() / p.cols.max(1));
        if self.trans_a || ash.len() != 2 || ash[1] != k || k == 0 {
            return None;
        }
        let (m, n) = (ash[0], if self.trans_b { p.shape[0] } else { p.shape[1] });
        let mut out = vec![0.0f32; m * p.cols];
        let (av, bv) = (View::rows(a.fs(), k), View::rows(&p.data, p.cols));
        matmul(m, p.cols, k, &mut out, p.cols, false, av, bv, true);
        if p.cols != n {
            for i in 1..m {
                out.copy_within(i * p.cols..i * p.cols + n, i * n);
            }
            out.truncate(m * n);
        }
        Some(Tensor::f32(vec![m, n], out))
    }
}

impl Op for Gemm {
    fn name(&self) -> &'static str {
        "Gemm"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let a = input_f32("Gemm", inputs, 0)?;
        let b = input_f32("Gemm", inputs, 1)?;
        if a.shape().len() != 2 || b.shape().len() != 2 {
            return Err(shape_err(
                "Gemm",
                format!(
                    "A and B must be 2-D, got {:?} and {:?}",
                    a.shape(),
                    b.shape()
                ),
            ));
        }
        let mut y = match self.product_prepared(a, b) {
            Some(y) => y,
            None => bmm("Gemm", a, self.trans_a, b, self.trans_b)?,
        };
        if self.alpha != 1.0 {
            y = y.map_f32(|v| v * self.alpha);
        }
        if let Some(c) = inputs.get(2).copied().flatten() {
            let ys = y.shape().to_vec();
            if broadcast_shape("Gemm", &ys, c.shape())? != ys {
                return Err(shape_err(
                    "Gemm",
                    format!("C {:?} does not broadcast to {ys:?}", c.shape()),
                ));
            }
            let cs = broadcast_strides(c.shape(), &ys);
            let n = ys[1];
            let (beta, cf) = (self.beta, c.fs());
            for (i, v) in y.f32_mut().iter_mut().enumerate() {
                *v += beta * cf[(i / n) * cs[0] + (i % n) * cs[1]];
            }
        }
        Ok(y)
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let a = input_f32("Gemm", inputs, 0)?;
        let b = input_f32("Gemm", inputs, 1)?;
        let mut res = vec![None; need.len()];
        let g = if self.alpha != 1.0 {
            grad.map_f32(|v| v * self.alpha)
        } else {
            grad.clone()
        };
        if need[0] {
            // d op(A) = dY · op(B)ᵀ; if A was transposed, dA = op(B) · dYᵀ.
            res[0] = Some(if self.trans_a {
                bmm("Gemm", b, self.trans_b, &g, true)?
            } else {
                bmm("Gemm", &g, false, b, !self.trans_b)?
            });
        }
        if need.get(1).copied().unwrap_or(false) {
            res[1] = Some(if self.trans_b {
                bmm("Gemm", &g, true, a, self.trans_a)?
            } else {
                bmm("Gemm", a, !self.trans_a, &g, false)?
            });
        }
        if need.get(2).copied().unwrap_or(false) {
            let c = input_f32("Gemm", inputs, 2)?;
            res[2] = Some(unbroadcast(grad, c.shape()).map_f32(|v| v * self.beta));
        }
        Ok(res)
    }
    /// `dA = dY · op(B)ᵀ` does not read A: with B shared, no copies.
    fn backward_copies(
        &self,
        inputs: &[Option<&Tensor>],
        output: &Tensor,
        grad: &Tensor,
        need: &[bool],
        c: Copies,
    ) -> Result<Vec<Option<Tensor>>> {
        let only_a = need[0] && need.iter().skip(1).all(|&n| !n);
        if only_a && !self.trans_a && c.batched(0) && !c.batched(1) {
            return self.backward(inputs, output, grad, need);
        }
        backward_replicated(self, inputs, output, grad, need, c)
    }
    impl_any!();
}

/// ONNX MatMul with numpy semantics (1-D operands are promoted and the added axis removed).
#[derive(Debug, Clone, Default)]
pub struct MatMul;

fn promote(t: &Tensor, left: bool) -> Result<Tensor> {
    if t.shape().len() != 1 {
        return Ok(t.clone());
    }
    let k = t.shape()[0];
    t.clone()
        .reshaped(if left { vec![1, k] } else { vec![k, 1] })
}

impl Op for MatMul {
    fn name(&self) -> &'static str {
        "MatMul"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let a0 = input_f32("MatMul", inputs, 0)?;
        let b0 = input_f32("MatMul", inputs, 1)?;
        let (a, b) = (promote(a0, true)?, promote(b0, false)?);
        let y = bmm("MatMul", &a, false, &b, false)?;
        let mut shape = y.shape().to_vec();
        if b0.shape().len() == 1 {
            shape.pop();
        }
        if a0.shape().len() == 1 {
            shape.remove(shape.len() - if b0.shape().len() == 1 { 1 } else { 2 });
        }
        y.reshaped(shape)
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let a0 = input_f32("MatMul", inputs, 0)?;
        let b0 = input_f32("MatMul", inputs, 1)?;
        let (a, b) = (promote(a0, true)?, promote(b0, false)?);
        // The gradient viewed with the promoted output shape (the axes `forward` removed for
        // 1-D operands put back), without recomputing the product.
        let mut shape = grad.shape().to_vec();
        match (a0.shape().len() == 1, b0.shape().len() == 1) {
            (true, true) => shape.extend([1, 1]),
            (true, false) => shape.insert(shape.len() - 1, 1),
            (false, true) => shape.push(1),
            (false, false) => {}
        }
        let g = grad.clone().reshaped(shape)?;
        let mut res = vec![None, None];
        if need[0] {
            let ga = bmm("MatMul", &g, false, &b, true)?;
            res[0] = Some(unbroadcast(&ga, a.shape()).reshaped(a0.shape().to_vec())?);
        }
        if need[1] {
            let gb = bmm("MatMul", &a, true, &g, false)?;
            res[1] = Some(unbroadcast(&gb, b.shape()).reshaped(b0.shape().to_vec())?);
        }
        Ok(res)
    }
    impl_any!();
}
