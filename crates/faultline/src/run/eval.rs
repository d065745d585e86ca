//! `eval`: clean accuracy, per-class accuracy, confusion matrix and logit margins, and with a
//! corruption plan the accuracy under each corruption × severity (mCE against a baseline run).
//! With a `margins` run to flag from, each clean sample is marked brittle or not (logit margin
//! or saved pseudo-margin at most the run's threshold, [`crate::margin::brittle`]) and, with an
//! attack, the robust accuracy of the flagged samples is compared with the unflagged ones'.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::corruption::{summarize_corruptions, Baseline, CorruptionPlan, CorruptionSummary};
use crate::error::{io, Error, Result};
use crate::eval::{evaluate_under, summarize, EvalSummary};
use crate::margin::brittle::{flag_table, BrittleFlag, FlagTable, Flagger};
use crate::model::ModelCard;
use crate::record::{Condition, SampleRecord};
use crate::run::attack::{self, AttackConfig};
use crate::run::{
    check_batch_size, open_records, threads, DataCard, Loaded, Output, Progress, Runtime,
};
use crate::subset::read_batches;
use crate::subset::Selection;

/// Settings of `eval`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalConfig {
    /// The samples evaluated [default: all].
    pub selection: Selection,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Corruptions computed on the fly [default: none].
    pub corruptions: Option<CorruptionPlan>,
    /// An earlier `eval` run directory with corruption results of a baseline model (mCE).
    pub baseline: Option<PathBuf>,
    /// A `margins` run directory whose threshold (or saved pseudo-margin) flags brittle samples.
    pub flag_brittle: Option<PathBuf>,
    /// With `flag_brittle`: the attack (registry name, at the margins run's norm and ε) that
    /// measures the robust accuracy of the flagged and unflagged samples [default: none].
    pub robust_attack: Option<String>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            selection: Selection::default(),
            batch_size: 128,
            corruptions: None,
            baseline: None,
            flag_brittle: None,
            robust_attack: None,
        }
    }
}

/// The body of `eval`'s `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Fraction of samples predicted right.
    pub clean_accuracy: f64,
    /// Mean of `z_label − max_{j≠label} z_j`.
    pub mean_logit_margin: f64,
    /// Mean accuracy over the corruption conditions (with corruptions).
    pub mean_corruption_accuracy: Option<f64>,
    /// Mean corruption error against the baseline (standard families).
    pub mce: Option<f64>,
    /// Relative mCE against the baseline.
    pub relative_mce: Option<f64>,
    /// Accuracy per corruption × severity, and per family.
    pub corruptions: Option<CorruptionSummary>,
    /// The baseline run directory.
    pub baseline: Option<PathBuf>,
    /// The model.
    pub model: ModelCard,
    /// The data set.
    pub data: DataCard,
    /// Engine settings and timing.
    pub runtime: Runtime,
    /// Counts, per-class accuracy and the confusion matrix.
    pub results: EvalSummary,
    /// Brittle-decision flags (with `flag_brittle`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brittle: Option<BrittleReport>,
}

/// The brittle-decision flags of an `eval` run.
#[derive(Debug, Clone, Serialize)]
pub struct BrittleReport {
    /// The `margins` run the flagger came from.
    pub source: PathBuf,
    /// `logit_margin` or `pseudo_margin`.
    pub score: String,
    /// Flag a sample when its score is at most this.
    pub flag_below: f64,
    /// Samples flagged.
    pub flagged: usize,
    /// Samples scored.
    pub samples: usize,
    /// Share flagged.
    pub brittle_fraction: f64,
    /// The attack measuring robustness, its norm and radius (those of the margins run).
    pub attack: Option<String>,
    /// Radius of the attack.
    pub eps: f32,
    /// Its norm.
    pub norm: faultline_attacks::Norm,
    /// Clean and robust accuracy of the flagged and the unflagged samples (with an attack).
    pub table: Option<FlagTable>,
}

/// Runs `eval`; see [`run_records`].
pub fn run(
    cfg: &EvalConfig,
    loaded: &Loaded,
    out: &Output,
    progress: &dyn Progress,
) -> Result<EvalReport> {
    Ok(run_records(cfg, loaded, out, progress)?.0)
}

/// Runs `eval` and also returns every record (clean first per sample, then each corruption
/// condition), for commands that build on it.
pub fn run_records(
    cfg: &EvalConfig,
    loaded: &Loaded,
    out: &Output,
    progress: &dyn Progress,
) -> Result<(EvalReport, Vec<SampleRecord>)> {
    check_batch_size(cfg.batch_size)?;
    let baseline = cfg.baseline.as_deref().map(read_baseline).transpose()?;
    // A shard covers whole batches (see `Shard`).
    let selection = cfg.selection.batched(cfg.batch_size);
    let indices = loaded.select(&selection)?;
    let total = indices.len();
    let plan = cfg.corruptions.as_ref();
    let per_sample = 1 + plan.map_or(0, |p| p.conditions().len());
    let mut settings = loaded.settings(&selection, &indices)?;
    settings["corruptions"] = serde_json::to_value(plan).unwrap_or_default();
    let flagger = cfg
        .flag_brittle
        .as_deref()
        .map(Flagger::from_run)
        .transpose()?;
    if let Some(f) = &flagger {
        settings["flag_brittle"] = serde_json::json!({
            "dir": f.dir, "score": f.score_name(), "flag_below": f.flag_below
        });
    }
    // Keep only whole samples (every condition present) of an interrupted run.
    let (mut rd, mut records, start) =
        open_records(out, "eval", settings, per_sample, &indices, progress)?;
    if let Some(p) = plan {
        progress.note(&format!(
            "evaluating {} corruption(s) x {} severit(ies) ({} table) on {total} images",
            p.kinds.len(),
            p.severities.len(),
            p.table
        ));
    }
    progress.start("eval", total, start);
    let t0 = Instant::now();
    let is_right = |r: &SampleRecord| r.condition == Condition::Clean && r.correct();
    let mut correct = records.iter().filter(|r| is_right(r)).count();
    let mut seen = start;
    let model = &loaded.model.model;
    let flags = match &flagger {
        Some(f) => brittle_flags(f, loaded, &indices[start..], cfg.batch_size)?,
        None => HashMap::new(),
    };
    evaluate_under(
        model,
        loaded.data.as_ref(),
        &indices[start..],
        cfg.batch_size,
        plan,
        |batch| {
            let mut batch = batch.to_vec();
            for r in batch.iter_mut().filter(|r| r.condition == Condition::Clean) {
                r.flag = flags.get(&r.index).copied();
            }
            let batch = &batch[..];
            rd.append(batch)?;
            seen += batch.len() / per_sample;
            correct += batch.iter().filter(|r| is_right(r)).count();
            progress.advance(seen);
            progress.message(&format!(
                "clean accuracy {:.2} %",
                100.0 * correct as f64 / seen.max(1) as f64
            ));
            records.extend_from_slice(batch);
            Ok(())
        },
    )?;
    progress.finish();
    let secs = t0.elapsed().as_secs_f64();
    let k = loaded.model.card.num_classes;
    let summary = summarize(&records, &loaded.class_names(), k);
    let corr = plan.map(|p| summarize_corruptions(&records, p, baseline.as_ref()));
    let report = EvalReport {
        clean_accuracy: summary.clean_accuracy,
        mean_logit_margin: summary.mean_logit_margin,
        mean_corruption_accuracy: corr.as_ref().map(|c| c.mean_corruption_accuracy),
        mce: corr.as_ref().and_then(|c| c.mce),
        relative_mce: corr.as_ref().and_then(|c| c.relative_mce),
        corruptions: corr,
        baseline: cfg.baseline.clone(),
        model: loaded.model.card.clone(),
        data: loaded.data_card(),
        runtime: Runtime {
            threads: threads(),
            batch_size: cfg.batch_size,
            seconds: secs,
            resumed_from: start,
            forward_passes: None,
            backward_passes: None,
            img_per_s: Some((total - start) as f64 / secs.max(1e-9)),
        },
        results: summary,
        brittle: None,
    };
    let report = match &flagger {
        Some(f) => EvalReport {
            brittle: Some(brittle_report(cfg, f, loaded, &records, out, progress)?),
            ..report
        },
        None => report,
    };
    rd.finish(&report)?;
    Ok((report, records))
}

/// The flag of every sample of `indices` from one clean pass.
fn brittle_flags(
    f: &Flagger,
    loaded: &Loaded,
    indices: &[usize],
    batch_size: usize,
) -> Result<HashMap<usize, BrittleFlag>> {
    let model = &loaded.model.model;
    let mut out = HashMap::new();
    for b in read_batches(loaded.data.as_ref(), indices, batch_size)? {
        let b = b?;
        let (z, feats) = if f.needs_features() {
            let (z, t) = model.features(&b.images, &["penultimate"])?;
            (z, t.into_iter().next().map(|t| t.into_f32()).transpose()?)
        } else {
            (model.logits(&b.images)?, None)
        };
        let fl = f.flags(&z, feats.as_deref(), b.len())?;
        out.extend(b.indices.iter().copied().zip(fl));
    }
    Ok(out)
}

/// The share flagged and, with an attack, the flagged against the unflagged samples' robust
/// accuracy (the attack runs in the `robust/` sub-directory at the margins run's norm and ε).
fn brittle_report(
    cfg: &EvalConfig,
    f: &Flagger,
    loaded: &Loaded,
    records: &[SampleRecord],
    out: &Output,
    progress: &dyn Progress,
) -> Result<BrittleReport> {
    let clean: Vec<&SampleRecord> = records
        .iter()
        .filter(|r| r.condition == Condition::Clean)
        .collect();
    let brittle: Vec<bool> = clean
        .iter()
        .map(|r| r.flag.is_some_and(|f| f.brittle))
        .collect();
    let flagged = brittle.iter().filter(|&&b| b).count();
    let table = match &cfg.robust_attack {
        Some(name) => {
            let acfg = AttackConfig {
                attack: name.clone(),
                settings: faultline_attacks::registry::Settings {
                    norm: Some(f.norm),
                    ..Default::default()
                },
                eps: vec![f.eps],
                sanity: false,
                selection: cfg.selection.clone(),
                batch_size: cfg.batch_size,
                ..AttackConfig::default()
            };
            let sub = out.sub("robust");
            progress.note(&format!(
                "eval: robustness of the flagged samples by {name} → {}",
                sub.dir.display()
            ));
            let (_, recs) = attack::run_records(&acfg, loaded, &sub, progress)?;
            let robust: HashMap<usize, bool> =
                recs.iter().map(|r| (r.index, !r.success())).collect();
            let correct: Vec<bool> = clean.iter().map(|r| r.correct()).collect();
            let rob: Vec<bool> = clean
                .iter()
                .map(|r| robust.get(&r.index).copied().unwrap_or(false))
                .collect();
            Some(flag_table(&brittle, &correct, &rob))
        }
        None => None,
    };
    Ok(BrittleReport {
        source: f.dir.clone(),
        score: f.score_name().into(),
        flag_below: f.flag_below,
        flagged,
        samples: clean.len(),
        brittle_fraction: flagged as f64 / clean.len().max(1) as f64,
        attack: cfg.robust_attack.clone(),
        eps: f.eps,
        norm: f.norm,
        table,
    })
}

/// The corruption errors of an earlier `eval --corruptions` run.
fn read_baseline(dir: &std::path::Path) -> Result<Baseline> {
    let p = dir.join("run.json");
    let text = std::fs::read_to_string(&p).map_err(io(&p))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::RunDir {
        path: p.clone(),
        why: format!("not a faultline run record ({e})"),
    })?;
    Baseline::from_run(&v).map_err(|e| Error::RunDir {
        path: p,
        why: format!("baseline: {e}"),
    })
}
