//! What an attack run measured, from its records alone (so a resumed or merged run summarizes
//! exactly like an uninterrupted one): robust accuracy per ε (after each stage for an
//! ensemble), and for minimum-norm attacks the curve read off the norms they found.

use faultline_attacks::Attack;
use serde::Serialize;

use crate::record::SampleRecord;

/// Robust accuracy after one stage of an ensemble.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StagePoint {
    /// The stage.
    pub attack: String,
    /// Fraction of samples neither misclassified clean nor broken by this or an earlier stage.
    pub robust_accuracy: f64,
    /// Forward passes the stage spent at this radius, over all samples.
    pub forward: u64,
    /// Backward passes the stage spent at this radius, over all samples.
    pub backward: u64,
}

/// Robust accuracy at one radius.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CurvePoint {
    /// The radius.
    pub eps: f32,
    /// Fraction of samples neither misclassified clean nor broken within ε.
    pub robust_accuracy: f64,
    /// Ensembles: robust accuracy after each stage (the last equals `robust_accuracy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StagePoint>>,
}

/// Summary of an attack run.
#[derive(Debug, Clone, Serialize)]
pub struct AttackSummary {
    /// Samples.
    pub n: usize,
    /// Clean accuracy on them.
    pub clean_accuracy: f64,
    /// Robust accuracy per ε, ascending.
    pub curve: Vec<CurvePoint>,
    /// Median norm of the smallest perturbation found, over clean-correct samples that were
    /// broken (minimum-norm attacks).
    pub median_min_norm: Option<f64>,
    /// Clean-correct samples for which no adversarial example was found (minimum-norm attacks).
    pub not_found: usize,
}

/// Summarizes records; for a minimum-norm attack the curve is computed at `eps` from the norms.
pub fn summarize(records: &[SampleRecord], attack: &Attack, eps: &[f32]) -> AttackSummary {
    let norm = attack.norm();
    let norm_of = |r: &SampleRecord| r.attack.as_ref().map_or(0.0, |a| a.norm_in(norm));
    let mut idx: Vec<usize> = records.iter().map(|r| r.index).collect();
    idx.sort_unstable();
    idx.dedup();
    let n = idx.len();
    let first: Vec<&SampleRecord> = {
        let mut seen = std::collections::HashSet::new();
        records.iter().filter(|r| seen.insert(r.index)).collect()
    };
    let clean_ok = first.iter().filter(|r| r.clean_correct()).count();
    let mut sorted: Vec<f32> = eps.to_vec();
    sorted.sort_by(f32::total_cmp);
    let names = attack.stages();
    let frac = |c: usize| c as f64 / n.max(1) as f64;
    let curve = sorted
        .iter()
        .map(|&e| {
            let at: Vec<&SampleRecord> = records
                .iter()
                .filter(|r| r.condition.eps() == Some(e))
                .collect();
            let robust = if attack.is_min_norm() {
                first
                    .iter()
                    .filter(|r| r.clean_correct() && (!r.success() || norm_of(r) > e))
                    .count()
            } else {
                at.iter().filter(|r| !r.success()).count()
            };
            let stages = (!names.is_empty()).then(|| {
                let rank = |r: &SampleRecord| {
                    r.attack
                        .as_ref()
                        .and_then(|a| a.stage.as_deref())
                        .and_then(|s| names.iter().position(|&m| m == s))
                        .unwrap_or(0)
                };
                names
                    .iter()
                    .enumerate()
                    .map(|(s, name)| {
                        let spent = |f: usize| -> u64 {
                            at.iter()
                                .filter_map(|r| r.attack.as_ref()?.stage_passes.get(s))
                                .map(|p| p[f] as u64)
                                .sum()
                        };
                        StagePoint {
                            attack: name.to_string(),
                            robust_accuracy: frac(
                                at.iter().filter(|r| !r.success() || rank(r) > s).count(),
                            ),
                            forward: spent(0),
                            backward: spent(1),
                        }
                    })
                    .collect()
            });
            CurvePoint {
                eps: e,
                robust_accuracy: frac(robust),
                stages,
            }
        })
        .collect();
    let (median_min_norm, not_found) = if attack.is_min_norm() {
        let mut v: Vec<f64> = first
            .iter()
            .filter(|r| r.clean_correct() && r.success())
            .map(|r| norm_of(r) as f64)
            .collect();
        v.sort_by(f64::total_cmp);
        let nf = first
            .iter()
            .filter(|r| r.clean_correct() && !r.success())
            .count();
        ((!v.is_empty()).then(|| v[v.len() / 2]), nf)
    } else {
        (None, 0)
    };
    AttackSummary {
        n,
        clean_accuracy: clean_ok as f64 / n.max(1) as f64,
        curve,
        median_min_norm,
        not_found,
    }
}
