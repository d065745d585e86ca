//! Clean evaluation: predictions and logit margins per sample, then accuracy, per-class
//! accuracy, the confusion matrix and the mean logit margin. This record is what every later
//! analysis extends.

use faultline_attacks::attack::argmax;
use faultline_data::Dataset;
use faultline_engine::{runner_up, Model};
use serde::Serialize;

use crate::corruption::{CorruptionKind, CorruptionPlan};
use crate::error::{Error, Result};
use crate::metrics::{confusion, per_class, ClassAccuracy};
use crate::record::{Condition, SampleRecord};
use crate::subset::read_batches;

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

/// Evaluates the samples `indices` of `data` (data-set indices, in that order) in batches,
/// handing each batch's records to `sink` as soon as they exist (so they can be written before
/// the next batch starts).
pub fn evaluate(
    model: &Model,
    data: &dyn Dataset,
    indices: &[usize],
    batch_size: usize,
    sink: impl FnMut(&[SampleRecord]) -> Result<()>,
) -> Result<()> {
    evaluate_under(model, data, indices, batch_size, None, sink)
}

/// [`evaluate`] on the clean images and, with a plan, on every corruption × severity of it,
/// computed on the fly. A batch's records (clean first, then each condition in plan order) reach
/// `sink` together, so an interrupted run never holds half a sample.
pub fn evaluate_under(
    model: &Model,
    data: &dyn Dataset,
    indices: &[usize],
    batch_size: usize,
    plan: Option<&CorruptionPlan>,
    mut sink: impl FnMut(&[SampleRecord]) -> Result<()>,
) -> Result<()> {
    let k = model.num_classes();
    let source = data.info().source.display().to_string();
    for batch in read_batches(data, indices, batch_size)? {
        let batch = batch?;
        check_batch(&batch, k, &source)?;
        let mut records =
            Vec::with_capacity(batch.len() * (1 + plan.map_or(0, |p| p.conditions().len())));
        let mut predict = |images: &[f32], condition: Option<(CorruptionKind, u8)>| -> Result<()> {
            let condition = condition.map_or(Condition::Clean, |(c, s)| Condition::Corruption {
                name: c.name().to_string(),
                severity: s,
            });
            let z = model.logits(images)?;
            records.extend(
                z.chunks(k)
                    .zip(batch.indices.iter().zip(&batch.labels))
                    .map(|(row, (&index, &label))| SampleRecord {
                        index,
                        label,
                        condition: condition.clone(),
                        prediction: argmax(row),
                        logit_margin: row[label] - row[runner_up(row, label)],
                        clean_prediction: None,
                        attack: None,
                        margin: None,
                        flag: None,
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
pub fn summarize(records: &[SampleRecord], names: &[String], k: usize) -> EvalSummary {
    let clean: Vec<&SampleRecord> = records
        .iter()
        .filter(|r| r.condition == Condition::Clean)
        .collect();
    summarize_refs(&clean, names, k)
}

/// [`summarize`] over any selection of records.
pub fn summarize_refs(records: &[&SampleRecord], names: &[String], k: usize) -> EvalSummary {
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

/// Refuses a batch with a non-finite pixel or a label the model (`k` outputs) cannot predict.
pub fn check_batch(batch: &faultline_data::Batch, k: usize, source: &str) -> Result<()> {
    let per = batch.channels * batch.height * batch.width;
    if let Some(pos) = batch.images.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinitePixel {
            data: source.to_string(),
            index: batch.indices[pos / per.max(1)],
        });
    }
    if let Some((&index, &label)) = batch
        .indices
        .iter()
        .zip(&batch.labels)
        .find(|(_, &y)| y >= k)
    {
        return Err(Error::LabelOutOfRange {
            data: source.to_string(),
            index,
            label,
            classes: k,
        });
    }
    Ok(())
}

/// One perturbation an accuracy is measured under (see [`accuracy_under`]).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Perturbation {
    /// No perturbation.
    Clean,
    /// A corruption family at a severity.
    Corruption {
        /// Family name.
        name: String,
        /// Severity 1–5.
        severity: u8,
    },
    /// A registered bounded attack (L∞) at a radius.
    Attack {
        /// Registry name.
        name: String,
        /// Radius.
        eps: f32,
        /// Iterations [default: the attack's own; PGD 10, with a random start].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        steps: Option<usize>,
    },
}

impl Perturbation {
    /// A short label (`clean`, `fog/3`, `pgd@2/255`).
    pub fn label(&self) -> String {
        match self {
            Perturbation::Clean => "clean".into(),
            Perturbation::Corruption { name, severity } => format!("{name}/{severity}"),
            Perturbation::Attack { name, eps, .. } => {
                format!("{name}@{}", crate::eps::eps_label(*eps))
            }
        }
    }
    /// The family: the corruption or attack name (`clean` for clean).
    pub fn family(&self) -> &str {
        match self {
            Perturbation::Clean => "clean",
            Perturbation::Corruption { name, .. } | Perturbation::Attack { name, .. } => name,
        }
    }
}

/// Accuracy of `model` on samples `indices` of `data` under each perturbation, reading
/// `batch_size` samples at a time. Corruptions and attacks draw from per-sample streams of
/// `seed` (attacks: PGD 10 steps with a random start unless `steps` says otherwise).
pub fn accuracy_under(
    model: &Model,
    data: &dyn Dataset,
    indices: &[usize],
    perturbations: &[Perturbation],
    batch_size: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    use faultline_attacks::{registry, BatchRef, Goal};
    let info = data.info();
    let k = model.num_classes();
    let plan = CorruptionPlan {
        kinds: Vec::new(),
        severities: Vec::new(),
        table: crate::corruption::ParamTable::for_size(info.height, info.width),
        seed,
    };
    // Resolve every perturbation once: corruption kinds and built attacks.
    enum Ready {
        Clean,
        Corruption(CorruptionKind, u8),
        Attack(registry::Attack, f32),
    }
    let ready = perturbations
        .iter()
        .map(|p| {
            Ok(match p {
                Perturbation::Clean => Ready::Clean,
                Perturbation::Corruption { name, severity } => {
                    let kind = CorruptionKind::ALL
                        .iter()
                        .copied()
                        .find(|c| c.name() == name)
                        .ok_or_else(|| Error::Invalid(format!("unknown corruption {name}")))?;
                    Ready::Corruption(kind, *severity)
                }
                Perturbation::Attack { name, eps, steps } => {
                    let pgd = name == "pgd";
                    let settings = registry::Settings {
                        steps: steps.or(pgd.then_some(10)),
                        random_start: pgd,
                        seed,
                        ..Default::default()
                    };
                    Ready::Attack(
                        registry::build(name, &settings).map_err(Error::Attack)?,
                        *eps,
                    )
                }
            })
        })
        .collect::<Result<Vec<Ready>>>()?;
    let mut right = vec![0usize; perturbations.len()];
    for chunk in indices.chunks(batch_size.max(1)) {
        let b = data.read(chunk)?;
        check_batch(&b, k, &info.source.display().to_string())?;
        for (pi, r) in ready.iter().enumerate() {
            let preds: Vec<usize> = match r {
                Ready::Clean => model.logits(&b.images)?.chunks(k).map(argmax).collect(),
                Ready::Corruption(kind, severity) => {
                    let x = plan.corrupt(&b, *kind, *severity)?;
                    model.logits(&x)?.chunks(k).map(argmax).collect()
                }
                Ready::Attack(at, eps) => {
                    let registry::Method::Bounded(m) = &at.method else {
                        return Err(Error::Invalid(format!(
                            "{} is a minimum-norm attack; accuracy needs a bounded one",
                            at.name
                        )));
                    };
                    let goal = Goal {
                        labels: &b.labels,
                        targets: None,
                    };
                    let out = m
                        .run(model, BatchRef::new(&b.images, &b.indices), goal, *eps)
                        .map_err(Error::Attack)?;
                    out.results.iter().map(|r| r.prediction).collect()
                }
            };
            right[pi] += preds.iter().zip(&b.labels).filter(|(p, y)| p == y).count();
        }
    }
    let n = indices.len().max(1) as f64;
    Ok(right.into_iter().map(|r| r as f64 / n).collect())
}
