//! Optimisers (SGD with momentum, Adam, AdamW) over a fixed list of parameter tensors, and
//! learning-rate schedules (constant, step, cosine, one-cycle), both following PyTorch's
//! definitions so that a run can be compared with its PyTorch counterpart step for step.
//!
//! The learning rate is not part of [`OptimizerParams`]: a training loop asks its
//! [`Schedule`] for the rate of each step and passes it to [`Optimizer::step`].
//!
//! ```
//! use faultline_train::{Optimizer, OptimizerParams, Schedule};
//! // Minimise f(θ) = ½θ² (gradient θ) with SGD + momentum under a cosine schedule.
//! let mut opt = Optimizer::new(OptimizerParams::sgd(), &[1]).unwrap();
//! let schedule = Schedule::parse("cosine").unwrap();
//! let mut theta = [1.0f32];
//! let total = 100;
//! for step in 0..total {
//!     let grad = [theta[0]];
//!     let lr = schedule.lr(0.1, step, total);
//!     opt.step(lr, &mut [&mut theta], &[&grad], &[true]).unwrap();
//! }
//! assert!(theta[0].abs() < 1e-2); // from 1 (about 0.0055)
//! assert_eq!(opt.steps(), 100);
//! ```

use std::f64::consts::PI;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

fn param_error<T>(name: &'static str, reason: impl Into<String>) -> Result<T> {
    Err(Error::Param {
        name,
        reason: reason.into(),
    })
}

/// Which optimiser and its hyper-parameters (the learning rate comes per step, from a
/// [`Schedule`]).
///
/// Serialized with a `kind` tag: `{"kind": "sgd", "momentum": 0.9, "nesterov": false,
/// "weight_decay": 0.0005}`, `{"kind": "adam", …}`, `{"kind": "adamw", …}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerParams {
    /// SGD with momentum, PyTorch `torch.optim.SGD` with dampening 0:
    /// `d = g + λθ`, `buf ← μ·buf + d` (`buf = d` on the first step),
    /// `step = d + μ·buf` if nesterov else `buf`, `θ ← θ − lr·step`.
    /// With `momentum` 0 this is plain SGD (no buffer is kept).
    Sgd {
        /// Momentum μ, in [0, 1).
        momentum: f32,
        /// Nesterov momentum (needs μ > 0, as PyTorch).
        nesterov: bool,
        /// L2 weight decay λ ≥ 0, added to the gradient.
        weight_decay: f32,
    },
    /// Adam with L2 weight decay added to the gradient (PyTorch `torch.optim.Adam`):
    /// `g ← g + λθ`, then the update of [`crate::Adam`] (Kingma & Ba 2015).
    Adam {
        /// First-moment decay β1, in [0, 1).
        beta1: f32,
        /// Second-moment decay β2, in [0, 1).
        beta2: f32,
        /// Denominator guard ε > 0.
        eps: f32,
        /// L2 weight decay λ ≥ 0, added to the gradient.
        weight_decay: f32,
    },
    /// AdamW (PyTorch `torch.optim.AdamW`, Loshchilov & Hutter 2019): decoupled weight
    /// decay `θ ← θ(1 − lr·λ)` before the Adam update on the plain gradient.
    AdamW {
        /// First-moment decay β1, in [0, 1).
        beta1: f32,
        /// Second-moment decay β2, in [0, 1).
        beta2: f32,
        /// Denominator guard ε > 0.
        eps: f32,
        /// Decoupled weight decay λ ≥ 0.
        weight_decay: f32,
    },
}

impl OptimizerParams {
    /// SGD with momentum 0.9, no Nesterov, weight decay 5e-4: the common CIFAR ResNet recipe
    /// (Zagoruyko & Komodakis's Wide ResNets and the usual PyTorch CIFAR scripts; He et al.
    /// 2016 §4.2 used decay 1e-4). PyTorch's own `SGD` defaults are all 0.
    pub fn sgd() -> Self {
        OptimizerParams::Sgd {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
        }
    }

    /// Adam with PyTorch's defaults: β = (0.9, 0.999), ε = 1e-8, weight decay 0.
    pub fn adam() -> Self {
        OptimizerParams::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// AdamW with PyTorch's defaults: β = (0.9, 0.999), ε = 1e-8, weight decay 0.01.
    pub fn adamw() -> Self {
        OptimizerParams::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }

    /// Checks the ranges: SGD `0 ≤ μ < 1`, Nesterov only with `μ > 0` (as PyTorch);
    /// Adam/AdamW `0 ≤ β1, β2 < 1`, `ε > 0`; every `λ ≥ 0`; all finite.
    /// (PyTorch also accepts μ ≥ 1, which makes the buffer grow without bound; refused here.)
    pub fn validate(&self) -> Result<()> {
        let decay = |weight_decay: f32| {
            if weight_decay >= 0.0 && weight_decay.is_finite() {
                Ok(())
            } else {
                param_error(
                    "weight_decay",
                    format!("{weight_decay} must be finite and ≥ 0"),
                )
            }
        };
        match *self {
            OptimizerParams::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                if !(0.0..1.0).contains(&momentum) {
                    return param_error("momentum", format!("{momentum} is not in [0, 1)"));
                }
                if nesterov && momentum <= 0.0 {
                    return param_error("nesterov", "Nesterov momentum needs momentum > 0");
                }
                decay(weight_decay)
            }
            OptimizerParams::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
            | OptimizerParams::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                if !(0.0..1.0).contains(&beta1) {
                    return param_error("beta1", format!("{beta1} is not in [0, 1)"));
                }
                if !(0.0..1.0).contains(&beta2) {
                    return param_error("beta2", format!("{beta2} is not in [0, 1)"));
                }
                if !(eps > 0.0 && eps.is_finite()) {
                    return param_error("eps", format!("{eps} must be finite and > 0"));
                }
                decay(weight_decay)
            }
        }
    }

    /// Whether this optimiser keeps a first buffer per tensor (SGD momentum buffer, Adam
    /// `exp_avg`).
    fn has_first(&self) -> bool {
        !matches!(self, OptimizerParams::Sgd { momentum, .. } if *momentum == 0.0)
    }

    /// Whether this optimiser keeps a second buffer per tensor (Adam `exp_avg_sq`).
    fn has_second(&self) -> bool {
        !matches!(self, OptimizerParams::Sgd { .. })
    }
}

/// Optimiser state over a fixed list of parameter tensors (sizes given at construction):
/// the hyper-parameters, the step count and the per-tensor buffers (SGD `momentum_buffer`;
/// Adam/AdamW `exp_avg` and `exp_avg_sq`, PyTorch's names).
///
/// Serializable so that a checkpoint restores it exactly: the buffers are written as the
/// `u32` bit patterns of their `f32` values, so any serde format (JSON included, whose float
/// text would not keep NaN or infinities) gives back the very same numbers and a resumed run
/// continues bit for bit. Deserializing checks the buffers against the sizes and the
/// hyper-parameters, so a damaged checkpoint is an error, never a panic later.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "OptimizerState")]
pub struct Optimizer {
    params: OptimizerParams,
    sizes: Vec<usize>,
    steps: u64,
    /// SGD momentum buffers (none when μ = 0) or Adam first moments, one per tensor.
    #[serde(with = "bits")]
    first: Vec<Vec<f32>>,
    /// Adam second moments, one per tensor (none for SGD).
    #[serde(with = "bits")]
    second: Vec<Vec<f32>>,
}

/// The serialized form of [`Optimizer`], checked before it becomes one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptimizerState {
    params: OptimizerParams,
    sizes: Vec<usize>,
    steps: u64,
    #[serde(with = "bits")]
    first: Vec<Vec<f32>>,
    #[serde(with = "bits")]
    second: Vec<Vec<f32>>,
}

impl TryFrom<OptimizerState> for Optimizer {
    type Error = Error;

    fn try_from(s: OptimizerState) -> Result<Self> {
        s.params.validate()?;
        let check = |what: &str, bufs: &[Vec<f32>], kept: bool| -> Result<()> {
            let lens: Vec<usize> = bufs.iter().map(Vec::len).collect();
            let want = if kept { s.sizes.clone() } else { Vec::new() };
            if lens != want {
                return Err(Error::Optimizer(format!(
                    "checkpoint {what} buffers have lengths {lens:?}, expected {want:?}"
                )));
            }
            Ok(())
        };
        check("first", &s.first, s.params.has_first())?;
        check("second", &s.second, s.params.has_second())?;
        Ok(Optimizer {
            params: s.params,
            sizes: s.sizes,
            steps: s.steps,
            first: s.first,
            second: s.second,
        })
    }
}

impl Optimizer {
    /// Zero state for tensors of the given lengths; an error if `params` is out of range
    /// ([`OptimizerParams::validate`]).
    pub fn new(params: OptimizerParams, sizes: &[usize]) -> Result<Self> {
        params.validate()?;
        let zeros = |kept: bool| {
            if kept {
                sizes.iter().map(|&s| vec![0.0; s]).collect()
            } else {
                Vec::new()
            }
        };
        Ok(Optimizer {
            params,
            sizes: sizes.to_vec(),
            steps: 0,
            first: zeros(params.has_first()),
            second: zeros(params.has_second()),
        })
    }

    /// One update with learning rate `lr` (finite, ≥ 0) of every tensor in `params` with its
    /// gradient in `grads`. `decay[i]` says whether tensor i takes weight decay (the loop
    /// passes false for biases and batch-norm scales/shifts). The lists must have as many
    /// entries as the sizes given to [`Optimizer::new`] and each tensor its size: an error
    /// otherwise, with nothing changed. The formulas are those of [`OptimizerParams`].
    pub fn step(
        &mut self,
        lr: f32,
        params: &mut [&mut [f32]],
        grads: &[&[f32]],
        decay: &[bool],
    ) -> Result<()> {
        if decay.len() != self.sizes.len() {
            return Err(Error::Optimizer(format!(
                "built for {} tensors, got {} weight-decay flags",
                self.sizes.len(),
                decay.len()
            )));
        }
        self.update(lr, params, grads, |i| decay[i])
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The hyper-parameters.
    pub fn params(&self) -> &OptimizerParams {
        &self.params
    }

    /// The tensor sizes it was built for.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// [`Optimizer::step`] with the weight-decay flags as a function of the tensor index.
    pub(crate) fn update(
        &mut self,
        lr: f32,
        params: &mut [&mut [f32]],
        grads: &[&[f32]],
        decay: impl Fn(usize) -> bool,
    ) -> Result<()> {
        if !(lr >= 0.0 && lr.is_finite()) {
            return param_error("lr", format!("{lr} must be finite and ≥ 0"));
        }
        if params.len() != self.sizes.len() || grads.len() != self.sizes.len() {
            return Err(Error::Optimizer(format!(
                "built for {} tensors, got {} parameters and {} gradients",
                self.sizes.len(),
                params.len(),
                grads.len()
            )));
        }
        for (k, ((p, g), &n)) in params.iter().zip(grads).zip(&self.sizes).enumerate() {
            if p.len() != n || g.len() != n {
                return Err(Error::Optimizer(format!(
                    "tensor {k}: built for {n} values, got {} parameters and {} gradients",
                    p.len(),
                    g.len()
                )));
            }
        }
        let first_step = self.steps == 0;
        self.steps += 1;
        match self.params {
            OptimizerParams::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                for (k, (p, g)) in params.iter_mut().zip(grads).enumerate() {
                    let wd = if decay(k) { weight_decay } else { 0.0 };
                    let buf = self.first.get_mut(k).map(Vec::as_mut_slice);
                    sgd(p, g, buf, lr, momentum, nesterov, wd, first_step);
                }
            }
            OptimizerParams::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
            | OptimizerParams::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let decoupled = matches!(self.params, OptimizerParams::AdamW { .. });
                // PyTorch computes the bias corrections in double precision.
                let t = self.steps.min(i32::MAX as u64) as i32;
                let bc1 = 1.0 - (beta1 as f64).powi(t);
                let bc2 = 1.0 - (beta2 as f64).powi(t);
                let c = AdamConsts {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    step_size: (lr as f64 / bc1) as f32,
                    bc2_sqrt: bc2.sqrt() as f32,
                };
                for (k, ((p, g), (m, v))) in params
                    .iter_mut()
                    .zip(grads)
                    .zip(self.first.iter_mut().zip(self.second.iter_mut()))
                    .enumerate()
                {
                    let wd = if decay(k) { weight_decay } else { 0.0 };
                    adam(p, g, m, v, &c, wd, decoupled);
                }
            }
        }
        Ok(())
    }
}

/// One SGD update of a tensor (PyTorch `_single_tensor_sgd` with dampening 0).
#[allow(clippy::too_many_arguments)]
fn sgd(
    p: &mut [f32],
    g: &[f32],
    buf: Option<&mut [f32]>,
    lr: f32,
    momentum: f32,
    nesterov: bool,
    wd: f32,
    first_step: bool,
) {
    match buf {
        None => {
            for (p, &g) in p.iter_mut().zip(g) {
                let d = if wd != 0.0 { g + wd * *p } else { g };
                *p -= lr * d;
            }
        }
        Some(buf) => {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
                let d = if wd != 0.0 { g + wd * *p } else { g };
                // PyTorch: buf = clone(d) on the first step, then buf.mul_(μ).add_(d).
                *b = if first_step { d } else { *b * momentum + d };
                let step = if nesterov { d + momentum * *b } else { *b };
                *p -= lr * step;
            }
        }
    }
}

/// Per-step constants of the Adam update.
struct AdamConsts {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    /// `lr / (1 − β1^t)`.
    step_size: f32,
    /// `√(1 − β2^t)`.
    bc2_sqrt: f32,
}

/// One Adam/AdamW update of a tensor (PyTorch `_single_tensor_adam`, non-capturable):
/// `m ← m + (1 − β1)(g − m)` (`lerp_`), `v ← β2 v + (1 − β2) g²`,
/// `θ ← θ − step_size · m / (√v / √(1 − β2^t) + ε)`.
fn adam(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    c: &AdamConsts,
    wd: f32,
    decoupled: bool,
) {
    let AdamConsts {
        lr,
        beta1,
        beta2,
        eps,
        step_size,
        bc2_sqrt,
    } = *c;
    let shrink = 1.0 - lr * wd;
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let mut g = g;
        if wd != 0.0 {
            if decoupled {
                *p *= shrink;
            } else {
                g += wd * *p;
            }
        }
        *m += (1.0 - beta1) * (g - *m);
        *v = *v * beta2 + (1.0 - beta2) * g * g;
        let denom = v.sqrt() / bc2_sqrt + eps;
        *p -= step_size * *m / denom;
    }
}

/// Serde of `f32` buffers as their `u32` bit patterns (exact in every format).
mod bits {
    use serde::de::Deserializer;
    use serde::ser::{Serialize, Serializer};
    use serde::Deserialize;

    struct Bits<'a>(&'a [f32]);

    impl Serialize for Bits<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(|x| x.to_bits()))
        }
    }

    pub fn serialize<S: Serializer>(bufs: &[Vec<f32>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(bufs.iter().map(|b| Bits(b)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f32>>, D::Error> {
        let raw = Vec::<Vec<u32>>::deserialize(d)?;
        Ok(raw
            .into_iter()
            .map(|b| b.into_iter().map(f32::from_bits).collect())
            .collect())
    }
}

/// Learning-rate schedule over a run of `total` optimiser steps (step counted from 0): the
/// loop uses `schedule.lr(base, step, total)` for its `step`-th update.
///
/// Serialized with a `kind` tag: `{"kind": "constant"}`, `{"kind": "step", "every": 30,
/// "gamma": 0.1}`, `{"kind": "cosine", "min_factor": 0.0}`, `{"kind": "one-cycle",
/// "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 10000.0}`. [`Schedule::parse`]
/// reads the CLI form and `Display` writes it back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Schedule {
    /// `lr = base` (PyTorch: no scheduler).
    #[default]
    Constant,
    /// Multiply by gamma every `every` steps: `lr = base · gamma^⌊step / every⌋`
    /// (PyTorch `StepLR` with `step_size = every`).
    Step {
        /// Steps between decays, ≥ 1.
        every: usize,
        /// Factor of each decay, finite and > 0 (PyTorch's default 0.1).
        gamma: f32,
    },
    /// Cosine annealing from base to `η_min = min_factor·base` over the run (PyTorch
    /// `CosineAnnealingLR` with `eta_min = min_factor·base`, `T_max = total`):
    /// `lr = η_min + (base − η_min)(1 + cos(π·step/total))/2`. It reaches `η_min` at
    /// `step = total` and stays there after (PyTorch's formula would rise again).
    Cosine {
        /// `η_min / base`, in [0, 1].
        min_factor: f32,
    },
    /// One-cycle (PyTorch `OneCycleLR` with `max_lr = base`, `total_steps = total`,
    /// `anneal_strategy='cos'`, `three_phase=False`): with `initial = base/div_factor` and
    /// `min = initial/final_div_factor`, cosine-anneal `initial → base` from step 0 to
    /// `s₁ = pct_start·total − 1`, then `base → min` from `s₁` to `total − 1`, each phase
    /// `lr = end + (start − end)(1 + cos(π·pct))/2` with `pct` the fraction of the phase
    /// done. Steps past `total − 1` keep `min` (PyTorch raises); a phase of zero length
    /// gives its end value (PyTorch divides by zero). Momentum is not cycled (PyTorch's
    /// `cycle_momentum=False`).
    OneCycle {
        /// Fraction of the run spent warming up, in [0, 1]. PyTorch default 0.3.
        pct_start: f32,
        /// `base / initial`, finite and > 0. PyTorch default 25.
        div_factor: f32,
        /// `initial / min`, finite and > 0. PyTorch default 1e4.
        final_div_factor: f32,
    },
}

impl Schedule {
    /// Default `gamma` of `step:EVERY` (PyTorch `StepLR`'s).
    pub const STEP_GAMMA: f32 = 0.1;
    /// Default `min_factor` of `cosine` (PyTorch `CosineAnnealingLR`'s `eta_min = 0`).
    pub const COSINE_MIN_FACTOR: f32 = 0.0;
    /// Default `pct_start` of `one-cycle` (PyTorch `OneCycleLR`'s).
    pub const ONE_CYCLE_PCT_START: f32 = 0.3;
    /// Default `div_factor` of `one-cycle` (PyTorch `OneCycleLR`'s).
    pub const ONE_CYCLE_DIV_FACTOR: f32 = 25.0;
    /// Default `final_div_factor` of `one-cycle` (PyTorch `OneCycleLR`'s).
    pub const ONE_CYCLE_FINAL_DIV_FACTOR: f32 = 1e4;

    /// The learning rate of step `step` (from 0) of a run of `total` steps with base rate
    /// `base` (the formulas are on the variants; computed in f64). `total = 0` gives the
    /// final value. Call [`Schedule::validate`] first: invalid values give meaningless but
    /// never panicking results.
    pub fn lr(&self, base: f32, step: usize, total: usize) -> f32 {
        let base64 = base as f64;
        let lr = match *self {
            Schedule::Constant => base64,
            Schedule::Step { every, gamma } => {
                let k = (step / every.max(1)).min(i32::MAX as usize) as i32;
                base64 * (gamma as f64).powi(k)
            }
            Schedule::Cosine { min_factor } => {
                let eta_min = min_factor as f64 * base64;
                let frac = if total == 0 {
                    1.0
                } else {
                    step.min(total) as f64 / total as f64
                };
                eta_min + (base64 - eta_min) * (1.0 + (PI * frac).cos()) / 2.0
            }
            Schedule::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                let initial = base64 / div_factor as f64;
                let min = initial / final_div_factor as f64;
                if total == 0 {
                    min
                } else {
                    let last = (total - 1) as f64;
                    let s = (step as f64).min(last);
                    let end1 = pct_start as f64 * total as f64 - 1.0;
                    // PyTorch: the first phase whose end_step ≥ step, else the last phase.
                    let (start_step, end_step, from, to) = if s <= end1 {
                        (0.0, end1, initial, base64)
                    } else {
                        (end1, last, base64, min)
                    };
                    let span = end_step - start_step;
                    let pct = if span > 0.0 {
                        (s - start_step) / span
                    } else {
                        1.0
                    };
                    to + (from - to) / 2.0 * ((PI * pct).cos() + 1.0)
                }
            }
        };
        lr as f32
    }

    /// Checks the ranges: step `every ≥ 1`, `gamma > 0`; cosine `min_factor ∈ [0, 1]`;
    /// one-cycle `pct_start ∈ [0, 1]` (as PyTorch), `div_factor, final_div_factor > 0`;
    /// all finite.
    pub fn validate(&self) -> Result<()> {
        let positive = |name, v: f32| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                param_error(name, format!("{v} must be finite and > 0"))
            }
        };
        let unit = |name, v: f32| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                param_error(name, format!("{v} is not in [0, 1]"))
            }
        };
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step { every, gamma } => {
                if every == 0 {
                    return param_error("every", "the step schedule needs every ≥ 1");
                }
                positive("gamma", gamma)
            }
            Schedule::Cosine { min_factor } => unit("min_factor", min_factor),
            Schedule::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                unit("pct_start", pct_start)?;
                positive("div_factor", div_factor)?;
                positive("final_div_factor", final_div_factor)
            }
        }
    }

    /// Parses a CLI value (then validates it):
    /// - `constant`;
    /// - `step:EVERY[:GAMMA]`: EVERY steps between decays (required), GAMMA default 0.1;
    /// - `cosine[:MIN_FACTOR]`: MIN_FACTOR default 0;
    /// - `one-cycle[:PCT_START[:DIV_FACTOR[:FINAL_DIV_FACTOR]]]`: defaults 0.3, 25, 1e4.
    ///
    /// The defaults are PyTorch's (`StepLR`, `CosineAnnealingLR`, `OneCycleLR`).
    pub fn parse(s: &str) -> Result<Self> {
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        let bad = |reason: String| Error::Param {
            name: "schedule",
            reason: format!("{s:?}: {reason}"),
        };
        let max_args = |n: usize| {
            if args.len() > n {
                Err(bad(format!(
                    "{name} takes at most {n} values, got {}",
                    args.len()
                )))
            } else {
                Ok(())
            }
        };
        let float = |i: usize, what: &str, default: f32| -> Result<f32> {
            match args.get(i) {
                None => Ok(default),
                Some(a) => a
                    .trim()
                    .parse::<f32>()
                    .map_err(|_| bad(format!("{what} {a:?} is not a number"))),
            }
        };
        let schedule = match name.trim() {
            "constant" => {
                max_args(0)?;
                Schedule::Constant
            }
            "step" => {
                max_args(2)?;
                let every = match args.first() {
                    None => {
                        return Err(bad(
                            "write step:EVERY[:GAMMA] (EVERY steps between decays)".into()
                        ))
                    }
                    Some(a) => a
                        .trim()
                        .parse::<usize>()
                        .map_err(|_| bad(format!("EVERY {a:?} is not a whole number")))?,
                };
                Schedule::Step {
                    every,
                    gamma: float(1, "GAMMA", Self::STEP_GAMMA)?,
                }
            }
            "cosine" => {
                max_args(1)?;
                Schedule::Cosine {
                    min_factor: float(0, "MIN_FACTOR", Self::COSINE_MIN_FACTOR)?,
                }
            }
            "one-cycle" => {
                max_args(3)?;
                Schedule::OneCycle {
                    pct_start: float(0, "PCT_START", Self::ONE_CYCLE_PCT_START)?,
                    div_factor: float(1, "DIV_FACTOR", Self::ONE_CYCLE_DIV_FACTOR)?,
                    final_div_factor: float(
                        2,
                        "FINAL_DIV_FACTOR",
                        Self::ONE_CYCLE_FINAL_DIV_FACTOR,
                    )?,
                }
            }
            _ => {
                return Err(bad(
                    "expected constant, step:EVERY[:GAMMA], cosine[:MIN_FACTOR] or \
                     one-cycle[:PCT_START[:DIV_FACTOR[:FINAL_DIV_FACTOR]]]"
                        .into(),
                ))
            }
        };
        schedule.validate()?;
        Ok(schedule)
    }
}

/// The full CLI form that [`Schedule::parse`] reads back to the same value.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Schedule::Constant => write!(f, "constant"),
            Schedule::Step { every, gamma } => write!(f, "step:{every}:{gamma}"),
            Schedule::Cosine { min_factor } => write!(f, "cosine:{min_factor}"),
            Schedule::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => write!(f, "one-cycle:{pct_start}:{div_factor}:{final_div_factor}"),
        }
    }
}
