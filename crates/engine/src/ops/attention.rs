//! Fused scaled dot-product attention, `O = softmax(α·Q·Kᵀ)·V` with the softmax along the last
//! axis, as the load-time pass `fuse_attention` builds it from the exporters' MatMul → (scale)
//! → Softmax → MatMul chain (Vaswani et al. 2017, eq. 1; α = 1/√d there).
//!
//! Inputs are `Q [b…, n, d]`, `Kᵀ [b…, d, m]` (the second operand of the first MatMul, already
//! transposed) and `V [b…, m, e]`. When the three share their batch dimensions, each (batch,
//! head) matrix is one task on the thread pool: its `n×m` scores stay in a per-task buffer
//! (cache-resident for ViT-sized token counts), the softmax runs in place, and the product with
//! `V` writes the output, instead of three whole-tensor passes and two stored score tensors.
//! The gradient recomputes the probabilities `P` the same way and applies, per matrix,
//! `dV = Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = α·P ⊙ (dP − rowsum(dP ⊙ P))`, `dQ = dS·K`, `dKᵀ = Qᵀ·dS`.
//! Operands whose batch dimensions broadcast take the unfused path (the MatMul and Softmax
//! operators in sequence), so every shape the chain accepted is still accepted.

use rayon::prelude::*;

use super::{impl_any, input_f32, MatMul, Op, Softmax};
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;
use faultline_matmul::{matmul, View};

/// `softmax(scale·Q·Kᵀ)·V` (see the module documentation).
#[derive(Debug, Clone)]
pub struct Attention {
    /// α, the product of the constant scalings the fusion absorbed.
    pub scale: f32,
}

/// Batch count and (n, d, m, e) when Q, Kᵀ and V have equal batch dimensions and matching
/// matrix sizes; `None` for the broadcasting cases.
fn dims(q: &Tensor, kt: &Tensor, v: &Tensor) -> Option<(usize, [usize; 4])> {
    let (qs, ks, vs) = (q.shape(), kt.shape(), v.shape());
    let r = qs.len();
    if r < 2 || ks.len() != r || vs.len() != r || qs[..r - 2] != ks[..r - 2] {
        return None;
    }
    if qs[..r - 2] != vs[..r - 2] {
        return None;
    }
    let (n, d, m, e) = (qs[r - 2], qs[r - 1], ks[r - 1], vs[r - 1]);
    (ks[r - 2] == d && vs[r - 2] == m).then(|| (qs[..r - 2].iter().product(), [n, d, m, e]))
}

/// Row-wise softmax of `scale·s` in place (`s` is `rows × m`).
fn softmax_rows(s: &mut [f32], m: usize, scale: f32) {
    for row in s.chunks_mut(m) {
        let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(scale * b));
        let mut sum = 0.0f32;
        for x in row.iter_mut() {
            *x = (scale * *x - mx).exp();
            sum += *x;
        }
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

impl Attention {
    /// The probabilities `P = softmax(α·Q_b·Kᵀ_b)` of batch matrix `b` into `p` (`n×m`).
    fn probs(&self, q: &[f32], kt: &[f32], b: usize, [n, d, m, _]: [usize; 4], p: &mut [f32]) {
        let qb = View::rows(&q[b * n * d..(b + 1) * n * d], d);
        let kb = View::rows(&kt[b * d * m..(b + 1) * d * m], m);
        matmul(n, m, d, p, m, false, qb, kb, false);
        softmax_rows(p, m, self.scale);
    }

    /// The chain as separate operators, for operands whose batch dimensions broadcast:
    /// (scores, probabilities, output).
    fn unfused(&self, q: &Tensor, kt: &Tensor, v: &Tensor) -> Result<[Tensor; 3]> {
        let s = MatMul.forward(&[Some(q), Some(kt)])?;
        let s = Tensor::f32(
            s.shape().to_vec(),
            s.fs().iter().map(|x| x * self.scale).collect(),
        );
        let p = SOFTMAX.forward(&[Some(&s)])?;
        let o = MatMul.forward(&[Some(&p), Some(v)])?;
        Ok([s, p, o])
    }
}

const SOFTMAX: Softmax = Softmax {
    axis: -1,
    coerce_2d: false,
    log: false,
};

impl Op for Attention {
    fn name(&self) -> &'static str {
        "Attention"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let q = input_f32("Attention", inputs, 0)?;
        let kt = input_f32("Attention", inputs, 1)?;
        let v = input_f32("Attention", inputs, 2)?;
        let Some((nb, nd)) = dims(q, kt, v) else {
            let [_, _, o] = self.unfused(q, kt, v)?;
            return Ok(o);
        };
        let [n, _, m, e] = nd;
        let (qf, kf, vf) = (q.fs(), kt.fs(), v.fs());
        let mut out = vec![0.0f32; nb * n * e];
        out.par_chunks_mut((n * e).max(1))
            .enumerate()
            .for_each_init(
                || vec![0.0f32; n * m],
                |p, (b, o)| {
                    self.probs(qf, kf, b, nd, p);
                    let vb = View::rows(&vf[b * m * e..(b + 1) * m * e], e);
                    matmul(n, e, m, o, e, false, View::rows(p, m), vb, false);
                },
            );
        let mut shape = q.shape().to_vec();
        *shape
            .last_mut()
            .ok_or_else(|| shape_err("Attention", "rank 0"))? = e;
        Ok(Tensor::f32(shape, out))
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let q = input_f32("Attention", inputs, 0)?;
        let kt = input_f32("Attention", inputs, 1)?;
        let v = input_f32("Attention", inputs, 2)?;
        let mut res = vec![None; need.len()];
        let Some((nb, nd)) = dims(q, kt, v) else {
            // The unfused chain's own gradient rules, in reverse order.
            let [s, p, o] = self.unfused(q, kt, v)?;
            let [dp, dv] = MatMul
                .backward(&[Some(&p), Some(v)], &o, grad, &[true, need[2]])?
                .try_into()
                .map_err(|_| shape_err("Attention", "MatMul gradient arity"))?;
            let dp = dp.ok_or_else(|| shape_err("Attention", "no probability gradient"))?;
            let ds = SOFTMAX.backward(&[Some(&s)], &p, &dp, &[true])?.remove(0);
            let ds = ds.ok_or_else(|| shape_err("Attention", "no score gradient"))?;
            let ds = Tensor::f32(
                ds.shape().to_vec(),
                ds.fs().iter().map(|x| x * self.scale).collect(),
            );
            let dqk = MatMul.backward(&[Some(q), Some(kt)], &s, &ds, &need[..2])?;
            res[0] = dqk[0].clone();
            res[1] = dqk[1].clone();
            res[2] = dv;
            return Ok(res);
        };
        let [n, d, m, e] = nd;
        let (qf, kf, vf, gf) = (q.fs(), kt.fs(), v.fs(), grad.fs());
        let mut dq = vec![0.0f32; nb * n * d];
        let mut dk = vec![0.0f32; nb * d * m];
        let mut dv = vec![0.0f32; nb * m * e];
        dq.par_chunks_mut((n * d).max(1))
            .zip(dk.par_chunks_mut((d * m).max(1)))
            .zip(dv.par_chunks_mut((m * e).max(1)))
            .enumerate()
            .for_each_init(
                || (vec![0.0f32; n * m], vec![0.0f32; n * m]),
                |(p, ds), (b, ((dqb, dkb), dvb))| {
                    self.probs(qf, kf, b, nd, p);
                    let go = View::rows(&gf[b * n * e..(b + 1) * n * e], e);
                    let vb = &vf[b * m * e..(b + 1) * m * e];
                    // dV = Pᵀ·dO.
                    matmul(m, e, n, dvb, e, false, View::rows_t(p, m), go, false);
                    // dP = dO·Vᵀ, then dS = α·P ⊙ (dP − rowsum(dP ⊙ P)).
                    matmul(n, m, e, ds, m, false, go, View::rows_t(vb, e), false);
                    for (dsr, pr) in ds.chunks_mut(m).zip(p.chunks(m)) {
                        let dot: f32 = dsr.iter().zip(pr).map(|(a, b)| a * b).sum();
                        for (x, &pj) in dsr.iter_mut().zip(pr) {
                            *x = self.scale * pj * (*x - dot);
                        }
                    }
                    let qb = &qf[b * n * d..(b + 1) * n * d];
                    let kb = &kf[b * d * m..(b + 1) * d * m];
                    // dQ = dS·(Kᵀ)ᵀ, dKᵀ = Qᵀ·dS.
                    matmul(
                        n,
                        d,
                        m,
                        dqb,
                        d,
                        false,
                        View::rows(ds, m),
                        View::rows_t(kb, m),
                        false,
                    );
                    matmul(
                        d,
                        m,
                        n,
                        dkb,
                        m,
                        false,
                        View::rows_t(qb, d),
                        View::rows(ds, m),
                        false,
                    );
                },
            );
        let t = |shape: &[usize], data| Tensor::f32(shape.to_vec(), data);
        res[0] = need[0].then(|| t(q.shape(), dq));
        res[1] = need[1].then(|| t(kt.shape(), dk));
        res[2] = need[2].then(|| t(v.shape(), dv));
        Ok(res)
    }
    impl_any!();
}
