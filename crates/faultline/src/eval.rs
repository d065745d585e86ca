//! Clean evaluation: predictions and logit margins per sample, then accuracy, per-class
//! accuracy, the confusion matrix and the mean logit margin. This record is what every later
//! analysis extends.

use std::ops::Range;

use faultline_data::Dataset;
use faultline_engine::{runner_up, Model};
use serde::{Deserialize, Serialize};

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
        let z = model.logits(&batch.images)?;
        let records: Vec<EvalRecord> = z
            .chunks(k)
            .zip(batch.indices.iter().zip(&batch.labels))
            .map(|(row, (&index, &label))| EvalRecord {
                index,
                label,
                prediction: argmax(row),
                logit_margin: row[label] - row[runner_up(row, label)],
            })
            .collect();
        sink(&records)?;
    }
    Ok(())
}

/// Summarizes records over `k` classes named `names`.
pub fn summarize(records: &[EvalRecord], names: &[String], k: usize) -> EvalSummary {
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
