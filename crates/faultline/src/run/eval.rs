//! `eval`: clean accuracy, per-class accuracy, confusion matrix and logit margins, and with a
//! corruption plan the accuracy under each corruption × severity (mCE against a baseline run).

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::corruption::{summarize_corruptions, Baseline, CorruptionPlan, CorruptionSummary};
use crate::error::{io, Error, Result};
use crate::eval::{evaluate_under, summarize, EvalSummary};
use crate::model::ModelCard;
use crate::record::{Condition, SampleRecord};
use crate::run::{
    check_batch_size, open_records, threads, DataCard, Loaded, Output, Progress, Runtime,
};
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
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            selection: Selection::default(),
            batch_size: 128,
            corruptions: None,
            baseline: None,
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
    let indices = loaded.select(&cfg.selection)?;
    let total = indices.len();
    let plan = cfg.corruptions.as_ref();
    let per_sample = 1 + plan.map_or(0, |p| p.conditions().len());
    let mut settings = loaded.settings(&cfg.selection, &indices);
    settings["corruptions"] = serde_json::to_value(plan).unwrap_or_default();
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
    evaluate_under(
        model,
        loaded.data.as_ref(),
        &indices[start..],
        cfg.batch_size,
        plan,
        |batch| {
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
    };
    rd.finish(&report)?;
    Ok((report, records))
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
