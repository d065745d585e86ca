//! Attack ensembles: several bounded attacks run one after the other at the same radius, each
//! only on the points the earlier ones left robust, with the worst case kept per sample.
//!
//! The `standard` preset is AutoAttack's standard version (Croce & Hein, ICML 2020,
//! `autoattack.py`, `version='standard'`): APGD-CE (100 iterations, 1 restart) → APGD-T
//! (targeted DLR, 9 target classes, 100 iterations) → FAB-T (9 target classes, 100 iterations,
//! 1 restart) → Square (5,000 queries, `p_init = 0.8`, 1 restart), in L∞ or L2, with
//! [`ApgdParams::autoattack_ce`], [`ApgdParams::autoattack_t`], [`FabParams::autoattack_t`] and
//! Square's defaults. As in AutoAttack every stage sees the clean images of the points still
//! robust (it does not start from an earlier stage's point), and a point broken by a stage is
//! not attacked again.
//!
//! Per sample the ensemble keeps the first stage that broke it and that stage's returned image
//! (its prediction, margin and perturbation norms); for a sample no stage broke, the returned
//! image with the lowest logit margin over all stages (every one lies inside the ball). Forward
//! and backward passes are summed over the stages that ran on the sample.

use faultline_attacks::{
    ApgdParams, AttackOutput, FabParams, Goal, Norm, SampleResult, SquareParams,
};
use faultline_engine::Model;
use serde::Serialize;

use crate::attack::{run_spec, AttackSpec};
use crate::error::{Error, Result};

/// One stage of an ensemble: a bounded attack under a name (`apgd-ce`, `apgd-t`, …).
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    /// The name reported per stage (run.json `stages`, samples.jsonl `stage`).
    pub attack: String,
    /// The attack and its parameters (its ε is set per radius).
    pub spec: AttackSpec,
}

/// The names of the presets.
pub const PRESETS: &[&str] = &["standard"];

/// A preset by name (`standard`: AutoAttack's standard version) in `norm`, with `seed` for the
/// random starts of every stage.
pub fn preset(name: &str, norm: Norm, seed: u64) -> Result<Vec<Stage>> {
    match name {
        "standard" => Ok(standard(norm, seed)),
        other => Err(Error::Invalid(format!(
            "unknown preset '{other}': use {}",
            PRESETS.join(", ")
        ))),
    }
}

/// AutoAttack's standard version: APGD-CE → APGD-T (9 targets) → FAB-T (9 targets) → Square
/// (5,000 queries).
pub fn standard(norm: Norm, seed: u64) -> Vec<Stage> {
    vec![
        Stage {
            attack: "apgd-ce".into(),
            spec: AttackSpec::Apgd(ApgdParams {
                seed,
                ..ApgdParams::autoattack_ce(norm, 0.0)
            }),
        },
        Stage {
            attack: "apgd-t".into(),
            spec: AttackSpec::Apgd(ApgdParams {
                seed,
                ..ApgdParams::autoattack_t(norm, 0.0)
            }),
        },
        Stage {
            attack: "fab-t".into(),
            spec: AttackSpec::Fab(FabParams {
                seed,
                ..FabParams::autoattack_t(norm, 0.0)
            }),
        },
        Stage {
            attack: "square".into(),
            spec: AttackSpec::Square(SquareParams {
                norm,
                seed,
                ..SquareParams::default()
            }),
        },
    ]
}

/// What an ensemble returns for a batch: the kept image and result per sample, and the stage
/// (its position in the list) that broke each sample.
#[derive(Debug, Clone)]
pub struct EnsembleOutput {
    /// Images and results (passes summed over the stages that ran on the sample).
    pub out: AttackOutput,
    /// The stage that broke each sample (`None`: none did).
    pub stage: Vec<Option<usize>>,
}

/// Runs `stages` at radius `eps` on a batch (N·C·H·W in [0, 1]); `indices` seed the random
/// starts. `on_stage(s, robust)` is called after stage `s` with the number of samples still
/// robust.
pub fn run_stages(
    model: &Model,
    x: &[f32],
    goal: Goal,
    indices: &[usize],
    stages: &[Stage],
    eps: f32,
    on_stage: &mut dyn FnMut(usize, usize),
) -> Result<EnsembleOutput> {
    let n = goal.labels.len();
    if stages.is_empty() {
        return Err(Error::Invalid(
            "an ensemble needs at least one stage".into(),
        ));
    }
    if n == 0 || !x.len().is_multiple_of(n) || indices.len() != n {
        return Err(Error::Invalid(format!(
            "{} values, {n} labels and {} indices do not make a batch",
            x.len(),
            indices.len()
        )));
    }
    let per = x.len() / n;
    let mut adv = x.to_vec();
    let mut results: Vec<Option<SampleResult>> = vec![None; n];
    let mut stage = vec![None; n];
    let mut passes = vec![(0u32, 0u32); n];
    let mut alive: Vec<usize> = (0..n).collect();
    for (s, st) in stages.iter().enumerate() {
        if matches!(st.spec, AttackSpec::Ensemble(_)) || st.spec.is_min_norm() {
            return Err(Error::Invalid(format!(
                "ensemble stage '{}' must be a bounded attack",
                st.attack
            )));
        }
        if alive.is_empty() {
            on_stage(s, 0);
            continue;
        }
        let xs: Vec<f32> = alive
            .iter()
            .flat_map(|&i| x[i * per..(i + 1) * per].iter().copied())
            .collect();
        let ys: Vec<usize> = alive.iter().map(|&i| goal.labels[i]).collect();
        let ts: Option<Vec<usize>> = goal.targets.map(|t| alive.iter().map(|&i| t[i]).collect());
        let ids: Vec<usize> = alive.iter().map(|&i| indices[i]).collect();
        let sub = Goal {
            labels: &ys,
            targets: ts.as_deref(),
        };
        let (o, _) = run_spec(model, &xs, sub, &ids, &st.spec, eps, &mut |_, _| {})?;
        let mut still = Vec::with_capacity(alive.len());
        for (j, &i) in alive.iter().enumerate() {
            let r = &o.results[j];
            passes[i].0 += r.forward;
            passes[i].1 += r.backward;
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
        on_stage(s, alive.len());
    }
    let results = results
        .into_iter()
        .zip(passes)
        .map(|(r, (f, b))| {
            let r = r.ok_or_else(|| Error::Invalid("an ensemble stage skipped a sample".into()))?;
            Ok(SampleResult {
                forward: f,
                backward: b,
                ..r
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EnsembleOutput {
        out: AttackOutput { adv, results },
        stage,
    })
}
