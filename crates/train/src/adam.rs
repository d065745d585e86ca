//! Adam (and AdamW) with its learning rate built in: a thin use of [`Optimizer`], which holds
//! the one implementation of the update (PyTorch's `torch.optim.Adam` order, so results match
//! it step for step up to float rounding).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optim::{Optimizer, OptimizerParams};

/// Adam's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamParams {
    /// Learning rate. Default 1e-4 (the margin-consistency notebook's; PyTorch's own is 1e-3).
    pub lr: f32,
    /// First-moment decay β1. Default 0.9 (Kingma & Ba; PyTorch).
    pub beta1: f32,
    /// Second-moment decay β2. Default 0.999.
    pub beta2: f32,
    /// Denominator guard ε. Default 1e-8.
    pub eps: f32,
    /// Weight decay λ. Default 0. Added to the gradient (`g + λθ`, PyTorch `Adam`) unless
    /// `decoupled_weight_decay`, which shrinks the weights instead (`θ ← θ(1 − lr·λ)`, `AdamW`).
    pub weight_decay: f32,
    /// Use decoupled (AdamW) weight decay. Default false.
    pub decoupled_weight_decay: bool,
}

impl Default for AdamParams {
    fn default() -> Self {
        AdamParams {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }
}

impl AdamParams {
    /// Checks the ranges: `lr ≥ 0`, `0 ≤ β < 1`, `ε > 0`, `λ ≥ 0`, all finite.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return Err(Error::Param {
                name: "lr",
                reason: "must be finite and ≥ 0".to_string(),
            });
        }
        self.optimizer().validate()
    }

    /// The same hyper-parameters as [`OptimizerParams`] (without `lr`, which
    /// [`Optimizer::step`] takes per step): [`OptimizerParams::AdamW`] when
    /// `decoupled_weight_decay`, else [`OptimizerParams::Adam`].
    pub fn optimizer(&self) -> OptimizerParams {
        let AdamParams {
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } = *self;
        if self.decoupled_weight_decay {
            OptimizerParams::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
        } else {
            OptimizerParams::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
        }
    }
}

/// Adam optimizer state for a fixed list of parameter tensors.
///
/// # Paper
/// Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, arXiv 1412.6980;
/// AdamW: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, arXiv 1711.05101.
///
/// # Update
/// At step `t` (from 1): `m ← β1 m + (1 − β1) g`, `v ← β2 v + (1 − β2) g²`,
/// `θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)` — PyTorch's arrangement of
/// `θ − lr · m̂ / (√v̂ + ε)`.
///
/// # Defaults
/// [`AdamParams::default`]; bias corrections are computed in f64, the rest in f32 as PyTorch.
///
/// # Implementation
/// It is [`Optimizer`] with [`AdamParams::optimizer`] and the fixed rate `lr`, every tensor
/// taking weight decay.
#[derive(Debug, Clone)]
pub struct Adam {
    params: AdamParams,
    inner: Optimizer,
}

impl Adam {
    /// Zero moments for tensors of the given lengths.
    pub fn new(params: AdamParams, sizes: &[usize]) -> Result<Self> {
        params.validate()?;
        Ok(Adam {
            params,
            inner: Optimizer::new(params.optimizer(), sizes)?,
        })
    }

    /// The hyper-parameters.
    pub fn params(&self) -> &AdamParams {
        &self.params
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.inner.steps()
    }

    /// One update of every tensor in `params` with its gradient in `grads` (same order and
    /// lengths as given to [`Adam::new`]).
    pub fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]]) -> Result<()> {
        self.inner.update(self.params.lr, params, grads, |_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_two_steps_match_hand_computation() {
        // lr 0.1, g1 = 2, g2 = −1, θ0 = 1.
        // Step 1: m = 0.2, v = 0.004, m̂ = 2, v̂ = 4 → θ1 = 1 − 0.1·2/(2 + 1e-8) ≈ 0.9.
        // Step 2: m = 0.9·0.2 + 0.1·(−1) = 0.08, v = 0.999·0.004 + 0.001·1 = 0.004996,
        //   m̂ = 0.08/0.19 = 0.421053, v̂ = 0.004996/0.001999 = 2.499250,
        //   θ2 = 0.9 − 0.1·0.421053/1.580902 = 0.873366.
        let p = AdamParams {
            lr: 0.1,
            ..AdamParams::default()
        };
        let mut adam = Adam::new(p, &[1]).unwrap();
        let mut theta = [1.0f32];
        adam.step(&mut [&mut theta], &[&[2.0]]).unwrap();
        assert!((theta[0] - 0.9).abs() < 1e-6, "{}", theta[0]);
        adam.step(&mut [&mut theta], &[&[-1.0]]).unwrap();
        let m_hat = 0.08f64 / 0.19;
        let v_hat = 0.004996f64 / (1.0 - 0.999f64 * 0.999);
        let want = 0.9 - 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
        assert!((want - 0.873366).abs() < 1e-6);
        assert!(
            (theta[0] as f64 - want).abs() < 1e-6,
            "{} vs {want}",
            theta[0]
        );
        assert_eq!(adam.steps(), 2);
    }

    #[test]
    fn weight_decay_coupled_and_decoupled() {
        // Coupled: g_eff = 0 + 0.5·2 = 1 → first step moves by lr·sign = 0.01.
        let p = AdamParams {
            lr: 0.01,
            weight_decay: 0.5,
            ..AdamParams::default()
        };
        let mut a = Adam::new(p, &[1]).unwrap();
        let mut theta = [2.0f32];
        a.step(&mut [&mut theta], &[&[0.0]]).unwrap();
        assert!((theta[0] - 1.99).abs() < 1e-6);
        // Decoupled with zero gradient: θ ← θ(1 − 0.01·0.5) and no Adam move (m = 0).
        let mut a = Adam::new(
            AdamParams {
                decoupled_weight_decay: true,
                ..p
            },
            &[1],
        )
        .unwrap();
        let mut theta = [2.0f32];
        a.step(&mut [&mut theta], &[&[0.0]]).unwrap();
        assert!((theta[0] - 1.99).abs() < 1e-6);
    }

    #[test]
    fn mismatched_lists_and_bad_params_are_errors() {
        let mut a = Adam::new(AdamParams::default(), &[2, 1]).unwrap();
        let mut p0 = [0.0f32; 2];
        assert!(a.step(&mut [&mut p0], &[&[0.0, 0.0]]).is_err());
        let mut p1 = [0.0f32; 2];
        assert!(a
            .step(&mut [&mut p0, &mut p1], &[&[0.0, 0.0], &[0.0, 0.0]])
            .is_err());
        assert_eq!(a.steps(), 0);
        let bad = AdamParams {
            beta2: 1.0,
            ..AdamParams::default()
        };
        assert!(Adam::new(bad, &[1]).is_err());
    }
}
