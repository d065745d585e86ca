//! Brittle-decision flags at inference time (methods.md §5; Ngnawé et al., NeurIPS 2024:
//! "detecting brittle decisions for free"): a sample is flagged **brittle** when a clean score
//! that orders samples like their input margin is at most a threshold chosen on attacked
//! samples of a `margins` run — the logit margin `z_(1) − z_(2)` with the run's `flag_below`
//! (chosen on that run's data for its recall of the non-robust samples), or the run's saved
//! pseudo-margin with the threshold chosen on the samples it was fitted on.
//!
//! [`flag_table`] then compares the flagged and the unflagged samples where robustness was
//! measured: a useful flag has flagged samples whose robust accuracy is lower.

use std::path::{Path, PathBuf};

use faultline_attacks::Norm;
use serde::{Deserialize, Serialize};

use crate::error::{io, Error, Result};
use crate::margin::pseudo::{PseudoInput, PseudoMargin, META_FILE};
use crate::margin::scores::Scores;

/// The score a [`Flagger`] thresholds.
#[derive(Debug, Clone)]
pub enum FlagScore {
    /// The logit margin `z_(1) − z_(2)`.
    LogitMargin,
    /// A saved pseudo-margin.
    Pseudo(Box<PseudoMargin>),
}

/// Flags brittle samples from their clean logits (and features, for a feature pseudo-margin).
#[derive(Debug, Clone)]
pub struct Flagger {
    /// The score.
    pub score: FlagScore,
    /// Flag a sample when its score is at most this.
    pub flag_below: f64,
    /// Threat model of the margins the threshold was chosen on.
    pub norm: Norm,
    /// A sample is non-robust when its input margin is at most this.
    pub eps: f32,
    /// The `margins` run directory it came from.
    pub dir: PathBuf,
}

/// The flag of one sample (fields of its `samples.jsonl` line).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BrittleFlag {
    /// The score is at most the threshold.
    pub brittle: bool,
    /// The score (logit margin or pseudo-margin of the clean image).
    pub brittle_score: f64,
}

impl Flagger {
    /// The flagger of a `margins` run directory: its saved pseudo-margin when there is one
    /// (`pseudo_margin.json`), else the logit margin with the run's threshold.
    pub fn from_run(dir: &Path) -> Result<Flagger> {
        if dir.join(META_FILE).exists() {
            let pm = PseudoMargin::load(dir)?;
            let flag_below = pm.meta.flag_below.ok_or_else(|| Error::RunDir {
                path: dir.join(META_FILE),
                why: "the pseudo-margin has no threshold (no non-robust fit sample)".into(),
            })?;
            return Ok(Flagger {
                flag_below,
                norm: pm.meta.norm,
                eps: pm.meta.eps,
                score: FlagScore::Pseudo(Box::new(pm)),
                dir: dir.to_path_buf(),
            });
        }
        let p = dir.join("run.json");
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        let bad = |why: String| Error::RunDir {
            path: p.clone(),
            why,
        };
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a run record ({e})")))?;
        if v["command"].as_str().is_some_and(|c| c != "margins") {
            return Err(bad(format!(
                "a {} run; --flag-brittle needs a margins run",
                v["command"]
            )));
        }
        let body = if v["result"].is_object() {
            &v["result"]
        } else {
            &v
        };
        let flag_below = body["report"]["scores"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "logit_margin"))
            .and_then(|s| s["flag_below"].as_f64())
            .ok_or_else(|| {
                bad("no logit-margin threshold (report.scores[logit_margin].flag_below); is it a finished margins run?".into())
            })?;
        let norm: Norm = serde_json::from_value(body["norm"].clone())
            .map_err(|e| bad(format!("no norm ({e})")))?;
        let eps = body["eps"].as_f64().ok_or_else(|| bad("no eps".into()))? as f32;
        Ok(Flagger {
            score: FlagScore::LogitMargin,
            flag_below,
            norm,
            eps,
            dir: dir.to_path_buf(),
        })
    }

    /// The score's name.
    pub fn score_name(&self) -> &'static str {
        match self.score {
            FlagScore::LogitMargin => "logit_margin",
            FlagScore::Pseudo(_) => "pseudo_margin",
        }
    }

    /// The flagger needs the penultimate features (a pseudo-margin fitted on them).
    pub fn needs_features(&self) -> bool {
        matches!(&self.score, FlagScore::Pseudo(p) if p.meta.input == PseudoInput::Features)
    }

    /// The flags of `n` samples from their logits (`n × k`) and, when needed, features.
    pub fn flags(
        &self,
        logits: &[f32],
        features: Option<&[f32]>,
        n: usize,
    ) -> Result<Vec<BrittleFlag>> {
        let k = logits.len() / n.max(1);
        let scores: Vec<f64> = match &self.score {
            FlagScore::LogitMargin => logits
                .chunks(k.max(1))
                .map(|z| Scores::of(z, None).logit_margin as f64)
                .collect(),
            FlagScore::Pseudo(pm) => match pm.meta.input {
                PseudoInput::Logits => pm.score_inputs(logits, n)?,
                PseudoInput::Features => pm.score_inputs(
                    features.ok_or_else(|| {
                        Error::Invalid("the pseudo-margin needs penultimate features".into())
                    })?,
                    n,
                )?,
            },
        };
        Ok(scores
            .into_iter()
            .map(|s| BrittleFlag {
                brittle: s <= self.flag_below,
                brittle_score: s,
            })
            .collect())
    }
}

/// Clean and robust accuracy of one group of samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagGroup {
    /// Samples in the group.
    pub n: usize,
    /// Fraction predicted right.
    pub clean_accuracy: Option<f64>,
    /// Fraction predicted right and not broken by the attack.
    pub robust_accuracy: Option<f64>,
}

/// Flagged against unflagged samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagTable {
    /// Samples flagged brittle.
    pub flagged: FlagGroup,
    /// The others.
    pub unflagged: FlagGroup,
}

/// The flagged and unflagged groups' accuracies; `correct[i]`: clean prediction right,
/// `robust[i]`: right and not broken.
pub fn flag_table(brittle: &[bool], correct: &[bool], robust: &[bool]) -> FlagTable {
    let group = |want: bool| {
        let idx: Vec<usize> = (0..brittle.len()).filter(|&i| brittle[i] == want).collect();
        let frac = |v: &[bool]| {
            (!idx.is_empty())
                .then(|| idx.iter().filter(|&&i| v[i]).count() as f64 / idx.len() as f64)
        };
        FlagGroup {
            n: idx.len(),
            clean_accuracy: frac(correct),
            robust_accuracy: frac(robust),
        }
    };
    FlagTable {
        flagged: group(true),
        unflagged: group(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logit_margin_flags_exactly_the_rows_at_most_the_threshold() {
        let f = Flagger {
            score: FlagScore::LogitMargin,
            flag_below: 1.0,
            norm: Norm::Linf,
            eps: 0.1,
            dir: PathBuf::new(),
        };
        // Top-1 − top-2: 2.0, 1.0, 0.5.
        let z = [3.0, 1.0, 0.0, 0.0, 1.0, 2.0, 0.5, 1.0, 0.0];
        let fl = f.flags(&z, None, 3).unwrap();
        let b: Vec<bool> = fl.iter().map(|f| f.brittle).collect();
        assert_eq!(b, vec![false, true, true]);
        assert_eq!(fl[0].brittle_score, 2.0);
        assert_eq!(fl[2].brittle_score, 0.5);
    }

    #[test]
    fn flag_table_counts_each_group() {
        let t = flag_table(
            &[true, true, false, false, false],
            &[true, false, true, true, true],
            &[false, false, true, true, false],
        );
        assert_eq!(t.flagged.n, 2);
        assert_eq!(t.flagged.clean_accuracy, Some(0.5));
        assert_eq!(t.flagged.robust_accuracy, Some(0.0));
        assert_eq!(t.unflagged.n, 3);
        assert_eq!(t.unflagged.robust_accuracy, Some(2.0 / 3.0));
        assert_eq!(flag_table(&[], &[], &[]).flagged.robust_accuracy, None);
    }
}
