//! FAB, the fast adaptive boundary attack: minimum-norm adversarial examples by iterated
//! projections onto the linearised decision boundary, biased towards the original image.
//!
//! # Paper
//! Croce & Hein, *Minimally distorted adversarial examples with a fast adaptive boundary
//! attack*, ICML 2020 (arXiv 1907.02044).
//!
//! # Update
//! At the iterate `x` (label `y`): untargeted, for every class `j ≠ y`, `f_j = z_j − z_y` and
//! `w_j = ∇z_j − ∇z_y` (Jacobian rows from one forward pass), `s = argmin_j |f_s|/‖w_s‖_*`
//! (dual norm: L1 for L∞, L2 for L2, L∞ for L1); targeted, `s = t`. The linearised boundary is `π = {u : f_s + ⟨w_s, u − x⟩ = 0}`.
//! `δ = proj_p(x, π ∩ [0,1]^d) − x`, `δ0 = proj_p(x0, π ∩ [0,1]^d) − x0` (the minimal-`L_p`
//! move onto the hyperplane inside the box; [`project_hyperplane`]),
//! `α = min(‖δ‖/(‖δ‖ + ‖δ0‖), α_max)`, `x ← clip_[0,1]((1 − α)(x + ηδ) + α(x0 + ηδ0))`.
//! When `x` is adversarial it is recorded if it is the smallest so far, then pulled back:
//! `x ← x0 + β(x − x0)`.
//!
//! # Defaults
//! AutoAttack's `FABAttack_PT` (`fab_base.py`, `fab_pt.py`, `fab_projections.py`): 100
//! iterations, `α_max = 0.1`, `η = 1.05`, `β = 0.9`; restart 0 starts at `x0`, restart `r ≥ 1`
//! at `clip(x0 + ρ/2·t/‖t‖)` with `t ~ U[−1, 1]^d` (L∞) or `N(0, I)` (L2, L1) and `ρ` the
//! random-start radius (ε when given, else AutoAttack's 0.3 for L∞, 1.0 for L2 and 5.0 for L1), drawn per
//! sample from `norm::sample_rng(seed, index, "fab…")`. Minimum-norm mode (`eps = None`) returns
//! the smallest adversarial point over all restarts (and targets), as the reference outputs do
//! (`FABAttack.perturb` itself stops restarting a point at its first success); the default
//! 5 restarts are AutoAttack's for minimum-norm use (its standard run uses 1). Bounded mode
//! (`eps = Some(ε)`) succeeds once a point within ε is found, stops that sample and skips its
//! later restarts and targets; a sample never brought within ε returns its smallest adversarial
//! point projected onto the ε-ball (or `x0`). FAB-T (`target_classes > 0`) runs the targeted
//! update for the classes ranked 2, 3, … by the clean logits and counts misclassification as
//! success, as AutoAttack; with `goal.targets` the given targets are used and success means the
//! target is predicted. `refine_steps > 0` (default 0, as the reference) bisects each result
//! along its own direction with [`crate::minnorm::shrink`].
//!
//! # L1
//! As AutoAttack's L1 FAB: the dual norm is `‖w‖_∞`, the hyperplane projection is the minimal-L1
//! move inside the box ([`project_hyperplane`]: greedy fill of the coordinates in decreasing
//! `|w_i|`, each up to its box edge, AutoAttack's `projection_l1`), the default random-start
//! radius is 5.0, and bounded mode's final projection is the exact one onto the L1 ball ∩ box
//! ([`crate::norm::project_l1`]). The L1 steps are sparse (one coordinate per step away from the
//! box), so L1 FAB may need more iterations than L∞/L2 on deep models.
//!
//! # Cost
//! Per iteration and sample still attacked: one forward pass with K − 1 backward passes
//! (untargeted, the Jacobian rows of the classes other than the label, run together as one
//! multi-output pass, `Forward::input_grads`; one backward pass when targeted), and one forward pass to
//! test the new iterate; one forward pass for the clean prediction (which also ranks FAB-T's
//! targets) and one to re-check the returned image.

use faultline_engine::Model;
use serde::{Deserialize, Serialize};

use crate::attack::{
    argmax, check_batch, check_run, described, finalize, gather, AttackOutput, BatchRef,
    BoundedAttack, Goal, MinNormAttack, Passes, Watch,
};
use crate::minnorm::shrink;
use crate::norm::{normal, project, sample_rng, uniform, Norm};
use crate::Result;

/// Parameters of FAB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FabParams {
    /// The norm minimised (default L∞).
    pub norm: Norm,
    /// Iterations per run (default 100).
    pub steps: usize,
    /// Runs per target; run 0 starts at the clean image, the others at random (default 5).
    pub restarts: usize,
    /// Largest weight of the step from the clean image, α_max (default 0.1).
    pub alpha_max: f32,
    /// Overshoot η of the projection steps (default 1.05).
    pub eta: f32,
    /// Backward step β towards the clean image after a success (default 0.9).
    pub beta: f32,
    /// Random-start radius ρ (starts lie at ρ/2); default ε in bounded mode, else 0.3 (L∞),
    /// 1.0 (L2) or 5.0 (L1) as AutoAttack.
    pub start_radius: Option<f32>,
    /// FAB-T: number of target classes ranked 2, 3, … by the clean logits (0 = untargeted, the
    /// default; AutoAttack's FAB-T uses 9).
    pub target_classes: usize,
    /// Bisection steps shrinking each result along its direction (default 0, as the reference).
    pub refine_steps: usize,
    /// Seed of the random starts.
    pub seed: u64,
}

impl Default for FabParams {
    fn default() -> Self {
        FabParams {
            norm: Norm::Linf,
            steps: 100,
            restarts: 5,
            alpha_max: 0.1,
            eta: 1.05,
            beta: 0.9,
            start_radius: None,
            target_classes: 0,
            refine_steps: 0,
            seed: 0,
        }
    }
}

impl FabParams {
    /// FAB-T as in AutoAttack's standard version: bounded, 9 targets, 1 restart.
    pub fn autoattack_t(norm: Norm) -> Self {
        FabParams {
            norm,
            restarts: 1,
            target_classes: 9,
            ..Default::default()
        }
    }
    /// The random-start radius ρ (bounded mode: at radius `eps`).
    pub fn radius(&self, eps: Option<f32>) -> f32 {
        self.start_radius.or(eps).unwrap_or(match self.norm {
            Norm::Linf => 0.3,
            Norm::L2 => 1.0,
            Norm::L1 => 5.0,
        })
    }
}

/// The smallest `δ` (in `norm`) with `⟨w, t + δ⟩ = ⟨w, t⟩ − c` and `t + δ ∈ [0, 1]^d`, i.e. the
/// move of `t` onto the hyperplane `{u : ⟨w, u − t⟩ + c = 0}` inside the box. When the box does
/// not reach the hyperplane, the move to the box corner that gets closest (as the reference).
/// Coordinates with `|w_i| ≤ 1e−8` (L2) or `w_i = 0` (L∞, L1) do not move. Computed in f64.
/// L1: a linear programme whose solution fills the coordinates in decreasing `|w_i|` (the most
/// logit change per unit of L1), each up to its room to the box edge, until `⟨w, δ⟩ = −c`.
pub fn project_hyperplane(norm: Norm, t: &[f32], w: &[f32], c: f64) -> Vec<f32> {
    let d = t.len();
    // Orient so that ⟨w, δ⟩ must equal −c ≤ 0: each coordinate moves against sign(w_i), by at
    // most its room to the box edge in that direction.
    let s = if c < 0.0 { -1.0 } else { 1.0 };
    let c = c * s;
    let eps_w = match norm {
        Norm::L2 => 1e-8,
        Norm::Linf | Norm::L1 => 0.0,
    };
    let ws: Vec<f64> = w
        .iter()
        .map(|&v| {
            let v = v as f64 * s;
            if v.abs() <= eps_w {
                0.0
            } else {
                v
            }
        })
        .collect();
    let room: Vec<f64> = (0..d)
        .map(|i| {
            if ws[i] > 0.0 {
                t[i] as f64
            } else {
                1.0 - t[i] as f64
            }
        })
        .collect();
    let live: Vec<usize> = (0..d).filter(|&i| ws[i] != 0.0).collect();
    let full: f64 = live.iter().map(|&i| ws[i].abs() * room[i]).sum();
    let mv = |i: usize, amount: f64| (-ws[i].signum() * amount) as f32;
    let mut out = vec![0.0f32; d];
    if c == 0.0 || live.is_empty() {
        return out;
    }
    if full <= c {
        for &i in &live {
            out[i] = mv(i, room[i]);
        }
        return out;
    }
    match norm {
        Norm::L1 => {
            // Greedy on |w_i| descending; ties keep the lower index (stable sort).
            let mut order = live.clone();
            order.sort_by(|&a, &b| ws[b].abs().total_cmp(&ws[a].abs()));
            let mut left = c;
            for &i in &order {
                let gain = ws[i].abs() * room[i];
                if gain >= left {
                    out[i] = mv(i, left / ws[i].abs());
                    break;
                }
                out[i] = mv(i, room[i]);
                left -= gain;
            }
        }
        Norm::Linf => {
            // δ_i = −sign(w_i)·min(λ, room_i); Σ|w_i|·min(λ, room_i) = c.
            let mut order = live.clone();
            order.sort_by(|&a, &b| room[a].total_cmp(&room[b]));
            let mut sat = 0.0; // Σ |w_i| room_i over saturated coordinates
            let mut slope: f64 = order.iter().map(|&i| ws[i].abs()).sum();
            let mut lambda = 0.0;
            for &i in &order {
                // With λ = room_i, the sum reaches sat + slope·room_i.
                if sat + slope * room[i] >= c {
                    lambda = (c - sat) / slope;
                    break;
                }
                sat += ws[i].abs() * room[i];
                slope -= ws[i].abs();
                lambda = room[i];
            }
            for &i in &live {
                out[i] = mv(i, lambda.min(room[i]));
            }
        }
        Norm::L2 => {
            // δ_i = −sign(w_i)·min(λ|w_i|, room_i); Σ min(λw_i², |w_i| room_i) = c.
            let bp: Vec<f64> = (0..d)
                .map(|i| {
                    if ws[i] != 0.0 {
                        room[i] / ws[i].abs()
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut order = live.clone();
            order.sort_by(|&a, &b| bp[a].total_cmp(&bp[b]));
            let mut sat = 0.0;
            let mut slope: f64 = order.iter().map(|&i| ws[i] * ws[i]).sum();
            let mut lambda = 0.0;
            for &i in &order {
                if sat + slope * bp[i] >= c {
                    lambda = (c - sat) / slope;
                    break;
                }
                sat += ws[i].abs() * room[i];
                slope -= ws[i] * ws[i];
                lambda = bp[i];
            }
            for &i in &live {
                out[i] = mv(i, (lambda * ws[i].abs()).min(room[i]));
            }
        }
    }
    out
}

/// One FAB run on the samples `todo` from the starts `x_init`; returns each sample's smallest
/// adversarial norm and point (`+∞` and `None` where none was found).
#[allow(clippy::too_many_arguments)]
fn single_run(
    model: &Model,
    x: &[f32],
    todo: &[usize],
    labels: &[usize],
    targets: Option<&[usize]>,
    success_targets: Option<&[usize]>,
    mut x1: Vec<f32>,
    p: &FabParams,
    eps: Option<f32>,
    passes: &mut Passes,
    run: (usize, usize),
) -> Result<Vec<(f32, Option<Vec<f32>>)>> {
    let per = x.len() / labels.len();
    let k = model.num_classes();
    let m = todo.len();
    let x0 = gather(x, todo, per);
    let ys: Vec<usize> = todo.iter().map(|&i| labels[i]).collect();
    let ts: Option<Vec<usize>> = targets.map(|t| todo.iter().map(|&i| t[i]).collect());
    let sts: Option<Vec<usize>> = success_targets.map(|t| todo.iter().map(|&i| t[i]).collect());
    let met = |j: usize, z: &[f32]| match &sts {
        Some(t) => argmax(z) == t[j],
        None => argmax(z) != ys[j],
    };
    let mut res: Vec<(f32, Option<Vec<f32>>)> = vec![(f32::INFINITY, None); m];
    let mut active: Vec<usize> = (0..m).collect();
    for step in 0..p.steps {
        if active.is_empty() {
            break;
        }
        let xb = gather(&x1, &active, per);
        let ids: Vec<usize> = active.iter().map(|&j| todo[j]).collect();
        let f = model.forward(&xb)?;
        let z = f.logits().to_vec();
        let na = active.len();
        // Per active sample: (f_s, w_s) of the chosen linearised boundary.
        let mut chosen: Vec<(f64, Vec<f32>)> = vec![(0.0, Vec::new()); na];
        match &ts {
            Some(t) => {
                let mut wt = vec![0.0f32; na * k];
                for (b, &j) in active.iter().enumerate() {
                    wt[b * k + t[j]] += 1.0;
                    wt[b * k + ys[j]] -= 1.0;
                }
                let g = f.input_grad(&wt)?;
                passes.add(&ids, 1, 1);
                for (b, &j) in active.iter().enumerate() {
                    let fs = z[b * k + t[j]] as f64 - z[b * k + ys[j]] as f64;
                    chosen[b] = (fs, g[b * per..(b + 1) * per].to_vec());
                }
            }
            None => {
                // The rows ∇(z_c − z_y) of every class c ≠ y, in one multi-output pass.
                let m = k.saturating_sub(1);
                let others = |y: usize| (0..k).filter(move |&c| c != y);
                let mut wm = vec![0.0f32; na * m * k];
                for (b, &j) in active.iter().enumerate() {
                    for (q, c) in others(ys[j]).enumerate() {
                        let at = (b * m + q) * k;
                        wm[at + c] = 1.0;
                        wm[at + ys[j]] = -1.0;
                    }
                }
                let g = if m > 0 {
                    f.input_grads(&wm, m)?
                } else {
                    Vec::new()
                };
                for (b, &j) in active.iter().enumerate() {
                    let mut best = f64::INFINITY;
                    for (q, c) in others(ys[j]).enumerate() {
                        let gr = &g[(b * m + q) * per..(b * m + q + 1) * per];
                        let fs = z[b * k + c] as f64 - z[b * k + ys[j]] as f64;
                        let dn = p.norm.dual_of(gr.iter().copied()) as f64;
                        let dist = fs.abs() / (1e-12 + dn);
                        if dist < best || chosen[b].1.is_empty() {
                            best = dist;
                            chosen[b] = (fs, gr.to_vec());
                        }
                    }
                }
                passes.add(&ids, 1, m as u32);
            }
        }
        for (b, &j) in active.iter().enumerate() {
            let r = j * per..(j + 1) * per;
            let (fs, w) = &chosen[b];
            let (xc, o) = (&x1[r.clone()], &x0[r.clone()]);
            // c = ⟨w, t⟩ − b with b = −f_s + ⟨w, x1⟩.
            let dot: f64 = w
                .iter()
                .zip(xc.iter().zip(o))
                .map(|(&wv, (&a, &b))| wv as f64 * (b as f64 - a as f64))
                .sum();
            let d1 = project_hyperplane(p.norm, xc, w, *fs);
            let d2 = project_hyperplane(p.norm, o, w, *fs + dot);
            let a1 = (p.norm.of(d1.iter().copied()) as f64).max(1e-8);
            let a2 = (p.norm.of(d2.iter().copied()) as f64).max(1e-8);
            let alpha = (a1 / (a1 + a2)).clamp(0.0, p.alpha_max as f64) as f32;
            let nx: Vec<f32> = (0..per)
                .map(|q| {
                    ((xc[q] + p.eta * d1[q]) * (1.0 - alpha) + (o[q] + d2[q] * p.eta) * alpha)
                        .clamp(0.0, 1.0)
                })
                .collect();
            x1[r].copy_from_slice(&nx);
        }
        let xb = gather(&x1, &active, per);
        let z = model.logits(&xb)?;
        passes.add(&ids, 1, 0);
        let mut still = Vec::with_capacity(na);
        for (b, &j) in active.iter().enumerate() {
            let r = j * per..(j + 1) * per;
            if met(j, &z[b * k..(b + 1) * k]) {
                let dist = p.norm.dist(&x1[r.clone()], &x0[r.clone()]);
                if dist < res[j].0 {
                    res[j] = (dist, Some(x1[r.clone()].to_vec()));
                }
                for q in r {
                    x1[q] = x0[q] + (x1[q] - x0[q]) * p.beta;
                }
                if eps.is_some_and(|e| res[j].0 <= e) {
                    passes.settle(todo[j]);
                    continue;
                }
            }
            still.push(j);
        }
        active = still;
        passes.at(run, (step + 1, p.steps));
    }
    Ok(res)
}

/// FAB's random start: `clip(x0 + ρ/2·t/‖t‖)`.
fn fab_start(norm: Norm, x0: &[f32], radius: f32, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<f32> {
    let t: Vec<f32> = match norm {
        Norm::Linf => x0.iter().map(|_| 2.0 * uniform(rng) - 1.0).collect(),
        Norm::L2 | Norm::L1 => x0.iter().map(|_| normal(rng)).collect(),
    };
    let n = norm.of(t.iter().copied()).max(1e-12);
    x0.iter()
        .zip(&t)
        .map(|(&v, &d)| (v + 0.5 * radius * d / n).clamp(0.0, 1.0))
        .collect()
}

described!(FabParams);

/// Bounded mode (FAB-T in AutoAttack): a sample succeeds once a point within `eps` is found.
impl BoundedAttack for FabParams {
    fn run_watched(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        eps: f32,
        watch: Watch,
    ) -> Result<AttackOutput> {
        fab(
            model,
            batch.images,
            goal,
            batch.indices,
            self,
            Some(eps),
            watch,
        )
    }
}

/// Minimum-norm mode: the smallest perturbation found over all runs.
impl MinNormAttack for FabParams {
    fn run_watched(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        watch: Watch,
    ) -> Result<AttackOutput> {
        fab(model, batch.images, goal, batch.indices, self, None, watch)
    }
}

/// FAB on images `x`; `indices` seed the random starts; `eps` None is minimum-norm mode.
fn fab(
    model: &Model,
    x: &[f32],
    goal: Goal,
    indices: &[usize],
    p: &FabParams,
    eps: Option<f32>,
    watch: Watch,
) -> Result<AttackOutput> {
    let per = check_batch(model, x, &goal)?;
    let n = goal.labels.len();
    let k = model.num_classes();
    check_run("FAB-T", model, &goal, indices, p.target_classes)?;
    let mut passes = Passes::watched(n, watch);
    let z0 = model.logits(x)?;
    passes.add(&(0..n).collect::<Vec<_>>(), 1, 0);
    // Points that meet the goal at x0 are not attacked (FAB attacks correct points only).
    let clean_met: Vec<bool> = (0..n)
        .map(|i| goal.reached(i, &z0[i * k..(i + 1) * k]))
        .collect();
    let mut best: Vec<(f32, Option<Vec<f32>>)> = vec![(f32::INFINITY, None); n];
    let within = |d: f32| eps.is_some_and(|e| d <= e);
    let runs: Vec<Option<usize>> = if p.target_classes == 0 {
        vec![None]
    } else {
        (2..p.target_classes + 2).map(Some).collect()
    };
    let restarts = p.restarts.max(1);
    let schedule = runs.len() * restarts;
    for (r, rank) in runs.into_iter().enumerate() {
        for restart in 0..restarts {
            let run_at = (r * restarts + restart, schedule);
            let todo: Vec<usize> = (0..n)
                .filter(|&i| !clean_met[i] && !within(best[i].0))
                .collect();
            if todo.is_empty() {
                break;
            }
            let ranked: Option<Vec<usize>> = rank.map(|r| {
                (0..n)
                    .map(|i| {
                        let row = &z0[i * k..(i + 1) * k];
                        let mut order: Vec<usize> = (0..k).collect();
                        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                        order[r - 1]
                    })
                    .collect()
            });
            let targets = ranked.as_deref().or(goal.targets);
            let tag = match rank {
                Some(r) => format!("fab-t:{r}:{restart}"),
                None => format!("fab:{restart}"),
            };
            let mut init = Vec::with_capacity(todo.len() * per);
            for &i in &todo {
                let x0 = &x[i * per..(i + 1) * per];
                if restart == 0 {
                    init.extend_from_slice(x0);
                } else {
                    let mut rng = sample_rng(p.seed, indices[i], &tag);
                    init.extend(fab_start(p.norm, x0, p.radius(eps), &mut rng));
                }
            }
            let res = single_run(
                model,
                x,
                &todo,
                goal.labels,
                targets,
                goal.targets,
                init,
                p,
                eps,
                &mut passes,
                run_at,
            )?;
            for (j, &i) in todo.iter().enumerate() {
                if res[j].0 < best[i].0 {
                    best[i] = res[j].clone();
                }
            }
            passes.at((run_at.0 + 1, schedule), (0, 1));
        }
    }
    let mut adv = x.to_vec();
    for (i, (_, pt)) in best.iter().enumerate() {
        if let Some(a) = pt {
            let r = i * per..(i + 1) * per;
            adv[r.clone()].copy_from_slice(a);
            if let Some(e) = eps {
                project(p.norm, &mut adv[r.clone()], &x[r], e);
            }
        }
    }
    if p.refine_steps > 0 {
        shrink(model, x, &mut adv, goal, p.refine_steps, &mut passes)?;
    }
    finalize(model, x, adv, goal, passes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::norm::sample_rng;

    /// Brute force: the smallest λ found by bisection on the monotone coordinate rule, then a
    /// check that random feasible moves onto the hyperplane are never shorter.
    /// Returns whether the case was feasible (and so compared with competitors).
    fn check(norm: Norm, t: &[f32], w: &[f32], c: f64, rng: &mut rand_chacha::ChaCha8Rng) -> bool {
        let d = project_hyperplane(norm, t, w, c);
        let lhs: f64 = w.iter().zip(&d).map(|(&a, &b)| a as f64 * b as f64).sum();
        for (ti, di) in t.iter().zip(&d) {
            assert!((-1e-6..=1.0 + 1e-6).contains(&(ti + di)), "left the box");
        }
        // Feasible (the box reaches the hyperplane) ⇒ on it.
        let reach: f64 = w
            .iter()
            .zip(t)
            .map(|(&wv, &tv)| {
                let wv = wv as f64 * c.signum();
                if wv > 0.0 {
                    wv * tv as f64
                } else {
                    -wv * (1.0 - tv as f64)
                }
            })
            .sum();
        if reach > c.abs() * 1.001 {
            assert!(
                (lhs + c).abs() <= 1e-4 * (1.0 + c.abs()),
                "{norm:?}: ⟨w,δ⟩ = {lhs}, want {}",
                -c
            );
            let nd = norm.of(d.iter().copied());
            // Random feasible competitors: a random box point on the far side, moved onto the
            // hyperplane along the segment from t (convexity keeps it in the box).
            for _ in 0..200 {
                let u: Vec<f32> = t
                    .iter()
                    .map(|&tv| {
                        let r = uniform(rng);
                        tv + (r - tv) * uniform(rng).powi(3)
                    })
                    .collect();
                let wu: f64 = w
                    .iter()
                    .zip(u.iter().zip(t))
                    .map(|(&a, (&b, &c0))| a as f64 * (b - c0) as f64)
                    .sum();
                if wu * c.signum() >= -c.abs() || wu.abs() < 1e-12 {
                    continue; // does not cross the hyperplane
                }
                let s = (-c / wu) as f32;
                let cand = norm.of(u.iter().zip(t).map(|(&a, &b)| s * (a - b)));
                assert!(
                    nd <= cand * (1.0 + 1e-4),
                    "{norm:?}: {nd} > competitor {cand}"
                );
            }
            return true;
        }
        false
    }

    #[test]
    fn hyperplane_projection_is_minimal_and_stays_in_the_box() {
        let mut rng = sample_rng(0, 0, "proj");
        let mut feasible = 0;
        for case in 0..300 {
            let d = 2 + case % 9;
            let t: Vec<f32> = (0..d)
                .map(|i| {
                    if i % 4 == 3 {
                        (i % 2) as f32
                    } else {
                        uniform(&mut rng)
                    }
                })
                .collect();
            let w: Vec<f32> = (0..d)
                .map(|i| if i % 5 == 4 { 0.0 } else { normal(&mut rng) })
                .collect();
            let c = (normal(&mut rng) as f64) * (0.05 + (case % 7) as f64 * 0.3);
            for norm in [Norm::L2, Norm::Linf, Norm::L1] {
                feasible += check(norm, &t, &w, c, &mut rng) as usize;
            }
        }
        // Most cases reach the hyperplane inside the box; the rest go to the box corner.
        assert!(feasible >= 450, "only {feasible} feasible cases");
    }

    #[test]
    fn hyperplane_projection_has_the_closed_form_inside_the_box() {
        // Far from the box edges: L2 moves along w by c/‖w‖², L∞ along −sign(w) by c/‖w‖₁.
        let t = [0.5f32, 0.5, 0.5];
        let w = [1.0f32, -2.0, 0.5];
        let c = 0.1;
        let d2 = project_hyperplane(Norm::L2, &t, &w, c);
        let n2 = 1.0 + 4.0 + 0.25;
        for (a, b) in d2.iter().zip(&w) {
            assert!((*a as f64 + c * *b as f64 / n2).abs() < 1e-7);
        }
        let di = project_hyperplane(Norm::Linf, &t, &w, c);
        for (a, b) in di.iter().zip(&w) {
            assert!((*a as f64 + c / 3.5 * b.signum() as f64).abs() < 1e-7);
        }
        // Box reached before the hyperplane: the whole room is used.
        let full = project_hyperplane(Norm::L2, &[0.1, 0.9], &[1.0, -1.0], 5.0);
        assert!((full[0] + 0.1).abs() < 1e-7 && (full[1] - 0.1).abs() < 1e-7);
    }
}
