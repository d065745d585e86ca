//! Sample-efficient robust accuracy (methods.md §5.4, from the margin-consistency paper's code):
//! attack a small subset for input margins, fit a logit-margin threshold on it, and read the
//! robust accuracy of the whole set off the logit margins alone.
//!
//! Per round: draw `size` attacked samples (without replacement; a bootstrap resample when `size`
//! is the whole attacked set), label them non-robust when `d_in ≤ ε`; for each target recall
//! α ∈ {0.80, 0.825, …, 0.95, 0.99} take the logit-margin threshold `λ_α` that flags (`m ≤ λ_α`)
//! that share of the non-robust ones; keep the λ whose implied robust accuracy on the subset
//! (correct and not flagged) is closest to the subset's measured one (correct and `d_in > ε`);
//! the estimate is the share of *all* samples that are correct and not flagged. The rounds give
//! a mean and a 2.5–97.5 % percentile interval.

use faultline_attacks::norm::sample_rng;
use rand_chacha::rand_core::Rng;
use serde::Serialize;

use crate::stats::threshold_for_recall;

/// Target recalls tried for the threshold (the paper's code).
pub const RECALLS: [f64; 8] = [0.80, 0.825, 0.85, 0.875, 0.90, 0.925, 0.95, 0.99];

/// One attacked sample: input margin (`f64::INFINITY` when none was found), logit margin, and
/// whether the clean prediction is right.
#[derive(Debug, Clone, Copy)]
pub struct Attacked {
    /// `d_in`.
    pub input_margin: f64,
    /// `m(x)`.
    pub logit_margin: f64,
    /// Clean prediction = label.
    pub correct: bool,
}

/// The estimate and how it was made.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RobustEstimate {
    /// Attacked samples drawn per round.
    pub subset: usize,
    /// Rounds.
    pub rounds: usize,
    /// Samples the estimate covers (all scored samples).
    pub population: usize,
    /// Mean estimate over the rounds.
    pub estimate: f64,
    /// 2.5 % percentile over the rounds.
    pub low: f64,
    /// 97.5 % percentile over the rounds.
    pub high: f64,
    /// Robust accuracy measured from the input margins of all attacked samples (correct and
    /// `d_in > ε`), for comparison.
    pub measured_on_attacked: f64,
    /// Samples attacked.
    pub attacked: usize,
}

/// Estimates the robust accuracy at `eps` of the samples `all` (logit margin, correct) from
/// the attacked ones; None when nothing was attacked.
pub fn estimate_robust_accuracy(
    attacked: &[Attacked],
    all: &[(f64, bool)],
    eps: f64,
    size: usize,
    rounds: usize,
    seed: u64,
) -> Option<RobustEstimate> {
    if attacked.is_empty() || all.is_empty() || rounds == 0 {
        return None;
    }
    let size = size.clamp(1, attacked.len());
    let robust = |a: &Attacked| a.correct && a.input_margin > eps;
    let mut vals = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let mut rng = sample_rng(seed, r, "robust-estimate");
        let pick: Vec<Attacked> = if size == attacked.len() {
            (0..size)
                .map(|_| attacked[(rng.next_u64() % size as u64) as usize])
                .collect()
        } else {
            // Partial Fisher–Yates: the first `size` of a random permutation.
            let mut idx: Vec<usize> = (0..attacked.len()).collect();
            for i in 0..size {
                let j = i + (rng.next_u64() % (idx.len() - i) as u64) as usize;
                idx.swap(i, j);
            }
            idx[..size].iter().map(|&i| attacked[i]).collect()
        };
        let truth = pick.iter().filter(|a| robust(a)).count() as f64 / size as f64;
        let score: Vec<f64> = pick.iter().map(|a| -a.logit_margin).collect();
        let pos: Vec<bool> = pick.iter().map(|a| a.input_margin <= eps).collect();
        // Flag m ≤ λ; with no non-robust sample in the subset nothing is flagged.
        let mut best: Option<(f64, f64)> = None;
        for &alpha in &RECALLS {
            let Some(t) = threshold_for_recall(&score, &pos, alpha) else {
                continue;
            };
            let lambda = -t;
            let implied = pick
                .iter()
                .filter(|a| a.correct && a.logit_margin > lambda)
                .count() as f64
                / size as f64;
            let gap = (implied - truth).abs();
            if best.is_none_or(|(g, _)| gap < g) {
                best = Some((gap, lambda));
            }
        }
        let lambda = best.map_or(f64::NEG_INFINITY, |(_, l)| l);
        let est = all.iter().filter(|(m, c)| *c && *m > lambda).count() as f64 / all.len() as f64;
        vals.push(est);
    }
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    vals.sort_by(f64::total_cmp);
    let q = |p: f64| vals[((p * (vals.len() - 1) as f64).round() as usize).min(vals.len() - 1)];
    Some(RobustEstimate {
        subset: size,
        rounds,
        population: all.len(),
        estimate: mean,
        low: q(0.025),
        high: q(0.975),
        measured_on_attacked: attacked.iter().filter(|a| robust(a)).count() as f64
            / attacked.len() as f64,
        attacked: attacked.len(),
    })
}

/// One size of the subset-size sweep.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SweepPoint {
    /// Attacked samples per draw.
    pub size: usize,
    /// Width of the 2.5–97.5 % percentile interval of the robust accuracy measured directly on
    /// `size` attacked samples drawn without replacement (`rounds` draws).
    pub direct_width: f64,
    /// The normal-approximation width `2 · 1.96 · √(p(1 − p)/size)` of a binomial proportion at
    /// the measured robust accuracy `p` (without the finite-population correction).
    pub binomial_width: f64,
    /// Width of the interval of [`estimate_robust_accuracy`] (logit margins of all samples,
    /// threshold from `size` attacked ones), when some samples went unattacked.
    pub estimate_width: Option<f64>,
}

/// The subset-size sweep of the robust-accuracy estimate: for each size, how wide its 95 %
/// interval is (`rounds` seeded draws), and how many attacked samples each interval width
/// needs (see [`samples_for_width`]).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubsetSweep {
    /// Robust accuracy measured on all attacked samples.
    pub robust_accuracy: f64,
    /// Per size.
    pub points: Vec<SweepPoint>,
    /// `[width, samples needed]` for widths 0.10, 0.05, 0.02 and 0.01.
    pub samples_for_width: Vec<[f64; 2]>,
}

/// Attacked samples a binomial proportion near `p` needs for a 95 % interval of total width
/// `width`: `⌈(2 · 1.96)² p(1 − p) / width²⌉` (normal approximation, at least 1).
pub fn samples_for_width(p: f64, width: f64) -> usize {
    ((2.0f64 * 1.96).powi(2) * p * (1.0 - p) / (width * width))
        .ceil()
        .max(1.0) as usize
}

/// The sweep over `sizes` (those above the attacked count are dropped).
pub fn subset_sweep(
    attacked: &[Attacked],
    all: &[(f64, bool)],
    eps: f64,
    sizes: &[usize],
    rounds: usize,
    seed: u64,
) -> Option<SubsetSweep> {
    if attacked.is_empty() || rounds == 0 {
        return None;
    }
    let robust = |a: &Attacked| a.correct && a.input_margin > eps;
    let p = attacked.iter().filter(|a| robust(a)).count() as f64 / attacked.len() as f64;
    let points = sizes
        .iter()
        .copied()
        .filter(|&s| s > 0 && s <= attacked.len())
        .map(|size| {
            let mut vals: Vec<f64> = (0..rounds)
                .map(|r| {
                    let mut rng = sample_rng(seed, r, "subset-sweep");
                    let mut idx: Vec<usize> = (0..attacked.len()).collect();
                    for i in 0..size {
                        let j = i + (rng.next_u64() % (idx.len() - i) as u64) as usize;
                        idx.swap(i, j);
                    }
                    idx[..size]
                        .iter()
                        .filter(|&&i| robust(&attacked[i]))
                        .count() as f64
                        / size as f64
                })
                .collect();
            vals.sort_by(f64::total_cmp);
            let q = |f: f64| vals[((f * (rounds - 1) as f64).round() as usize).min(rounds - 1)];
            SweepPoint {
                size,
                direct_width: q(0.975) - q(0.025),
                binomial_width: 2.0 * 1.96 * (p * (1.0 - p) / size as f64).sqrt(),
                estimate_width: (attacked.len() < all.len())
                    .then(|| estimate_robust_accuracy(attacked, all, eps, size, rounds, seed))
                    .flatten()
                    .map(|e| e.high - e.low),
            }
        })
        .collect();
    Some(SubsetSweep {
        robust_accuracy: p,
        points,
        samples_for_width: [0.10, 0.05, 0.02, 0.01]
            .iter()
            .map(|&w| [w, samples_for_width(p, w) as f64])
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_for_width_is_the_closed_form() {
        // (2·1.96)² · 0.25 / 0.01 = 384.16.
        assert_eq!(samples_for_width(0.5, 0.1), 385);
        // 15.3664 · 0.09 / 0.0004 = 3457.44.
        assert_eq!(samples_for_width(0.1, 0.02), 3458);
        assert_eq!(samples_for_width(1.0, 0.05), 1);
    }

    #[test]
    fn sweep_widths_shrink_with_size_and_vanish_without_variance() {
        let pts: Vec<Attacked> = (0..400)
            .map(|i| Attacked {
                input_margin: if i % 2 == 0 { 1.0 } else { 0.0 },
                logit_margin: i as f64,
                correct: true,
            })
            .collect();
        let all: Vec<(f64, bool)> = pts.iter().map(|a| (a.logit_margin, a.correct)).collect();
        let s = subset_sweep(&pts, &all, 0.5, &[25, 100, 400, 800], 200, 3).unwrap();
        assert_eq!(s.robust_accuracy, 0.5);
        assert_eq!(s.points.len(), 3);
        assert!(s.points[0].direct_width > s.points[1].direct_width);
        // All samples drawn: no spread left.
        assert_eq!(s.points[2].direct_width, 0.0);
        assert!((s.points[1].binomial_width - 2.0 * 1.96 * 0.05).abs() < 1e-12);
        // The direct width of 100 of 400 is near the binomial one, shrunk by the finite
        // population (√(300/399) ≈ 0.87).
        let ratio = s.points[1].direct_width / s.points[1].binomial_width;
        assert!((0.6..1.2).contains(&ratio), "{ratio}");
        assert_eq!(s.samples_for_width[0], [0.1, 385.0]);
        assert_eq!(s.samples_for_width[1], [0.05, 1537.0]);
        let same: Vec<Attacked> = pts
            .iter()
            .map(|a| Attacked {
                input_margin: 1.0,
                ..*a
            })
            .collect();
        let z = subset_sweep(&same, &all, 0.5, &[25], 50, 3).unwrap();
        assert_eq!(z.points[0].direct_width, 0.0);
        assert_eq!(z.points[0].binomial_width, 0.0);
    }

    #[test]
    fn a_consistent_margin_recovers_the_robust_accuracy() {
        // d_in = m / 10 exactly (perfect consistency), 30 % of samples misclassified.
        let n = 2000;
        let mut s = 7u64;
        let mut r = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let pts: Vec<Attacked> = (0..n)
            .map(|_| {
                let m = r();
                Attacked {
                    input_margin: m / 10.0,
                    logit_margin: m,
                    correct: r() > 0.3,
                }
            })
            .collect();
        let all: Vec<(f64, bool)> = pts.iter().map(|a| (a.logit_margin, a.correct)).collect();
        let eps = 0.05;
        let e = estimate_robust_accuracy(&pts[..300], &all, eps, 100, 10, 1).unwrap();
        let truth = pts
            .iter()
            .filter(|a| a.correct && a.input_margin > eps)
            .count() as f64
            / n as f64;
        assert!((e.estimate - truth).abs() < 0.05, "{e:?} vs {truth}");
        assert!(e.low <= e.estimate && e.estimate <= e.high);
        assert_eq!(
            e,
            estimate_robust_accuracy(&pts[..300], &all, eps, 100, 10, 1).unwrap()
        );
    }
}
