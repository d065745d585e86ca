//! Auto-PGD (APGD-CE, APGD-DLR) and its targeted variant APGD-T, in L∞ and L2.
//!
//! # Paper
//! Croce & Hein, *Reliable evaluation of adversarial robustness with an ensemble of diverse
//! parameter-free attacks*, ICML 2020 (arXiv 2003.01690).
//!
//! # Update
//! With `η` the step size and `d(g)` = `sign(g)` (L∞) or `g/‖g‖₂` (L2):
//! `z ← Π(x + η·d(∇L(x)))`, `x ← Π(x + α·(z − x) + (1 − α)·(x − x_prev))` with momentum
//! `α = 0.75` (`α = 1` at the first step) and `Π` the projection onto `B(x0, ε) ∩ [0, 1]^d`.
//! The step size starts at `2ε` and is halved at checkpoint `w_j = ⌈p_j·N_iter⌉`
//! (`p0 = 0`, `p1 = 0.22`, `p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)`) when
//! (1) the loss rose in at most `ρ·(w_j − w_{j−1})` of the steps since the last checkpoint
//! (`ρ = 0.75`), or (2) the step was not halved at the last checkpoint and the best loss has not
//! improved since; a halving restarts from the best point so far. The losses are cross-entropy
//! and DLR (untargeted); APGD-T ascends the targeted DLR
//! `−(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2)` for the `target_classes` classes ranked 2, 3, … by the
//! clean logits, each target a separate run on the points still robust.
//!
//! # Defaults
//! AutoAttack (`autopgd_base.py`: `APGDAttack`, `APGDAttack_targeted`) as its standard version
//! runs them: 100 iterations, 1 restart, `ρ = 0.75`, 9 target classes for APGD-T, a random start
//! `x0 + ε·t/‖t‖` (L∞: `t ~ U[−1, 1]^d`, divided by its max; L2: `t ~ N(0, I)`) clipped to
//! [0, 1], drawn per sample from `norm::sample_rng(seed, index, "apgd…")` rather than from
//! torch's stream. Success is misclassification (also for APGD-T); with `goal.targets` given
//! the run is targeted at those classes instead (success = the target predicted). Difference:
//! a sample leaves the batch once its goal is met (AutoAttack keeps stepping it but never undoes
//! the success), so results are the same and cost is lower. A sample never broken returns its
//! highest-loss point of the first run.
//!
//! # Cost
//! Per run and sample still attacked: one forward and one backward pass per iteration plus one
//! for the start; one forward pass for the clean prediction (which also ranks APGD-T's targets)
//! and one to re-check the returned image.

use faultline_engine::Model;
use serde::{Deserialize, Serialize};

use crate::attack::{
    argmax, check_batch, check_run, described, finalize, gather, AttackOutput, BatchRef,
    BoundedAttack, Goal, Passes, Watch,
};
use crate::loss::{loss_value, objective_grad, AttackLoss};
use crate::norm::{ascend, normal, project, sample_rng, uniform, Norm};
use crate::{Error, Result};

/// Parameters of APGD / APGD-T.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApgdParams {
    /// Threat model (default L∞).
    pub norm: Norm,
    /// Iterations per run (default 100, AutoAttack).
    pub steps: usize,
    /// Runs per target (each from a fresh random start) on the points still robust (default 1).
    pub restarts: usize,
    /// Loss of the untargeted attack: `ce` or `dlr` (default `ce`); APGD-T always uses the
    /// targeted DLR loss.
    pub loss: AttackLoss,
    /// APGD-T: number of target classes, ranked 2, 3, … by the clean logits (0 = untargeted
    /// APGD, the default; AutoAttack's APGD-T uses 9).
    pub target_classes: usize,
    /// Fraction ρ of loss increases below which the step is halved (default 0.75).
    pub rho: f32,
    /// Momentum α (default 0.75).
    pub momentum: f32,
    /// Seed of the random starts.
    pub seed: u64,
}

impl Default for ApgdParams {
    fn default() -> Self {
        ApgdParams {
            norm: Norm::Linf,
            steps: 100,
            restarts: 1,
            loss: AttackLoss::Ce,
            target_classes: 0,
            rho: 0.75,
            momentum: 0.75,
            seed: 0,
        }
    }
}

impl ApgdParams {
    /// APGD-CE as in AutoAttack's standard version.
    pub fn autoattack_ce(norm: Norm) -> Self {
        ApgdParams {
            norm,
            ..Default::default()
        }
    }
    /// APGD-T (targeted DLR, 9 targets) as in AutoAttack's standard version.
    pub fn autoattack_t(norm: Norm) -> Self {
        ApgdParams {
            norm,
            loss: AttackLoss::Dlr,
            target_classes: 9,
            ..Default::default()
        }
    }
}

/// The checkpoints of the step-size schedule as (first length, decrement, minimum length):
/// AutoAttack's `n_iter_2`, `size_decr`, `n_iter_min`.
fn schedule(steps: usize) -> (usize, usize, usize) {
    let f = |p: f64| ((p * steps as f64) as usize).max(1);
    (f(0.22), f(0.03), f(0.06))
}

/// The first checkpoint of the step-size schedule (iterations), where A3's discarding looks.
pub(crate) fn first_checkpoint(steps: usize) -> usize {
    schedule(steps).0
}

/// The random direction of APGD's start: `U[−1, 1]^d` (L∞) or `N(0, I)` (L2).
pub(crate) fn start_direction(norm: Norm, d: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<f32> {
    match norm {
        Norm::Linf => (0..d).map(|_| 2.0 * uniform(rng) - 1.0).collect(),
        Norm::L2 | Norm::L1 => (0..d).map(|_| normal(rng)).collect(),
    }
}

/// AutoAttack's APGD random start: `x0 + ε·t/‖t‖` clipped to [0, 1].
pub(crate) fn apgd_start(
    norm: Norm,
    x0: &[f32],
    eps: f32,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Vec<f32> {
    let t = start_direction(norm, x0.len(), rng);
    let n = norm.of(t.iter().copied()) + 1e-12;
    x0.iter()
        .zip(&t)
        .map(|(&v, &d)| (v + eps * d / n).clamp(0.0, 1.0))
        .collect()
}

/// What one run returns for each of its samples.
pub(crate) struct Run {
    /// Highest-loss point.
    pub best: Vec<f32>,
    /// First point that met the goal, if any.
    pub adv: Vec<Option<Vec<f32>>>,
    /// The class predicted at that point.
    pub adv_class: Vec<Option<usize>>,
    /// With a [`Checkpoint`]: the best untargeted DLR value up to it, for samples still
    /// attacked there.
    pub at_check: Vec<Option<f32>>,
}

/// Online discarding inside a run (A3's OSD, [`crate::a3`]): after `at` iterations the best
/// untargeted DLR value of each sample still attacked is recorded, and samples below `below`
/// stop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checkpoint {
    /// Iterations before the check.
    pub at: usize,
    /// Discard threshold (None: record only).
    pub below: Option<f32>,
    /// Fraction of the samples still attacked at the check that continue, those with the
    /// highest values (1: no ranking).
    pub keep: f32,
}

impl Checkpoint {
    /// The samples of `active` that continue, given their values `stat`.
    pub fn survivors(&self, active: &[usize], stat: &[f32]) -> Vec<usize> {
        let mut v: Vec<f32> = active.iter().map(|&j| stat[j]).collect();
        v.sort_by(|a, b| b.total_cmp(a));
        let n =
            ((self.keep.clamp(0.0, 1.0) * v.len() as f32).ceil() as usize).clamp(1, v.len().max(1));
        let rank = v.get(n - 1).copied().unwrap_or(f32::NEG_INFINITY);
        let t = self.below.map_or(rank, |b| b.max(rank));
        active.iter().copied().filter(|&j| stat[j] >= t).collect()
    }
}

/// One APGD run on the samples `todo` (batch positions) from the starts `x_init`.
#[allow(clippy::too_many_arguments)]
fn single_run(
    model: &Model,
    x: &[f32],
    todo: &[usize],
    labels: &[usize],
    targets: Option<&[usize]>,
    success_targets: Option<&[usize]>,
    x_init: Vec<f32>,
    p: &ApgdParams,
    eps: f32,
    loss: AttackLoss,
    check: Option<Checkpoint>,
    passes: &mut Passes,
    run: (usize, usize),
) -> Result<Run> {
    let per = x.len() / labels.len();
    let k = model.num_classes();
    let m = todo.len();
    let x0: Vec<f32> = gather(x, todo, per);
    let ys: Vec<usize> = todo.iter().map(|&i| labels[i]).collect();
    let ts: Option<Vec<usize>> = targets.map(|t| todo.iter().map(|&i| t[i]).collect());
    let sts: Option<Vec<usize>> = success_targets.map(|t| todo.iter().map(|&i| t[i]).collect());
    let met = |j: usize, z: &[f32]| match &sts {
        Some(t) => argmax(z) == t[j],
        None => argmax(z) != ys[j],
    };
    let mut xa = x_init;
    let mut adv: Vec<Option<Vec<f32>>> = vec![None; m];
    let mut adv_class: Vec<Option<usize>> = vec![None; m];
    // Loss and gradient at the points of `act` (positions in 0..m).
    let eval = |xa: &[f32], act: &[usize], passes: &mut Passes| -> Result<(Vec<f32>, Vec<f32>)> {
        let xb = gather(xa, act, per);
        let yb: Vec<usize> = act.iter().map(|&j| ys[j]).collect();
        let tb: Option<Vec<usize>> = ts.as_ref().map(|t| act.iter().map(|&j| t[j]).collect());
        let (z, g) = objective_grad(
            model,
            &xb,
            loss,
            Goal {
                labels: &yb,
                targets: tb.as_deref(),
            },
        )?;
        passes.add(&act.iter().map(|&j| todo[j]).collect::<Vec<_>>(), 1, 1);
        Ok((z, g))
    };
    // The statistic of A3's discarding rule: untargeted DLR, scale-free across samples, losses
    // and stages.
    let stat = |j: usize, z: &[f32]| loss_value(z, ys[j], None, AttackLoss::Dlr);
    let mut stat_best = vec![f32::NEG_INFINITY; m];
    let mut at_check = vec![None; m];
    let all: Vec<usize> = (0..m).collect();
    let (z, g0) = eval(&xa, &all, passes)?;
    let mut grad = vec![0.0f32; m * per];
    let mut loss_best = vec![f32::NEG_INFINITY; m];
    let mut active = Vec::with_capacity(m);
    for j in 0..m {
        let zr = &z[j * k..(j + 1) * k];
        grad[j * per..(j + 1) * per].copy_from_slice(&g0[j * per..(j + 1) * per]);
        loss_best[j] = loss_value(zr, ys[j], ts.as_ref().map(|t| t[j]), loss);
        stat_best[j] = stat(j, zr);
        if met(j, zr) {
            adv[j] = Some(xa[j * per..(j + 1) * per].to_vec());
            adv_class[j] = Some(argmax(zr));
            passes.settle(todo[j]);
        } else {
            active.push(j);
        }
    }
    let mut best = xa.clone();
    let mut grad_best = grad.clone();
    let mut step = vec![2.0 * eps; m];
    let mut x_old = xa.clone();
    let (first, decr, min_len) = schedule(p.steps);
    let mut len = first;
    let mut since = 0;
    let mut loss_steps = vec![vec![0.0f32; p.steps]; m];
    let mut loss_best_last = loss_best.clone();
    let mut reduced_last = vec![true; m];
    for it in 0..p.steps {
        if active.is_empty() {
            break;
        }
        let a = if it > 0 { p.momentum } else { 1.0 };
        for &j in &active {
            let r = j * per..(j + 1) * per;
            let o = &x0[r.clone()];
            let cur = xa[r.clone()].to_vec();
            let mut z1 = cur.clone();
            ascend(p.norm, &mut z1, &grad[r.clone()], step[j]);
            project(p.norm, &mut z1, o, eps);
            let xo = &x_old[r.clone()];
            let mut nx: Vec<f32> = (0..per)
                .map(|q| cur[q] + (z1[q] - cur[q]) * a + (cur[q] - xo[q]) * (1.0 - a))
                .collect();
            project(p.norm, &mut nx, o, eps);
            x_old[r.clone()].copy_from_slice(&cur);
            xa[r].copy_from_slice(&nx);
        }
        let (z, g) = eval(&xa, &active, passes)?;
        let mut still = Vec::with_capacity(active.len());
        for (b, &j) in active.iter().enumerate() {
            let zr = &z[b * k..(b + 1) * k];
            let r = j * per..(j + 1) * per;
            grad[r.clone()].copy_from_slice(&g[b * per..(b + 1) * per]);
            let l = loss_value(zr, ys[j], ts.as_ref().map(|t| t[j]), loss);
            loss_steps[j][it] = l;
            stat_best[j] = stat_best[j].max(stat(j, zr));
            if l > loss_best[j] {
                best[r.clone()].copy_from_slice(&xa[r.clone()]);
                grad_best[r.clone()].copy_from_slice(&grad[r.clone()]);
                loss_best[j] = l;
            }
            if met(j, zr) {
                adv[j] = Some(xa[r].to_vec());
                adv_class[j] = Some(argmax(zr));
                passes.settle(todo[j]);
            } else {
                still.push(j);
            }
        }
        active = still;
        if let Some(c) = check.filter(|c| c.at == it + 1) {
            for &j in &active {
                at_check[j] = Some(stat_best[j]);
            }
            active = c.survivors(&active, &stat_best);
        }
        since += 1;
        if since == len {
            for &j in &active {
                // Steps since the last checkpoint on which the loss rose (index −1 reads as 0,
                // as AutoAttack's wrap-around into the still-empty last row does).
                let ls = &loss_steps[j];
                let rose = (0..len)
                    .filter(|&c| {
                        let prev = if it > c { ls[it - c - 1] } else { 0.0 };
                        ls[it - c] > prev
                    })
                    .count();
                let osc = rose as f32 <= len as f32 * p.rho;
                let no_impr = !reduced_last[j] && loss_best_last[j] >= loss_best[j];
                let halve = osc || no_impr;
                reduced_last[j] = halve;
                loss_best_last[j] = loss_best[j];
                if halve {
                    step[j] /= 2.0;
                    let r = j * per..(j + 1) * per;
                    xa[r.clone()].copy_from_slice(&best[r.clone()]);
                    grad[r.clone()].copy_from_slice(&grad_best[r]);
                }
            }
            len = len.saturating_sub(decr).max(min_len);
            since = 0;
        }
        passes.at(run, (it + 1, p.steps));
    }
    Ok(Run {
        best,
        adv,
        adv_class,
        at_check,
    })
}

described!(ApgdParams);

impl BoundedAttack for ApgdParams {
    fn run_watched(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        eps: f32,
        watch: Watch,
    ) -> Result<AttackOutput> {
        apgd(
            model,
            batch.images,
            goal,
            batch.indices,
            self,
            eps,
            None,
            watch,
        )
    }
}

/// What an adaptive variant (A3, [`crate::a3`]) changes in APGD's runs: where each run starts,
/// when samples are discarded, and what is learned from each run.
pub(crate) trait Adapt {
    /// The start of a run on image `x0` (label `label`, run toward `target` when targeted).
    fn start(
        &mut self,
        x0: &[f32],
        label: usize,
        target: Option<usize>,
        eps: f32,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Vec<f32>;
    /// The checkpoint of a run of `steps` iterations.
    fn checkpoint(&self, steps: usize) -> Option<Checkpoint>;
    /// Learns from a finished run: for each sample, its clean image, label, the point that met
    /// the goal and the class predicted there (if any), and its statistic at the checkpoint.
    fn learn(
        &mut self,
        x0: &[f32],
        label: usize,
        adv: Option<(&[f32], usize)>,
        at_check: Option<f32>,
    );
}

/// APGD (or APGD-T with `target_classes > 0`) on images `x`; `indices` seed the random starts;
/// `adapt` replaces the random starts and adds discarding (A3).
#[allow(clippy::too_many_arguments)]
pub(crate) fn apgd(
    model: &Model,
    x: &[f32],
    goal: Goal,
    indices: &[usize],
    p: &ApgdParams,
    eps: f32,
    mut adapt: Option<&mut dyn Adapt>,
    watch: Watch,
) -> Result<AttackOutput> {
    let per = check_batch(model, x, &goal)?;
    let n = goal.labels.len();
    let k = model.num_classes();
    check_run("APGD-T", model, &goal, indices, p.target_classes)?;
    if p.norm == Norm::L1 {
        return Err(Error::Invalid(
            "APGD does not support L1 (APGD-L1 needs its own adaptive sparsity): use PGD or FAB"
                .into(),
        ));
    }
    let mut passes = Passes::watched(n, watch);
    let z0 = model.logits(x)?;
    passes.add(&(0..n).collect::<Vec<_>>(), 1, 0);
    let mut done: Vec<bool> = (0..n)
        .map(|i| goal.reached(i, &z0[i * k..(i + 1) * k]))
        .collect();
    let mut out = x.to_vec();
    let mut first_run = true;
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
            let todo: Vec<usize> = (0..n).filter(|&i| !done[i]).collect();
            if todo.is_empty() {
                break;
            }
            // APGD-T: the target is the class ranked `rank` by the clean logits.
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
            let (targets, loss) = match (&ranked, goal.targets) {
                (Some(t), _) => (Some(t.as_slice()), AttackLoss::Dlr),
                (None, t) => (t, p.loss),
            };
            let tag = match rank {
                Some(r) => format!("apgd-t:{r}:{restart}"),
                None => format!("apgd:{restart}"),
            };
            let mut init = Vec::with_capacity(todo.len() * per);
            let run_target = |i: usize| targets.map(|t| t[i]);
            for &i in &todo {
                let mut rng = sample_rng(p.seed, indices[i], &tag);
                let x0 = &x[i * per..(i + 1) * per];
                init.extend(match adapt.as_deref_mut() {
                    Some(a) => a.start(x0, goal.labels[i], run_target(i), eps, &mut rng),
                    None => apgd_start(p.norm, x0, eps, &mut rng),
                });
            }
            let run = single_run(
                model,
                x,
                &todo,
                goal.labels,
                targets,
                goal.targets,
                init,
                p,
                eps,
                loss,
                adapt.as_deref().and_then(|a| a.checkpoint(p.steps)),
                &mut passes,
                run_at,
            )?;
            if let Some(a) = adapt.as_deref_mut() {
                for (j, &i) in todo.iter().enumerate() {
                    let found = run.adv[j].as_deref().zip(run.adv_class[j]);
                    a.learn(
                        &x[i * per..(i + 1) * per],
                        goal.labels[i],
                        found,
                        run.at_check[j],
                    );
                }
            }
            for (j, &i) in todo.iter().enumerate() {
                if let Some(a) = &run.adv[j] {
                    out[i * per..(i + 1) * per].copy_from_slice(a);
                    done[i] = true;
                } else if first_run {
                    out[i * per..(i + 1) * per].copy_from_slice(&run.best[j * per..(j + 1) * per]);
                }
            }
            first_run = false;
            passes.at((run_at.0 + 1, schedule), (0, 1));
        }
    }
    finalize(model, x, out, goal, passes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_follow_the_paper_schedule() {
        // p0 = 0, p1 = 0.22, then lengths shrink by 0.03 down to 0.06 (of 100 iterations).
        let (first, decr, min_len) = schedule(100);
        let mut at = vec![];
        let (mut len, mut pos) = (first, 0);
        while pos + len <= 100 {
            pos += len;
            at.push(pos);
            len = len.saturating_sub(decr).max(min_len);
        }
        assert_eq!(at, vec![22, 41, 57, 70, 80, 87, 93, 99]);
    }
}
