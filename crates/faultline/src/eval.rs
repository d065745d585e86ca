//! Clean evaluation: predictions and logit margins per sample, then accuracy, per-class
//! accuracy, the confusion matrix and the mean logit margin. This record is what every later
//! analysis extends.

use std::ops::Range;

use faultline_data::Dataset;
use faultline_engine::{runner_up, Model};
use serde::{Deserialize, Serialize};

use crate::corruption::{CorruptionKind, CorruptionPlan};
use crate::error::{Error, Result};
use crate::metrics::{confusion, per_class, ClassAccuracy};

/// One evaluated sample (a line of `samples.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Position of the sample in the data set.
    pub index: usize,
    /// True label.
    pub label: usize,
    /// Predicted class (first maximal logit).
    pub prediction: usize,
    /// `z_label − max_{j≠label} z_j`: positive exactly when the prediction is right, and the
    /// logit distance to the nearest wrong class.
    pub logit_margin: f32,
    /// The corruption applied (absent for the clean image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corruption: Option<String>,
    /// Its severity, 1–5 (absent for the clean image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<u8>,
}

impl crate::record::SampleIndexed for EvalRecord {
    fn sample_index(&self) -> usize {
        self.index
    }
}

impl EvalRecord {
    /// True for a record of the unperturbed image.
    pub fn is_clean(&self) -> bool {
        self.corruption.is_none()
    }
}

/// Aggregates of an evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalSummary {
    /// Samples evaluated.
    pub n: usize,
    /// Correct predictions.
    pub correct: usize,
    /// correct / n.
    pub clean_accuracy: f64,
    /// Mean of the per-sample logit margins.
    pub mean_logit_margin: f64,
    /// Accuracy per true class.
    pub per_class: Vec<ClassAccuracy>,
    /// Rows: true class; columns: predicted class.
    pub confusion: Vec<Vec<u64>>,
}

/// Index of the first maximal value.
pub fn argmax(z: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = j;
        }
    }
    best
}

/// Evaluates samples `range` of `data` in batches, handing each batch's records to `sink` as
/// soon as they exist (so they can be written before the next batch starts).
pub fn evaluate(
    model: &Model,
    data: &dyn Dataset,
    range: Range<usize>,
    batch_size: usize,
    sink: impl FnMut(&[EvalRecord]) -> Result<()>,
) -> Result<()> {
    evaluate_under(model, data, range, batch_size, None, sink)
}

/// [`evaluate`] on the clean images and, with a plan, on every corruption × severity of it,
/// computed on the fly. A batch's records (clean first, then each condition in plan order) reach
/// `sink` together, so an interrupted run never holds half a sample.
pub fn evaluate_under(
    model: &Model,
    data: &dyn Dataset,
    range: Range<usize>,
    batch_size: usize,
    plan: Option<&CorruptionPlan>,
    mut sink: impl FnMut(&[EvalRecord]) -> Result<()>,
) -> Result<()> {
    let k = model.num_classes();
    let source = data.info().source.display().to_string();
    for batch in data.batches(batch_size.max(1), range)? {
        let batch = batch?;
        let per = batch.channels * batch.height * batch.width;
        if let Some(pos) = batch.images.iter().position(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "{source}: sample {} has a non-finite pixel value",
                batch.indices[pos / per]
            )));
        }
        for (&i, &y) in batch.indices.iter().zip(&batch.labels) {
            if y >= k {
                return Err(Error::Invalid(format!(
                    "{source}: label {y} of sample {i} is out of range for a model with {k} outputs"
                )));
            }
        }
        let mut records =
            Vec::with_capacity(batch.len() * (1 + plan.map_or(0, |p| p.conditions().len())));
        let mut predict = |images: &[f32], condition: Option<(CorruptionKind, u8)>| -> Result<()> {
            let z = model.logits(images)?;
            records.extend(
                z.chunks(k)
                    .zip(batch.indices.iter().zip(&batch.labels))
                    .map(|(row, (&index, &label))| EvalRecord {
                        index,
                        label,
                        prediction: argmax(row),
                        logit_margin: row[label] - row[runner_up(row, label)],
                        corruption: condition.map(|(c, _)| c.name().to_string()),
                        severity: condition.map(|(_, s)| s),
                    }),
            );
            Ok(())
        };
        predict(&batch.images, None)?;
        if let Some(plan) = plan {
            for (kind, sev) in plan.conditions() {
                let images = plan.corrupt(&batch, kind, sev)?;
                predict(&images, Some((kind, sev)))?;
            }
        }
        sink(&records)?;
    }
    Ok(())
}

/// Summarizes the clean records over `k` classes named `names` (corrupted ones are skipped).
pub fn summarize(records: &[EvalRecord], names: &[String], k: usize) -> EvalSummary {
    let clean: Vec<&EvalRecord> = records.iter().filter(|r| r.is_clean()).collect();
    summarize_refs(&clean, names, k)
}

/// [`summarize`] over any selection of records.
pub fn summarize_refs(records: &[&EvalRecord], names: &[String], k: usize) -> EvalSummary {
    let n = records.len();
    let correct = records.iter().filter(|r| r.label == r.prediction).count();
    let conf = confusion(records.iter().map(|r| (r.label, r.prediction)), k);
    EvalSummary {
        n,
        correct,
        clean_accuracy: if n > 0 {
            correct as f64 / n as f64
        } else {
            0.0
        },
        mean_logit_margin: if n > 0 {
            records.iter().map(|r| r.logit_margin as f64).sum::<f64>() / n as f64
        } else {
            0.0
        },
        per_class: per_class(&conf, names),
        confusion: conf,
    }
}
