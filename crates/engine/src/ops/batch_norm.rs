//! BatchNormalization in inference mode: a per-channel affine map
//! `y = γ·(x − μ)/√(σ² + ε) + β`. When it follows a Conv, the graph pass
//! `fold_batch_norm` removes it entirely.

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
        if need.iter().skip(1).any(|&n| n) {
            return Err(shape_err(
                "BatchNormalization",
                "gradients with respect to parameters are not computed",
            ));
        }
        if need[0] {
            let (scale, _) = self.affine(inputs)?;
            let inner = channels(grad, scale.len())?;
            let c = scale.len();
            let mut g = grad.clone();
            for (i, chunk) in g.f32_mut().chunks_mut(inner.max(1)).enumerate() {
                let s = scale[i % c];
                chunk.iter_mut().for_each(|v| *v *= s);
            }
            res[0] = Some(g);
        }
        Ok(res)
    }
    impl_any!();
}
