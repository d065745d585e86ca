//! Projected gradient descent (BIM/PGD) in L∞, L2 and L1, with FGSM and MI-FGSM as special cases.
//!
//! # Paper
//! Madry et al., *Towards Deep Learning Models Resistant to Adversarial Attacks*, ICLR 2018
//! (arXiv 1706.06083); Kurakin et al. (BIM, arXiv 1607.02533); Goodfellow et al. (FGSM, arXiv
//! 1412.6572); Dong et al. (MI-FGSM, CVPR 2018, arXiv 1710.06081).
//!
//! # Update
//! `x ← Π_{B(x0,ε)∩[0,1]}(x + α·d(g))`, with `d(g) = sign(g)` (L∞), `g/‖g‖₂` (L2) or, for L1,
//! the sparse step of Tramèr & Boneh's SLIDE (the sign of the top 1 % of `|g|`, scaled to L1
//! norm 1, made box-aware; see [`crate::norm::ascend`]) and `g` the input gradient of the loss
//! (MI-FGSM: `g ← μ·g + ∇/‖∇‖₁`). FGSM is one step with `α = ε`. The L1 projection is the exact
//! one onto the ball ∩ box ([`crate::norm::project_l1`]); L1 random starts are uniform in the
//! L1 ball (Laplace direction), clipped to the box.
//!
//! # Defaults
//! torchattacks' `PGD`/`PGDL2` as used for the reference outputs: 20 steps, `α = ε/4`, no random
//! start, cross-entropy (the same for L1, which torchattacks lacks). Difference: with
//! `early_stop` (the default for robust accuracy) a sample stops at the first iterate that
//! meets the goal and leaves the batch; torchattacks keeps stepping and may step back out of the
//! adversarial region.
//!
//! # Cost
//! One forward and one backward pass per step and sample still attacked, plus one forward pass
//! to re-check the returned image.

use faultline_engine::Model;
use serde::{Deserialize, Serialize};

use crate::attack::{
    check_batch, check_run, described, finalize, gather, AttackOutput, BatchRef, BoundedAttack,
    Goal, Passes, Watch,
};
use crate::loss::{objective_grad, AttackLoss};
use crate::norm::{ascend, project, random_start, sample_rng, Norm};
use crate::Result;

/// Parameters of PGD (and FGSM, MI-FGSM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgdParams {
    /// Threat model (default L∞).
    pub norm: Norm,
    /// Iterations (default 20).
    pub steps: usize,
    /// Step size α as a fraction of ε (default 0.25, i.e. α = ε/4).
    pub rel_step: f32,
    /// Absolute step size; overrides `rel_step` when set.
    pub step_size: Option<f32>,
    /// Start at a uniformly random point of the ball (default false).
    pub random_start: bool,
    /// Runs; every run after the first starts at random (default 1).
    pub restarts: usize,
    /// The loss ascended (default cross-entropy).
    pub loss: AttackLoss,
    /// MI-FGSM decay μ; 0 is plain PGD (default 0).
    pub momentum: f32,
    /// Stop a sample as soon as its goal is met (default true).
    pub early_stop: bool,
    /// Seed of the random starts.
    pub seed: u64,
}

impl Default for PgdParams {
    fn default() -> Self {
        PgdParams {
            norm: Norm::Linf,
            steps: 20,
            rel_step: 0.25,
            step_size: None,
            random_start: false,
            restarts: 1,
            loss: AttackLoss::Ce,
            momentum: 0.0,
            early_stop: true,
            seed: 0,
        }
    }
}

impl PgdParams {
    /// FGSM: one step of size ε from the clean image.
    pub fn fgsm(norm: Norm) -> Self {
        PgdParams {
            norm,
            steps: 1,
            rel_step: 1.0,
            early_stop: false,
            ..Default::default()
        }
    }
    /// MI-FGSM with Dong et al.'s defaults: 10 steps of ε/10, μ = 1.
    pub fn mifgsm(norm: Norm) -> Self {
        PgdParams {
            norm,
            steps: 10,
            rel_step: 0.1,
            momentum: 1.0,
            ..Default::default()
        }
    }
    /// The absolute step size α at radius `eps`.
    pub fn alpha(&self, eps: f32) -> f32 {
        self.step_size.unwrap_or(self.rel_step * eps)
    }
}

described!(PgdParams);

impl BoundedAttack for PgdParams {
    fn run_watched(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        eps: f32,
        watch: Watch,
    ) -> Result<AttackOutput> {
        pgd(model, batch.images, goal, batch.indices, self, eps, watch)
    }
}

fn pgd(
    model: &Model,
    x: &[f32],
    goal: Goal,
    indices: &[usize],
    p: &PgdParams,
    eps: f32,
    watch: Watch,
) -> Result<AttackOutput> {
    let per = check_batch(model, x, &goal)?;
    check_run("PGD", model, &goal, indices, 0)?;
    let n = goal.labels.len();
    let mut passes = Passes::watched(n, watch);
    let mut best = x.to_vec();
    let mut done = vec![false; n];
    let runs = p.restarts.max(1);
    for restart in 0..runs {
        let todo: Vec<usize> = (0..n).filter(|&i| !done[i]).collect();
        if todo.is_empty() {
            break;
        }
        let mut adv: Vec<f32> = Vec::with_capacity(todo.len() * per);
        for &i in &todo {
            let x0 = &x[i * per..(i + 1) * per];
            if p.random_start || restart > 0 {
                let mut rng = sample_rng(p.seed, indices[i], &format!("pgd:{restart}"));
                adv.extend(random_start(p.norm, x0, eps, &mut rng));
            } else {
                adv.extend_from_slice(x0);
            }
        }
        // `active[j]` is the batch position of the j-th sample still stepping.
        let mut active: Vec<usize> = (0..todo.len()).collect();
        let mut momentum = vec![0.0f32; todo.len() * per];
        for step in 0..p.steps {
            if active.is_empty() {
                break;
            }
            let xa = gather(&adv, &active, per);
            let labels: Vec<usize> = active.iter().map(|&j| goal.labels[todo[j]]).collect();
            let targets: Option<Vec<usize>> = goal
                .targets
                .map(|t| active.iter().map(|&j| t[todo[j]]).collect());
            let sub = Goal {
                labels: &labels,
                targets: targets.as_deref(),
            };
            let (z, g) = objective_grad(model, &xa, p.loss, sub)?;
            passes.add(&active.iter().map(|&j| todo[j]).collect::<Vec<_>>(), 1, 1);
            let k = model.num_classes();
            let mut still = Vec::with_capacity(active.len());
            for (a, &j) in active.iter().enumerate() {
                if p.early_stop && sub.reached(a, &z[a * k..(a + 1) * k]) {
                    done[todo[j]] = true;
                    passes.settle(todo[j]);
                    continue;
                }
                let xi = &mut adv[j * per..(j + 1) * per];
                let mut gi = g[a * per..(a + 1) * per].to_vec();
                if p.momentum > 0.0 {
                    let l1: f32 = gi.iter().map(|v| v.abs()).sum::<f32>().max(1e-12);
                    let m = &mut momentum[j * per..(j + 1) * per];
                    for (mv, gv) in m.iter_mut().zip(&gi) {
                        *mv = p.momentum * *mv + gv / l1;
                    }
                    gi.copy_from_slice(m);
                }
                ascend(p.norm, xi, &gi, p.alpha(eps));
                project(p.norm, xi, &x[todo[j] * per..(todo[j] + 1) * per], eps);
                still.push(j);
            }
            active = still;
            passes.at((restart, runs), (step + 1, p.steps));
        }
        // Keep this run's images for the samples not yet broken; re-check which are now broken.
        let xs = gather(&adv, &(0..todo.len()).collect::<Vec<_>>(), per);
        let labels: Vec<usize> = todo.iter().map(|&i| goal.labels[i]).collect();
        let targets: Option<Vec<usize>> =
            goal.targets.map(|t| todo.iter().map(|&i| t[i]).collect());
        let z = model.logits(&xs)?;
        passes.add(&todo, 1, 0);
        let k = model.num_classes();
        let sub = Goal {
            labels: &labels,
            targets: targets.as_deref(),
        };
        for (j, &i) in todo.iter().enumerate() {
            let hit = sub.reached(j, &z[j * k..(j + 1) * k]);
            if hit || restart == 0 {
                best[i * per..(i + 1) * per].copy_from_slice(&adv[j * per..(j + 1) * per]);
            }
            done[i] |= hit;
            if hit {
                passes.settle(i);
            }
        }
        passes.at((restart + 1, runs), (0, 1));
    }
    finalize(model, x, best, goal, passes)
}
