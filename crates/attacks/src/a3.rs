//! A3-style adaptive APGD (`a3-ce`, `a3-t`; the stages of `--preset fast`): APGD whose runs
//! start from directions learned from earlier successes and stop spending on samples whose loss
//! statistics say they will not break.
//!
//! # Paper
//! Liu, Peng, Hu, Li, Wang, Zhuang, Tang & Guo, *Practical Evaluation of Adversarial Robustness
//! via Adaptive Auto Attack*, CVPR 2022 (arXiv 2203.05154; public code
//! `liuye6666/adaptive_auto_attack`). A3 reports AutoAttack-level robust accuracy at about a
//! tenth of its passes with two ideas, adapted here to APGD (this is our own implementation of
//! the ideas, not a port; A3 itself runs a cosine-step PGD on the margin loss):
//!
//! * **Adaptive direction initialisation (ADI).** A3 starts each restart with a few
//!   output-diversified steps (ODI) along a logit-space direction whose distribution it
//!   biases towards the directions of the restarts that succeeded. Here the start of every run
//!   is drawn from the input-space directions of the perturbations that already succeeded on
//!   *other* samples of the same call (earlier stages of the ensemble, earlier target classes
//!   and restarts): with `s̄` the mean of `sign(δ)` (L∞) or `δ/‖δ‖₂` (L2) over the successful
//!   perturbations that reached class `t` (targeted run toward `t`) or left label `y`
//!   (untargeted run on a sample labelled `y`), `n` their number and `u` APGD's random start
//!   direction, the start is `x0 + ε·v/‖v‖` (clipped to [0, 1]) with
//!   `v = λ·s̄ + (1 − λ)·u` (L2: each term normalised first) and
//!   `λ = adi_weight·n/(n + adi_prior)`. With no success yet (`n = 0`) this is APGD's random
//!   start exactly. Unlike A3's ODI steps this costs no passes. Directions are kept per
//!   (label, class) pair: a class-pair universal direction, not one shared by every label.
//! * **Online statistics-based discarding (OSD).** A3 ranks the samples still robust by the
//!   best loss they reached and attacks only the most promising fraction in later restarts.
//!   Here every run records, at its first step-size checkpoint (`⌈0.22·N_iter⌉` iterations),
//!   the best untargeted DLR value `−(z_y − max_{j≠y} z_j)/(z_π1 − z_π3)` of each sample still
//!   attacked — scale-free, so comparable across samples, losses and stages. The samples that
//!   went on to break later in their run are the evidence `E`. Once `|E| ≥ osd_min_evidence`,
//!   a later run stops a sample at its checkpoint when its value is below
//!   `τ = min E − osd_slack·(median E − min E)`, i.e. further behind than any sample that still
//!   broke, by a margin of the evidence's own spread; with `osd_keep < 1` only that fraction of
//!   the samples still attacked, those with the highest values, continues (A3's ranking by the
//!   best loss reached). A stopped sample keeps its best point and
//!   is attacked again by later runs (other targets, restarts, stages), where it may break.
//!
//! # Scope of the statistics
//! The memory of successes and evidence lives for one call of an attack or of an ensemble (one
//! batch at one ε): results never depend on which batches ran before, so a resumed run
//! reproduces an uninterrupted one, but they depend on the other samples of the batch
//! (`--batch-size`), as A3's do on the data set.
//!
//! # Defaults
//! Everything of APGD ([`ApgdParams`]: 100 iterations, ρ = 0.75, momentum 0.75) and its
//! random start when nothing has broken yet. `a3-ce` is one run (every sample's first, so no
//! ranking: `osd_keep = 1`). `a3-t` ranks 9 target classes as AutoAttack's APGD-T and lets
//! half of the samples still attacked continue past each run's checkpoint (`osd_keep = 0.5`,
//! A3's fraction attacked in its later restarts shrinks from 1 towards 0.03): a robust sample
//! then costs at most about 1 + 9·(0.5 + 0.5·0.22) APGD runs against standard's 1 + 9 APGD
//! runs, 9 FAB-T runs and 5,000 Square queries, under a fifth even when the evidence rule never
//! fires. ADI: `adi_prior = 4` successes before the learned direction gets half its weight,
//! `adi_weight = 0.5` (a start is never more than half learned, keeping A3's diversity). OSD:
//! `osd_min_evidence = 3`, `osd_slack = 1`. These follow the reasoning above, not a fit to
//! one model ([U] in the sense of methods.md); `--steps` and `--restarts` reach the APGD runs
//! and `--param KEY=VALUE` every field here (`--param osd_keep=0.3`).
//!
//! # Cost
//! As APGD, minus the iterations after the checkpoint of discarded samples.

use std::collections::HashMap;

use faultline_engine::Model;
use serde::{Deserialize, Serialize};

use crate::apgd::{apgd, apgd_start, start_direction, Adapt, ApgdParams, Checkpoint};
use crate::attack::{AttackOutput, BatchRef, BoundedAttack, Described, Goal, Watch};
use crate::norm::Norm;
use crate::Result;

/// Parameters of A3-style adaptive APGD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct A3Params {
    /// The APGD runs (norm, iterations, restarts, loss, target classes, ρ, momentum, seed).
    #[serde(flatten)]
    pub apgd: ApgdParams,
    /// ADI: successes of a class before its learned direction gets half of `adi_weight`
    /// (default 4).
    pub adi_prior: f32,
    /// ADI: the largest weight of the learned direction in a start (default 0.5).
    pub adi_weight: f32,
    /// OSD: late successes needed before anything is discarded (default 3).
    pub osd_min_evidence: usize,
    /// OSD: how far below the evidence, in units of its spread (median − min), a sample must
    /// be to stop (default 1).
    pub osd_slack: f32,
    /// OSD: fraction of the samples still attacked at a checkpoint that continue, ranked by the
    /// statistic (default 1 for `a3-ce`: its run is every sample's first; 0.5 for `a3-t`).
    pub osd_keep: f32,
}

impl A3Params {
    /// The A3 rules around `apgd`, with their defaults.
    pub fn around(apgd: ApgdParams) -> Self {
        A3Params {
            apgd,
            adi_prior: 4.0,
            adi_weight: 0.5,
            osd_min_evidence: 3,
            osd_slack: 1.0,
            osd_keep: 1.0,
        }
    }
    /// `a3-ce`: adaptive APGD on cross-entropy.
    pub fn ce(norm: Norm) -> Self {
        Self::around(ApgdParams::autoattack_ce(norm))
    }
    /// `a3-t`: adaptive APGD-T on the targeted DLR loss, 9 target classes, half of the samples
    /// continuing past each checkpoint.
    pub fn targeted(norm: Norm) -> Self {
        Self {
            osd_keep: 0.5,
            ..Self::around(ApgdParams::autoattack_t(norm))
        }
    }
}

/// The sum of the directions of successful perturbations, and their number.
#[derive(Debug, Clone, Default)]
struct Directions {
    sum: Vec<f32>,
    n: usize,
}

impl Directions {
    fn add(&mut self, d: &[f32]) {
        if self.sum.len() != d.len() {
            self.sum = vec![0.0; d.len()];
            self.n = 0;
        }
        self.sum.iter_mut().zip(d).for_each(|(s, v)| *s += v);
        self.n += 1;
    }
    fn mean(&self) -> Option<Vec<f32>> {
        (self.n > 0).then(|| self.sum.iter().map(|s| s / self.n as f32).collect())
    }
}

/// What the runs of one call (an attack, or every stage of an ensemble) learned: the directions
/// of the perturbations that succeeded, by (label left, class reached) and by label left (ADI),
/// and the
/// checkpoint statistics of the samples that broke after their checkpoint (OSD).
#[derive(Debug, Clone, Default)]
pub struct Memory {
    toward: HashMap<(usize, usize), Directions>,
    away: HashMap<usize, Directions>,
    evidence: Vec<f32>,
}

impl Memory {
    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }
    /// Records a successful perturbation `delta` of a sample labelled `label` that reached
    /// class `class`.
    pub fn record_success(&mut self, norm: Norm, label: usize, class: usize, delta: &[f32]) {
        let d: Vec<f32> = match norm {
            Norm::Linf => delta.iter().map(|&v| sign(v)).collect(),
            Norm::L2 | Norm::L1 => {
                let n = norm.of(delta.iter().copied());
                if n <= 0.0 {
                    return;
                }
                delta.iter().map(|v| v / n).collect()
            }
        };
        self.toward.entry((label, class)).or_default().add(&d);
        self.away.entry(label).or_default().add(&d);
    }
    /// Records the checkpoint statistic of a sample that broke after its checkpoint.
    pub fn record_late_success(&mut self, stat: f32) {
        if stat.is_finite() {
            self.evidence.push(stat);
        }
    }
    /// The mean learned direction and its count for a run from `label` toward `target` (or
    /// away from `label`).
    fn learned(&self, label: usize, target: Option<usize>) -> Option<(Vec<f32>, usize)> {
        let d = match target {
            Some(t) => self.toward.get(&(label, t)),
            None => self.away.get(&label),
        }?;
        d.mean().map(|m| (m, d.n))
    }
}

fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// OSD's threshold from the evidence (checkpoint statistics of late successes):
/// `min E − slack·(median E − min E)`, or None with fewer than `min_evidence` values.
pub fn osd_threshold(evidence: &[f32], min_evidence: usize, slack: f32) -> Option<f32> {
    if evidence.is_empty() || evidence.len() < min_evidence {
        return None;
    }
    let mut e = evidence.to_vec();
    e.sort_by(f32::total_cmp);
    let (lo, med) = (e[0], e[e.len() / 2]);
    Some(lo - slack * (med - lo))
}

/// ADI's start: `x0 + ε·v/‖v‖` clipped to [0, 1], `v = λ·s̄ + (1 − λ)·u` with `u` APGD's random
/// direction and `λ = weight·n/(n + prior)` (`learned` = (s̄, n); None: APGD's random start).
pub fn adi_start(
    norm: Norm,
    x0: &[f32],
    learned: Option<(&[f32], usize)>,
    prior: f32,
    weight: f32,
    eps: f32,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Vec<f32> {
    let Some((m, n)) = learned.filter(|(m, n)| *n > 0 && m.len() == x0.len()) else {
        return apgd_start(norm, x0, eps, rng);
    };
    let u = start_direction(norm, x0.len(), rng);
    let unit = |v: &[f32]| -> Vec<f32> {
        let n = norm.of(v.iter().copied()) + 1e-12;
        v.iter().map(|a| a / n).collect()
    };
    let lam = weight.clamp(0.0, 1.0) * n as f32 / (n as f32 + prior.max(0.0));
    let (m, u) = match norm {
        Norm::Linf => (m.to_vec(), u),
        Norm::L2 | Norm::L1 => (unit(m), unit(&u)),
    };
    let v: Vec<f32> = m
        .iter()
        .zip(&u)
        .map(|(a, b)| lam * a + (1.0 - lam) * b)
        .collect();
    x0.iter()
        .zip(unit(&v))
        .map(|(&o, d)| (o + eps * d).clamp(0.0, 1.0))
        .collect()
}

/// The A3 rules applied to one call's APGD runs.
struct Adaptive<'a> {
    p: &'a A3Params,
    memory: &'a mut Memory,
}

impl Adapt for Adaptive<'_> {
    fn start(
        &mut self,
        x0: &[f32],
        label: usize,
        target: Option<usize>,
        eps: f32,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Vec<f32> {
        let learned = self.memory.learned(label, target);
        adi_start(
            self.p.apgd.norm,
            x0,
            learned.as_ref().map(|(m, n)| (m.as_slice(), *n)),
            self.p.adi_prior,
            self.p.adi_weight,
            eps,
            rng,
        )
    }
    fn checkpoint(&self, steps: usize) -> Option<Checkpoint> {
        Some(Checkpoint {
            at: crate::apgd::first_checkpoint(steps),
            below: osd_threshold(
                &self.memory.evidence,
                self.p.osd_min_evidence,
                self.p.osd_slack,
            ),
            keep: self.p.osd_keep,
        })
    }
    fn learn(
        &mut self,
        x0: &[f32],
        label: usize,
        adv: Option<(&[f32], usize)>,
        at_check: Option<f32>,
    ) {
        if let Some((a, class)) = adv {
            let delta: Vec<f32> = a.iter().zip(x0).map(|(a, b)| a - b).collect();
            self.memory
                .record_success(self.p.apgd.norm, label, class, &delta);
            if let Some(s) = at_check {
                self.memory.record_late_success(s);
            }
        }
    }
}

impl Described for A3Params {
    fn norm(&self) -> Norm {
        self.apgd.norm
    }
    fn params(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl BoundedAttack for A3Params {
    fn run_watched(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        eps: f32,
        watch: Watch,
    ) -> Result<AttackOutput> {
        self.run_learning(model, batch, goal, eps, &mut Memory::new(), watch)
    }
    fn run_learning(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        eps: f32,
        memory: &mut Memory,
        watch: Watch,
    ) -> Result<AttackOutput> {
        let mut a = Adaptive { p: self, memory };
        apgd(
            model,
            batch.images,
            goal,
            batch.indices,
            &self.apgd,
            eps,
            Some(&mut a),
            watch,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::norm::sample_rng;

    #[test]
    fn the_discarding_threshold_sits_one_spread_below_the_evidence() {
        // min 0.1, median 0.2: τ = 0.1 − 1·(0.2 − 0.1) = 0.
        let t = osd_threshold(&[0.3, 0.1, 0.2], 3, 1.0).unwrap();
        assert!(t.abs() < 1e-6, "{t}");
        assert_eq!(osd_threshold(&[0.3, 0.1, 0.2], 3, 0.0), Some(0.1));
        assert_eq!(osd_threshold(&[0.3, 0.1], 3, 1.0), None);
        assert_eq!(osd_threshold(&[], 0, 1.0), None);
    }

    #[test]
    fn a_checkpoint_keeps_the_best_fraction_above_the_threshold() {
        let stat = [-0.9, -0.1, -0.5, -0.3, 0.0];
        let c = |below, keep| Checkpoint { at: 1, below, keep };
        let active = [0, 1, 2, 3];
        // Half of 4: the two highest (samples 1 and 3).
        assert_eq!(c(None, 0.5).survivors(&active, &stat), vec![1, 3]);
        // Ranking off, threshold −0.6: all but sample 0.
        assert_eq!(c(Some(-0.6), 1.0).survivors(&active, &stat), vec![1, 2, 3]);
        // Both: the stricter wins; at least one sample always continues.
        assert_eq!(c(Some(-0.2), 0.75).survivors(&active, &stat), vec![1]);
        assert_eq!(c(None, 0.0).survivors(&active, &stat), vec![1]);
        assert_eq!(
            c(Some(5.0), 1.0).survivors(&active, &stat),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn without_successes_the_start_is_apgds_random_start() {
        let x0 = vec![0.5f32; 20];
        for norm in [Norm::Linf, Norm::L2] {
            let a = adi_start(norm, &x0, None, 4.0, 0.5, 0.1, &mut sample_rng(3, 7, "t"));
            let b = crate::apgd::apgd_start(norm, &x0, 0.1, &mut sample_rng(3, 7, "t"));
            assert_eq!(a, b, "{norm:?}");
        }
    }

    #[test]
    fn learned_directions_steer_the_start_by_their_weight() {
        let d = 64;
        let x0 = vec![0.5f32; d];
        let eps = 0.05;
        // Successes of label 1 reaching class 2 all moved coordinate j by sign (−1)^j.
        let s: Vec<f32> = (0..d)
            .map(|j| if j % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let mut m = Memory::new();
        for k in 0..3 {
            let delta: Vec<f32> = s.iter().map(|v| v * 0.01 * (k + 1) as f32).collect();
            m.record_success(Norm::Linf, 1, 2, &delta);
        }
        let (mean, n) = m.learned(1, Some(2)).unwrap();
        assert_eq!((mean.clone(), n), (s.clone(), 3));
        assert_eq!(m.learned(1, None).unwrap().1, 3);
        assert!(m.learned(0, Some(2)).is_none() && m.learned(2, None).is_none());
        let agree = |x: &[f32]| {
            x.iter()
                .zip(&s)
                .filter(|(a, b)| (**a - 0.5) * **b > 0.0)
                .count()
        };
        // Weight 1 and no prior: the start is the learned corner x0 + ε·s̄ itself.
        let mut rng = sample_rng(0, 0, "t");
        let full = adi_start(Norm::Linf, &x0, Some((&mean, n)), 0.0, 1.0, eps, &mut rng);
        for (v, t) in full.iter().zip(&s) {
            assert!((v - (0.5 + eps * t)).abs() < 1e-6);
        }
        // λ = 0.5·3/(3 + 4) ≈ 0.21: inside the ball, on its surface, and mostly along s̄
        // (a random start agrees on about half the coordinates).
        let mut agreeing = 0;
        for seed in 0..20 {
            let mut rng = sample_rng(seed, 0, "t");
            let v = adi_start(Norm::Linf, &x0, Some((&mean, n)), 4.0, 0.5, eps, &mut rng);
            let dist = Norm::Linf.dist(&v, &x0);
            assert!((dist - eps).abs() < 1e-6, "{dist}");
            agreeing += agree(&v);
        }
        assert!(agreeing as f32 / (20 * d) as f32 > 0.6, "{agreeing}");
        // L2: the start lies on the sphere of radius ε.
        let mut rng = sample_rng(1, 0, "t");
        let v = adi_start(Norm::L2, &x0, Some((&mean, n)), 4.0, 0.5, eps, &mut rng);
        assert!((Norm::L2.dist(&v, &x0) - eps).abs() < 1e-5);
    }
}
