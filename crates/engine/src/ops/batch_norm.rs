//! BatchNormalization. In inference mode ([`BatchNorm`]) a per-channel affine map
//! `y = γ·(x − μ)/√(σ² + ε) + β` with the running statistics μ, σ²; when it follows a Conv,
//! the graph pass `fold_batch_norm` removes it entirely. In training mode ([`BatchNormTrain`],
//! put in by `crate::train`) μ and σ² are the batch's own (Ioffe & Szegedy 2015).

use rayon::prelude::*;

use super::{impl_any, input_f32, Op};
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

/// Inference-mode batch normalization over dimension 1.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// ε added to the variance (default 1e-5).
    pub epsilon: f32,
}

impl BatchNorm {
    /// Per-channel (scale, shift) from inputs 1..=4 (γ, β, μ, σ²).
    pub(crate) fn affine(&self, inputs: &[Option<&Tensor>]) -> Result<(Vec<f32>, Vec<f32>)> {
        let get = |i| input_f32("BatchNormalization", inputs, i).map(|t| t.fs());
        let (g, b, m, v) = (get(1)?, get(2)?, get(3)?, get(4)?);
        if !(g.len() == b.len() && b.len() == m.len() && m.len() == v.len()) {
            return Err(shape_err(
                "BatchNormalization",
                "scale, bias, mean and var differ in length",
            ));
        }
        let scale: Vec<f32> = g
            .iter()
            .zip(v)
            .map(|(g, v)| g / (v + self.epsilon).sqrt())
            .collect();
        let shift: Vec<f32> = b
            .iter()
            .zip(m)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Ok((scale, shift))
    }
}

fn channels(x: &Tensor, c: usize) -> Result<usize> {
    let s = x.shape();
    if s.len() < 2 || s[1] != c {
        return Err(shape_err(
            "BatchNormalization",
            format!("input {s:?} does not have {c} channels"),
        ));
    }
    Ok(s[2..].iter().product())
}

impl Op for BatchNorm {
    fn name(&self) -> &'static str {
        "BatchNormalization"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input_f32("BatchNormalization", inputs, 0)?;
        let (scale, shift) = self.affine(inputs)?;
        let inner = channels(x, scale.len())?;
        let c = scale.len();
        let mut y = x.clone();
        for (i, chunk) in y.f32_mut().chunks_mut(inner.max(1)).enumerate() {
            let (s, t) = (scale[i % c], shift[i % c]);
            chunk.iter_mut().for_each(|v| *v = *v * s + t);
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
        let mut res = vec![None; need.len()];
        if need.iter().skip(3).any(|&n| n) {
            return Err(shape_err(
                "BatchNormalization",
                "running statistics take no gradient",
            ));
        }
        let (scale, _) = self.affine(inputs)?;
        let c = scale.len();
        let inner = channels(grad, c)?.max(1);
        if need[0] {
            let mut g = grad.clone();
            for (i, chunk) in g.f32_mut().chunks_mut(inner).enumerate() {
                let s = scale[i % c];
                chunk.iter_mut().for_each(|v| *v *= s);
            }
            res[0] = Some(g);
        }
        // dγ_c = Σ dy·(x − μ)/√(σ² + ε), dβ_c = Σ dy, over the batch and the plane.
        if need.get(1).copied().unwrap_or(false) || need.get(2).copied().unwrap_or(false) {
            let x = input_f32("BatchNormalization", inputs, 0)?;
            let get = |i| input_f32("BatchNormalization", inputs, i).map(|t| t.fs());
            let (mean, var) = (get(3)?, get(4)?);
            let istd: Vec<f32> = var
                .iter()
                .map(|v| 1.0 / (v + self.epsilon).sqrt())
                .collect();
            let (dg, db) = affine_grads(grad.fs(), x.fs(), mean, &istd, inner);
            if need.get(1).copied().unwrap_or(false) {
                res[1] = Some(Tensor::f32(vec![c], dg));
            }
            if need.get(2).copied().unwrap_or(false) {
                res[2] = Some(Tensor::f32(vec![c], db));
            }
        }
        Ok(res)
    }
    impl_any!();
}

/// Per-channel `dγ = Σ dy·(x − μ)·istd` and `dβ = Σ dy` over the batch and the plane
/// (`inner` values per channel and sample), for both modes.
fn affine_grads(
    grad: &[f32],
    x: &[f32],
    mean: &[f32],
    istd: &[f32],
    inner: usize,
) -> (Vec<f32>, Vec<f32>) {
    let c = mean.len();
    let (mut dg, mut db) = (vec![0.0f32; c], vec![0.0f32; c]);
    for (i, (gp, xp)) in grad.chunks(inner).zip(x.chunks(inner)).enumerate() {
        let ch = i % c;
        db[ch] += gp.iter().sum::<f32>();
        dg[ch] += gp
            .iter()
            .zip(xp)
            .map(|(g, x)| g * (x - mean[ch]) * istd[ch])
            .sum::<f32>();
    }
    (dg, db)
}

/// Training-mode batch normalization over dimension 1: `y = γ·x̂ + β` with
/// `x̂ = (x − μ_B)/√(σ²_B + ε)` and μ_B, σ²_B the mean and (biased) variance of each channel over
/// the batch and the plane. Inputs as ONNX's BatchNormalization (x, γ, β, running mean, running
/// variance); the running statistics are not read here: `crate::train` updates them from the
/// batch after each forward pass.
#[derive(Debug, Clone)]
pub struct BatchNormTrain {
    /// ε added to the variance (default 1e-5).
    pub epsilon: f32,
}

/// Per-channel batch mean and biased variance of `x` (N × C × inner), in f64 sums.
pub(crate) fn batch_stats(x: &Tensor, c: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let inner = channels(x, c)?.max(1);
    let xs = x.fs();
    let per_image = c * inner;
    let count = (xs.len() / c) as f64;
    let stats: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mut s, mut s2) = (0.0f64, 0.0f64);
            for img in xs.chunks(per_image) {
                for &v in &img[ch * inner..(ch + 1) * inner] {
                    s += v as f64;
                    s2 += (v as f64) * (v as f64);
                }
            }
            let mean = s / count;
            ((mean) as f32, (s2 / count - mean * mean).max(0.0) as f32)
        })
        .collect();
    Ok(stats.into_iter().unzip())
}

impl BatchNormTrain {
    fn parts<'a>(
        &self,
        inputs: &[Option<&'a Tensor>],
    ) -> Result<(&'a Tensor, &'a [f32], &'a [f32])> {
        let x = input_f32("BatchNormalization", inputs, 0)?;
        let g = input_f32("BatchNormalization", inputs, 1)?.fs();
        let b = input_f32("BatchNormalization", inputs, 2)?.fs();
        if g.len() != b.len() {
            return Err(shape_err(
                "BatchNormalization",
                "scale and bias differ in length",
            ));
        }
        Ok((x, g, b))
    }
}

impl Op for BatchNormTrain {
    fn name(&self) -> &'static str {
        "BatchNormalization"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let (x, gamma, beta) = self.parts(inputs)?;
        let c = gamma.len();
        let inner = channels(x, c)?.max(1);
        let (mean, var) = batch_stats(x, c)?;
        let mut y = x.clone();
        for (i, plane) in y.f32_mut().chunks_mut(inner).enumerate() {
            let ch = i % c;
            let s = gamma[ch] / (var[ch] + self.epsilon).sqrt();
            let t = beta[ch] - mean[ch] * s;
            plane.iter_mut().for_each(|v| *v = *v * s + t);
        }
        Ok(y)
    }
    /// With M values per channel: `dβ = Σ dy`, `dγ = Σ dy·x̂` and
    /// `dx = γ/(M·√(σ²_B + ε)) · (M·dy − dβ − x̂·dγ)` (the batch statistics depend on x).
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        if need.iter().skip(3).any(|&n| n) {
            return Err(shape_err(
                "BatchNormalization",
                "running statistics take no gradient",
            ));
        }
        let (x, gamma, _) = self.parts(inputs)?;
        let c = gamma.len();
        let inner = channels(x, c)?.max(1);
        let (mean, var) = batch_stats(x, c)?;
        let istd: Vec<f32> = var
            .iter()
            .map(|v| 1.0 / (v + self.epsilon).sqrt())
            .collect();
        let (dg, db) = affine_grads(grad.fs(), x.fs(), &mean, &istd, inner);
        if need[0] {
            let m = (x.len() / c) as f32;
            let mut dx = grad.clone();
            for (i, (dp, xp)) in dx
                .f32_mut()
                .chunks_mut(inner)
                .zip(x.fs().chunks(inner))
                .enumerate()
            {
                let ch = i % c;
                let k = gamma[ch] * istd[ch] / m;
                for (d, &xv) in dp.iter_mut().zip(xp) {
                    let xh = (xv - mean[ch]) * istd[ch];
                    *d = k * (m * *d - db[ch] - xh * dg[ch]);
                }
            }
            res[0] = Some(dx);
        }
        if need.get(1).copied().unwrap_or(false) {
            res[1] = Some(Tensor::f32(vec![c], dg));
        }
        if need.get(2).copied().unwrap_or(false) {
            res[2] = Some(Tensor::f32(vec![c], db));
        }
        Ok(res)
    }
    impl_any!();
}
