//! Attack ensembles: registered bounded attacks run one after the other at the same radius,
//! each only on the points the earlier ones left robust, with the worst case kept per sample.
//! An ensemble is itself a [`BoundedAttack`], so everything that runs an attack runs it.
//!
//! The `standard` preset is AutoAttack's standard version (Croce & Hein, ICML 2020,
//! `autoattack.py`, `version='standard'`): APGD-CE (100 iterations, 1 restart) → APGD-T
//! (targeted DLR, 9 target classes, 100 iterations) → FAB-T (9 target classes, 100 iterations,
//! 1 restart) → Square (5,000 queries, `p_init = 0.8`, 1 restart), in L∞ or L2: the registry's
//! `apgd-ce`, `apgd-t`, `fab-t` and `square` with their defaults. As in AutoAttack every stage
//! sees the clean images of the points still robust (it does not start from an earlier stage's
//! point), and a point broken by a stage is not attacked again.
//!
//! Per sample the ensemble keeps the first stage that broke it and that stage's returned image
//! (its prediction, margin and perturbation norms); for a sample no stage broke, the returned
//! image with the lowest logit margin over all stages (every one lies inside the ball). Forward
//! and backward passes are summed over the stages that ran on the sample, and kept per stage
//! (`stage_passes`).
//!
//! The `fast` preset is A3-style (Liu et al., CVPR 2022; [`crate::a3`]): `a3-ce` → `a3-t`,
//! adaptive APGD-CE then adaptive APGD-T on 9 target classes. The stages of one call share a
//! [`Memory`]: the directions of the perturbations that succeeded (start directions of later
//! runs) and the statistics of late successes (the discarding threshold).

use faultline_engine::Model;

use crate::a3::Memory;
use crate::attack::{
    check_batch, AttackOutput, BatchRef, BoundedAttack, Described, Goal, SampleResult, StageDone,
    Tick, Watch,
};
use crate::norm::Norm;
use crate::registry::{self, Method, Settings};
use crate::{Error, Result};

/// A named list of registered attacks.
pub struct Preset {
    /// The name (`--preset`).
    pub name: &'static str,
    /// Registry names of the stages, in order.
    pub stages: &'static [&'static str],
    /// One line for `faultline list`.
    pub about: &'static str,
}

/// Every preset.
pub static PRESETS: &[Preset] = &[
    Preset {
        name: "standard",
        stages: &["apgd-ce", "apgd-t", "fab-t", "square"],
        about: "AutoAttack's standard version: APGD-CE → APGD-T → FAB-T → Square",
    },
    Preset {
        name: "fast",
        stages: &["a3-ce", "a3-t"],
        about: "A3-style (Liu et al. 2022): adaptive APGD-CE → adaptive APGD-T (9 targets), \
                starts learned from earlier successes, hopeless samples discarded online",
    },
];

/// One stage: a bounded attack under its registry name.
pub struct Stage {
    /// Registry name (reported per stage in `stages` and per sample in `stage`).
    pub name: String,
    /// The attack.
    pub attack: Box<dyn BoundedAttack>,
}

/// Bounded attacks run in turn on the points still robust.
pub struct Ensemble {
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

impl Ensemble {
    /// The stages `names` from the registry, each in `s`'s norm (L∞ when none) with its seed and
    /// its defaults, except the `--param` fields of `s`: each is set in the stages that have it
    /// and refused when none has.
    pub fn of(names: &[&str], s: &Settings) -> Result<Self> {
        if names.is_empty() {
            return Err(Error::Invalid(
                "an ensemble needs at least one stage".into(),
            ));
        }
        let norm = s.norm.unwrap_or(Norm::Linf);
        let mut used = vec![false; s.params.len()];
        let stages = names
            .iter()
            .map(|&n| {
                let defaults = registry::entry(n)?.defaults();
                let params = s
                    .params
                    .iter()
                    .zip(&mut used)
                    .filter(|((k, _), _)| defaults.get(k).is_some())
                    .map(|(kv, u)| {
                        *u = true;
                        kv.clone()
                    })
                    .collect();
                let stage = Settings {
                    norm: Some(norm),
                    seed: s.seed,
                    params,
                    ..Settings::default()
                };
                let a = registry::build(n, &stage)?;
                match a.method {
                    Method::Bounded(attack) => Ok(Stage {
                        name: a.name,
                        attack,
                    }),
                    Method::MinNorm(_) => Err(Error::Invalid(format!(
                        "ensemble stage '{n}' must be a bounded attack"
                    ))),
                }
            })
            .collect::<Result<_>>()?;
        if let Some(((k, _), _)) = s.params.iter().zip(&used).find(|(_, u)| !**u) {
            return Err(Error::Invalid(format!(
                "--param {k}: no stage of {} has it",
                names.join(" → ")
            )));
        }
        Ok(Ensemble { stages })
    }

    /// The preset called `name`, built as [`Ensemble::of`] its stages.
    pub fn preset(name: &str, s: &Settings) -> Result<Self> {
        let p = PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
            Error::Invalid(format!(
                "unknown preset '{name}': use {}",
                PRESETS
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        Self::of(p.stages, s)
    }
}

impl Described for Ensemble {
    fn norm(&self) -> Norm {
        self.stages.first().map_or(Norm::Linf, |s| s.attack.norm())
    }
    fn params(&self) -> serde_json::Value {
        self.stages
            .iter()
            .map(|s| serde_json::json!({ "name": s.name, "params": s.attack.params() }))
            .collect()
    }
}

impl BoundedAttack for Ensemble {
    fn run_watched(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        eps: f32,
        watch: Watch,
    ) -> Result<AttackOutput> {
        self.run_staged(model, batch, goal, eps, &mut |_| {}, watch)
    }

    fn stages(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name.as_str()).collect()
    }

    fn run_staged(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        eps: f32,
        on_stage: &mut dyn FnMut(StageDone),
        watch: Watch,
    ) -> Result<AttackOutput> {
        let per = check_batch(model, batch.images, &goal)?;
        let n = goal.labels.len();
        let mut adv = batch.images.to_vec();
        let mut results: Vec<Option<SampleResult>> = vec![None; n];
        let mut stage = vec![None; n];
        let count = self.stages.len();
        let mut passes = vec![vec![[0u32, 0u32]; count]; n];
        let mut alive: Vec<usize> = (0..n).collect();
        let mut memory = Memory::new();
        for (s, st) in self.stages.iter().enumerate() {
            if !alive.is_empty() {
                let sel = batch.select(goal, &alive);
                let (b, g) = sel.parts();
                // The stage's progress as the ensemble's: samples broken by earlier stages are
                // settled, and the stage is the `s`-th share of the schedule.
                let broken = n - alive.len();
                let mut stage_watch = |t: Tick| {
                    watch(Tick {
                        samples: n,
                        settled: broken + t.settled,
                        schedule: (s as f32 + t.schedule) / count as f32,
                    })
                };
                let o = st
                    .attack
                    .run_learning(model, b, g, eps, &mut memory, &mut stage_watch)?;
                let mut still = Vec::with_capacity(alive.len());
                for (j, &i) in alive.iter().enumerate() {
                    let r = &o.results[j];
                    passes[i][s] = [r.forward, r.backward];
                    let lower = results[i]
                        .as_ref()
                        .is_none_or(|b| r.logit_margin < b.logit_margin);
                    if r.success || lower {
                        results[i] = Some(r.clone());
                        adv[i * per..(i + 1) * per].copy_from_slice(&o.adv[j * per..(j + 1) * per]);
                    }
                    if r.success {
                        stage[i] = Some(s);
                    } else {
                        still.push(i);
                    }
                }
                alive = still;
            }
            on_stage(StageDone {
                name: &st.name,
                position: (s, count),
                robust: alive.len(),
            });
        }
        let results = results
            .into_iter()
            .zip(passes)
            .zip(stage)
            .map(|((r, p), st)| {
                let r =
                    r.ok_or_else(|| Error::Invalid("an ensemble stage skipped a sample".into()))?;
                Ok(SampleResult {
                    forward: p.iter().map(|v| v[0]).sum(),
                    backward: p.iter().map(|v| v[1]).sum(),
                    stage: st,
                    stage_passes: p,
                    ..r
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AttackOutput { adv, results })
    }
}
