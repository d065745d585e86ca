//! The figures of a margins run: for each score, margin consistency (Kendall τ-b and Spearman ρ
//! against the input margin, with bootstrap intervals) and detection of the non-robust samples
//! (`d_in ≤ ε`: AUROC, AUPR, FPR@95, and the score threshold that flags a chosen share of them),
//! plus the robust accuracy the margins imply and its sample-efficient estimate.
//!
//! Samples for which the attack found no adversarial point have `d_in = +∞`: they rank above
//! every found margin and count as robust at every ε.

use faultline_attacks::Norm;
use serde::Serialize;

use crate::margin::estimate::{
    estimate_robust_accuracy, subset_sweep, Attacked, RobustEstimate, SubsetSweep,
};
use crate::margin::measure::MarginRow;
use crate::margin::scores::SCORES;
use crate::stats::{
    bootstrap, detection, kendall_tau_b, spearman_rho, threshold_for_recall, Detection, Estimate,
};

/// Settings of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportParams {
    /// Threat norm of the margins.
    pub norm: Norm,
    /// Radius: a sample is non-robust when `d_in ≤ ε`.
    pub eps: f32,
    /// Share of the non-robust samples the deployed threshold must flag (default 0.95).
    pub recall: f64,
    /// Bootstrap resamples for the intervals (default 1000).
    pub bootstrap: usize,
    /// Attacked samples per round of the robust-accuracy estimate (default 100).
    pub estimate_size: usize,
    /// Rounds of the estimate (default 10, as the paper).
    pub estimate_rounds: usize,
    /// Seed of the resampling.
    pub seed: u64,
}

impl Default for ReportParams {
    fn default() -> Self {
        ReportParams {
            norm: Norm::Linf,
            eps: 8.0 / 255.0,
            recall: 0.95,
            bootstrap: 1000,
            estimate_size: 100,
            estimate_rounds: 10,
            seed: 0,
        }
    }
}

/// One score against the input margin.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScoreReport {
    /// Score name.
    pub name: String,
    /// Kendall τ-b between the input margin and the score.
    pub kendall_tau: Option<Estimate>,
    /// Spearman ρ.
    pub spearman: Option<Estimate>,
    /// Detection of `d_in ≤ ε` by a low score.
    pub detection: Detection,
    /// Flag a sample when its score is at most this value to catch `recall` of the non-robust
    /// samples (on this data).
    pub flag_below: Option<f64>,
}

/// Margin consistency and detection of one score (`s`, higher = more robust) against input
/// margins `d_in` (`+∞` = none found).
pub fn score_report(name: &str, d_in: &[f64], s: &[f64], p: &ReportParams) -> ScoreReport {
    let eps = p.eps as f64;
    let tau = bootstrap(d_in, s, p.bootstrap, p.seed, kendall_tau_b);
    let rho = bootstrap(d_in, s, p.bootstrap, p.seed, spearman_rho);
    let pos: Vec<bool> = d_in.iter().map(|&d| d <= eps).collect();
    let neg: Vec<f64> = s.iter().map(|v| -v).collect();
    ScoreReport {
        name: name.to_string(),
        kendall_tau: tau,
        spearman: rho,
        detection: detection(&neg, &pos),
        flag_below: threshold_for_recall(&neg, &pos, p.recall).map(|t| -t),
    }
}

/// Everything a margins run reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MarginReport {
    /// Samples scored.
    pub n: usize,
    /// Clean accuracy over them.
    pub clean_accuracy: f64,
    /// Samples attacked for their input margin.
    pub attacked: usize,
    /// Attacked samples with a margin found.
    pub found: usize,
    /// Median input margin over the found ones.
    pub median_input_margin: Option<f64>,
    /// Attacked samples with `d_in ≤ ε`.
    pub non_robust: usize,
    /// Share of the attacked samples that are correct with `d_in > ε` (an upper bound on the
    /// robust accuracy, like any attack's).
    pub robust_accuracy: Option<f64>,
    /// Smallest and largest `‖w_i − w_j‖_*` of the final layer (equal under equidistance).
    pub row_gap_range: Option<[f64; 2]>,
    /// One entry per score with values.
    pub scores: Vec<ScoreReport>,
    /// Robust accuracy of all scored samples estimated from subsets of the attacked ones;
    /// none when every sample was attacked (then `robust_accuracy` is measured on all).
    pub estimate: Option<RobustEstimate>,
    /// How wide the robust-accuracy interval is for 25…800 attacked samples, and how many each
    /// width needs.
    pub subset_sweep: Option<SubsetSweep>,
}

impl MarginReport {
    /// The entry of a score.
    pub fn score(&self, name: &str) -> Option<&ScoreReport> {
        self.scores.iter().find(|s| s.name == name)
    }
}

/// The input margin of an attacked record, `+∞` when none was found.
pub fn input_margin(r: &MarginRow) -> f64 {
    r.input_margin.map_or(f64::INFINITY, |v| v as f64)
}

/// The report of a run's records.
pub fn report(
    records: &[MarginRow],
    p: &ReportParams,
    row_gaps: Option<(f64, f64)>,
) -> MarginReport {
    let eps = p.eps as f64;
    let att: Vec<&MarginRow> = records.iter().filter(|r| r.attacked).collect();
    let d_in: Vec<f64> = att.iter().map(|r| input_margin(r)).collect();
    let mut found: Vec<f64> = d_in.iter().copied().filter(|d| d.is_finite()).collect();
    found.sort_by(f64::total_cmp);
    let scores = SCORES
        .iter()
        .filter_map(|&name| {
            let s: Option<Vec<f64>> = att
                .iter()
                .map(|r| r.scores.get(name).map(|v| v as f64))
                .collect();
            let s = s?;
            (!att.is_empty()).then(|| score_report(name, &d_in, &s, p))
        })
        .collect();
    let attacked: Vec<Attacked> = att
        .iter()
        .map(|r| Attacked {
            input_margin: input_margin(r),
            logit_margin: r.scores.logit_margin as f64,
            correct: r.prediction == r.label,
        })
        .collect();
    let all: Vec<(f64, bool)> = records
        .iter()
        .map(|r| (r.scores.logit_margin as f64, r.prediction == r.label))
        .collect();
    let correct = records.iter().filter(|r| r.prediction == r.label).count();
    let sweep = subset_sweep(
        &attacked,
        &all,
        eps,
        &[25, 50, 100, 200, 400, 800],
        200,
        p.seed,
    );
    MarginReport {
        subset_sweep: sweep,
        n: records.len(),
        clean_accuracy: correct as f64 / records.len().max(1) as f64,
        attacked: att.len(),
        found: found.len(),
        median_input_margin: (!found.is_empty()).then(|| found[found.len() / 2]),
        non_robust: d_in.iter().filter(|&&d| d <= eps).count(),
        robust_accuracy: (!att.is_empty()).then(|| {
            att.iter()
                .filter(|r| r.prediction == r.label && input_margin(r) > eps)
                .count() as f64
                / att.len() as f64
        }),
        row_gap_range: row_gaps.map(|(a, b)| [a, b]),
        scores,
        // Estimated only where some samples went unattacked: when every sample was attacked,
        // the measured robust accuracy above is the answer and an estimate would only blur it.
        estimate: (attacked.len() < all.len())
            .then(|| {
                estimate_robust_accuracy(
                    &attacked,
                    &all,
                    eps,
                    p.estimate_size,
                    p.estimate_rounds,
                    p.seed,
                )
            })
            .flatten(),
    }
}
