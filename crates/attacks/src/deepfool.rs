//! DeepFool: iterated linearisation towards the nearest decision boundary.
//!
//! # Paper
//! Moosavi-Dezfooli, Fawzi, Frossard, *DeepFool: a simple and accurate method to fool deep
//! neural networks*, CVPR 2016 (arXiv 1511.04599).
//!
//! # Update
//! At the iterate `x` with label `y`, for every class `k ≠ y`: `w_k = ∇z_k − ∇z_y`,
//! `f_k = z_k − z_y`. L2: `l = argmin_k |f_k|/‖w_k‖₂`, `r = |f_l|/‖w_l‖₂² · w_l`;
//! L∞: `l = argmin_k |f_k|/‖w_k‖₁`, `r = |f_l|/‖w_l‖₁ · sign(w_l)`.
//! `x ← clip_[0,1](x + (1 + overshoot)·r)` until the prediction changes.
//!
//! # Defaults
//! torchattacks' `DeepFool(steps=50, overshoot=0.02)`: the overshoot multiplies every step.
//! Because the overshoot applies to the last step only, DeepFool often stops a hair past the
//! boundary, where float rounding can put the re-checked prediction back on the label; such
//! samples (and those past it by less than `DECISIVE_GAP` in logits) get the accumulated
//! perturbation extended by 2, 5, 10 and 20 % (first decisive success wins).
//! With `refine_steps > 0` (default), the perturbation found is then shrunk by bisection along
//! its own direction to the smallest multiple that still flips the label (re-checked each time),
//! which removes the overshoot from the reported minimum norm.
//!
//! # Cost
//! Per iteration and active sample: one forward pass and K backward passes (one per class, from
//! the same forward pass, run together as one multi-output pass, `Forward::input_grads`); refinement adds `refine_steps` forward passes.

use faultline_engine::Model;
use serde::{Deserialize, Serialize};

use crate::attack::{
    argmax, check_batch, described, finalize, gather, AttackOutput, BatchRef, Goal, MinNormAttack,
    Passes, Watch, DECISIVE_GAP,
};
use crate::minnorm::shrink;
use crate::norm::Norm;
use crate::{Error, Result};

/// Parameters of DeepFool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepFoolParams {
    /// L2 or L∞ (default L2).
    pub norm: Norm,
    /// Maximum iterations (default 50).
    pub steps: usize,
    /// Overshoot factor applied to each step (default 0.02).
    pub overshoot: f32,
    /// Bisection steps shrinking the perturbation found (default 12; 0 disables refinement).
    pub refine_steps: usize,
}

impl Default for DeepFoolParams {
    fn default() -> Self {
        DeepFoolParams {
            norm: Norm::L2,
            steps: 50,
            overshoot: 0.02,
            refine_steps: 12,
        }
    }
}

described!(DeepFoolParams);

/// Untargeted: `goal.targets` is ignored.
impl MinNormAttack for DeepFoolParams {
    fn run_watched(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        watch: Watch,
    ) -> Result<AttackOutput> {
        deepfool(model, batch.images, goal, self, watch)
    }
}

fn deepfool(
    model: &Model,
    x: &[f32],
    goal: Goal,
    p: &DeepFoolParams,
    watch: Watch,
) -> Result<AttackOutput> {
    let goal = Goal {
        labels: goal.labels,
        targets: None,
    };
    let per = check_batch(model, x, &goal)?;
    if p.norm == Norm::L1 {
        return Err(Error::Invalid(
            "DeepFool does not support L1 (its L1 step moves one pixel and stalls at the box): use FAB"
                .into(),
        ));
    }
    let k = model.num_classes();
    let n = goal.labels.len();
    let mut passes = Passes::watched(n, watch);
    let mut adv = x.to_vec();
    let mut active: Vec<usize> = (0..n).collect();
    for step in 0..=p.steps {
        if active.is_empty() {
            break;
        }
        let xa = gather(&adv, &active, per);
        let f = model.forward(&xa)?;
        let z = f.logits().to_vec();
        // Jacobian rows ∇z_c of every class, one multi-output pass over the active batch:
        // row c of sample a at `jac[(a·K + c)·per ..]`.
        let na = active.len();
        let w: Vec<f32> = (0..na * k * k)
            .map(|i| ((i / k) % k == i % k) as u8 as f32)
            .collect();
        let jac = f.input_grads(&w, k)?;
        let row_of = |a: usize, c: usize| &jac[(a * k + c) * per..(a * k + c + 1) * per];
        let mut still = Vec::new();
        for (a, &i) in active.iter().enumerate() {
            let row = &z[a * k..(a + 1) * k];
            let y = goal.labels[i];
            let broken = argmax(row) != y;
            passes.add(&[i], 1, if broken { 0 } else { k as u32 });
            if broken || passes.forward[i] > p.steps as u32 {
                // Done iterating (the boundary push and refinement below are short).
                passes.settle(i);
                continue;
            }
            let gy = row_of(a, y);
            let mut best: Option<(f32, usize, f32)> = None;
            for c in (0..k).filter(|&c| c != y) {
                let gc = row_of(a, c);
                let fk = (row[c] - row[y]).abs();
                let wn = p.norm.dual_of(gc.iter().zip(gy).map(|(u, v)| u - v));
                let r = fk / wn.max(1e-12);
                if best.is_none_or(|(br, _, _)| r < br) {
                    best = Some((r, c, wn));
                }
            }
            let Some((_, c, wn)) = best else { continue };
            let gc = row_of(a, c);
            let fk = (row[c] - row[y]).abs();
            let xi = &mut adv[i * per..(i + 1) * per];
            for ((v, u), t) in xi.iter_mut().zip(gc).zip(gy) {
                let wv = u - t;
                let step = match p.norm {
                    // L1 is refused above.
                    Norm::L2 | Norm::L1 => fk * wv / (wn * wn).max(1e-24),
                    Norm::Linf => fk / wn.max(1e-12) * wv.signum() * (wv != 0.0) as u8 as f32,
                };
                *v = (*v + (1.0 + p.overshoot) * step).clamp(0.0, 1.0);
            }
            still.push(i);
        }
        active = still;
        passes.at((0, 1), (step + 1, p.steps + 1));
    }
    push_past_boundary(model, x, &mut adv, goal, &mut passes)?;
    if p.refine_steps > 0 {
        shrink(model, x, &mut adv, goal, p.refine_steps, &mut passes)?;
    }
    finalize(model, x, adv, goal, passes)
}

/// Extends the accumulated perturbation of samples that ended on the label's side of the
/// boundary by a few percent, keeping the first extension that flips the prediction.
fn push_past_boundary(
    model: &Model,
    x0: &[f32],
    adv: &mut [f32],
    goal: Goal,
    passes: &mut Passes,
) -> Result<()> {
    let n = goal.labels.len();
    let per = x0.len() / n.max(1);
    let k = model.num_classes();
    let z = model.logits(adv)?;
    let mut left: Vec<usize> = (0..n)
        .filter(|&i| {
            !goal.reached_by(i, &z[i * k..(i + 1) * k], DECISIVE_GAP)
                && adv[i * per..(i + 1) * per] != x0[i * per..(i + 1) * per]
        })
        .collect();
    passes.add(&(0..n).collect::<Vec<_>>(), 1, 0);
    for t in [1.02f32, 1.05, 1.1, 1.2] {
        if left.is_empty() {
            break;
        }
        let cand: Vec<f32> = left
            .iter()
            .flat_map(|&i| (0..per).map(move |p| i * per + p))
            .map(|q| (x0[q] + t * (adv[q] - x0[q])).clamp(0.0, 1.0))
            .collect();
        let z = model.logits(&cand)?;
        passes.add(&left, 1, 0);
        let mut still = Vec::new();
        for (j, &i) in left.iter().enumerate() {
            if goal.reached_by(i, &z[j * k..(j + 1) * k], DECISIVE_GAP) {
                adv[i * per..(i + 1) * per].copy_from_slice(&cand[j * per..(j + 1) * per]);
            } else {
                still.push(i);
            }
        }
        left = still;
    }
    Ok(())
}
