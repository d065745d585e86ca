//! The one per-sample record every command writes to `samples.jsonl`: which sample, under which
//! condition (clean, an attack at a radius, a corruption at a severity), what the model predicted
//! and, where an attack ran, what it found. Later analyses read these records back, never a
//! command's own formatting.

use faultline_attacks::Norm;
use serde::{Deserialize, Serialize};

use crate::eps::eps_label;
use crate::margin::scores::Scores;

/// What was done to a sample before it was predicted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The image as loaded.
    Clean,
    /// A registered attack (or preset) in a norm, at a radius (None: minimum-norm attacks).
    Attack {
        /// Registry name, or preset name.
        name: String,
        /// Threat model.
        norm: Norm,
        /// Radius on the [0, 1] scale.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eps: Option<f32>,
    },
    /// A common corruption at a severity.
    Corruption {
        /// Family name (`fog`, …).
        name: String,
        /// 1–5.
        severity: u8,
    },
    /// A reverse attack (loss descent toward a label, `faultline reverse`) on the clean image
    /// or on a corrupted copy.
    Reverse {
        /// Registry name of the attack.
        name: String,
        /// Threat model.
        norm: Norm,
        /// Radius on the [0, 1] scale.
        eps: f32,
        /// The label descended toward: `true` or `predicted`.
        toward: String,
        /// The corruption applied first (family, severity); None: the clean image.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on: Option<(String, u8)>,
    },
    /// The image as loaded, predicted by a quantized copy of the model (`faultline quantize`;
    /// the float model's prediction is the record's `clean_prediction`).
    Quantized {
        /// Bits of weights and activations.
        bits: u8,
        /// One weight scale per output channel.
        per_channel: bool,
    },
}

impl Condition {
    /// A short label: `clean`, `pgd linf 8/255`, `fog s3`.
    pub fn label(&self) -> String {
        match self {
            Condition::Clean => "clean".into(),
            Condition::Attack { name, norm, eps } => match eps {
                Some(e) => format!("{name} {} {}", norm.name(), eps_label(*e)),
                None => format!("{name} {}", norm.name()),
            },
            Condition::Corruption { name, severity } => format!("{name} s{severity}"),
            Condition::Reverse {
                name,
                norm,
                eps,
                toward,
                on,
            } => {
                let on = on
                    .as_ref()
                    .map_or("clean".into(), |(c, s)| format!("{c} s{s}"));
                format!(
                    "reverse {name} {} {} toward {toward} on {on}",
                    norm.name(),
                    eps_label(*eps)
                )
            }
            Condition::Quantized { bits, per_channel } => format!(
                "quantized int{bits}{}",
                if *per_channel { " per-channel" } else { "" }
            ),
        }
    }
    /// The radius of an attack condition.
    pub fn eps(&self) -> Option<f32> {
        match self {
            Condition::Attack { eps, .. } => *eps,
            _ => None,
        }
    }
    /// The family and severity of a corruption condition.
    pub fn corruption(&self) -> Option<(&str, u8)> {
        match self {
            Condition::Corruption { name, severity } => Some((name, *severity)),
            _ => None,
        }
    }
}

/// What an attack found on one sample (absent for clean and corrupted records).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttackOutcome {
    /// The goal is met (misclassified, or the target reached) — re-checked on the returned image.
    pub success: bool,
    /// ‖δ‖∞ of the returned perturbation.
    pub linf: f32,
    /// ‖δ‖₂.
    pub l2: f32,
    /// ‖δ‖₁.
    #[serde(default)]
    pub l1: f32,
    /// Forward passes spent on the sample under this condition.
    pub forward: u32,
    /// Backward passes spent on the sample under this condition.
    pub backward: u32,
    /// Ensembles: the stage that broke the sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Ensembles: `[forward, backward]` passes each stage spent on the sample under this
    /// condition, in stage order (the clean pass and sanity checks are only in the totals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_passes: Vec<[u32; 2]>,
    /// The result is carried over from this smaller ε: the sample was not attacked again here,
    /// or (with the sanity checks) the attack here did not break it — a violation of
    /// monotonicity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried_from: Option<f32>,
    /// Sanity check (largest ε, a few samples still robust): an unbounded attack broke it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unbounded_success: Option<bool>,
    /// Sanity check: the `[forward, backward]` passes of the unbounded attack (included in
    /// `forward` and `backward`), so that `merge` can undo the checks of a shard that the
    /// unsharded run would not have made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unbounded_passes: Option<[u32; 2]>,
    /// Sanity check: the cross-entropy gradient at the clean image is `zero` or `non-finite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_issue: Option<String>,
}

impl AttackOutcome {
    /// The perturbation's norm in `norm`.
    pub fn norm_in(&self, norm: Norm) -> f32 {
        match norm {
            Norm::Linf => self.linf,
            Norm::L2 => self.l2,
            Norm::L1 => self.l1,
        }
    }
}

/// The clean scores of a sample and its input margin (the `margins` command).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarginDetail {
    /// `d_in`: norm of the smallest re-checked perturbation found that changes the clean
    /// prediction; None when not attacked or none was found.
    pub input_margin: Option<f32>,
    /// Scores of the clean image (their `logit_margin` is top-1 − top-2).
    pub scores: Scores,
    /// Clean logits (inputs of a pseudo-margin learned from logits).
    pub logits: Vec<f32>,
    /// Penultimate features, kept only when a pseudo-margin is learned from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<f32>>,
}

/// One sample under one condition (a line of `samples.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Index of the sample in the data set (not its position in the run's selection).
    pub index: usize,
    /// True label.
    pub label: usize,
    /// What was done to the image.
    pub condition: Condition,
    /// Predicted class (first maximal logit) on the image under the condition.
    pub prediction: usize,
    /// `z_label − max_{j≠label} z_j` on that image: positive exactly when the prediction is
    /// right.
    pub logit_margin: f32,
    /// Prediction on the clean image (perturbed conditions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_prediction: Option<usize>,
    /// What an attack found.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<AttackOutcome>,
    /// Clean scores and input margin (`margins`).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<MarginDetail>,
    /// Brittle-decision flag of the clean image (`eval --flag-brittle`).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<crate::margin::brittle::BrittleFlag>,
}

impl SampleRecord {
    /// The prediction is right.
    pub fn correct(&self) -> bool {
        self.prediction == self.label
    }
    /// The clean prediction was right (for perturbed records; clean records: [`Self::correct`]).
    pub fn clean_correct(&self) -> bool {
        self.clean_prediction.unwrap_or(self.prediction) == self.label
    }
    /// The attack met its goal.
    pub fn success(&self) -> bool {
        self.attack.as_ref().is_some_and(|a| a.success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_keep_their_flat_fields() {
        let r = SampleRecord {
            index: 3,
            label: 1,
            condition: Condition::Attack {
                name: "pgd".into(),
                norm: Norm::Linf,
                eps: Some(8.0 / 255.0),
            },
            prediction: 2,
            logit_margin: -0.5,
            clean_prediction: Some(1),
            attack: Some(AttackOutcome {
                success: true,
                linf: 0.03,
                l2: 0.4,
                l1: 3.0,
                forward: 5,
                backward: 4,
                stage: None,
                stage_passes: Vec::new(),
                carried_from: None,
                unbounded_success: None,
                unbounded_passes: None,
                gradient_issue: None,
            }),
            margin: None,
            flag: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["success"], true);
        assert_eq!(v["condition"]["attack"]["name"], "pgd");
        assert_eq!(v["condition"]["attack"]["norm"], "linf");
        let back: SampleRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        let clean = SampleRecord {
            condition: Condition::Clean,
            clean_prediction: None,
            attack: None,
            ..r.clone()
        };
        let v = serde_json::to_value(&clean).unwrap();
        assert_eq!(v["condition"], "clean");
        assert!(v.get("success").is_none());
        let back: SampleRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, clean);
        let fog = Condition::Corruption {
            name: "fog".into(),
            severity: 3,
        };
        assert_eq!(fog.label(), "fog s3");
        assert_eq!(r.condition.label(), "pgd linf 8/255");
    }
}
