//! Rank agreement and detection statistics (margin consistency, latent structure): Kendall τ-b, Spearman ρ,
//! bootstrap intervals, and how well a score flags samples whose input margin is at most ε
//! (AUROC, AUPR, FPR at 95 % TPR, ROC curve, the threshold for a chosen recall).

use serde::Serialize;

/// Kendall's τ-b in O(n log n) (Knight 1966): `(n_c − n_d) / √((n0 − n1)(n0 − n2))`, with ties
/// in either variable handled. None for fewer than two points or a constant variable.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    if n < 2 || y.len() != n {
        return None;
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]).then(y[a].total_cmp(&y[b])));
    let pairs = |c: u64| c * c.saturating_sub(1) / 2;
    let (mut n1, mut n3) = (0u64, 0u64);
    let (mut run_x, mut run_xy) = (1u64, 1u64);
    for w in idx.windows(2) {
        let (a, b) = (w[0], w[1]);
        if x[a] == x[b] {
            run_x += 1;
            if y[a] == y[b] {
                run_xy += 1;
            } else {
                n3 += pairs(run_xy);
                run_xy = 1;
            }
        } else {
            n1 += pairs(run_x);
            n3 += pairs(run_xy);
            run_x = 1;
            run_xy = 1;
        }
    }
    n1 += pairs(run_x);
    n3 += pairs(run_xy);
    // Merge sort on y counts the exchanges (discordant pairs) of the x-ordered sequence.
    let mut ys: Vec<f64> = idx.iter().map(|&i| y[i]).collect();
    let mut buf = vec![0.0; n];
    let swaps = merge_count(&mut ys, &mut buf);
    let mut n2 = 0u64;
    let mut run = 1u64;
    for w in ys.windows(2) {
        if w[0] == w[1] {
            run += 1;
        } else {
            n2 += pairs(run);
            run = 1;
        }
    }
    n2 += pairs(run);
    let n0 = pairs(n as u64);
    let (dx, dy) = ((n0 - n1) as f64, (n0 - n2) as f64);
    if dx <= 0.0 || dy <= 0.0 {
        return None;
    }
    let s = n0 as f64 - n1 as f64 - n2 as f64 + n3 as f64 - 2.0 * swaps as f64;
    Some(s / (dx * dy).sqrt())
}

/// Sorts `v` ascending and returns the number of inversions (strictly greater before smaller).
fn merge_count(v: &mut [f64], buf: &mut [f64]) -> u64 {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut c =
        merge_count(&mut v[..mid], &mut buf[..mid]) + merge_count(&mut v[mid..], &mut buf[mid..]);
    let (mut i, mut j, mut k) = (0, mid, 0);
    while i < mid && j < n {
        if v[j] < v[i] {
            buf[k] = v[j];
            c += (mid - i) as u64;
            j += 1;
        } else {
            buf[k] = v[i];
            i += 1;
        }
        k += 1;
    }
    buf[k..k + mid - i].copy_from_slice(&v[i..mid]);
    let k2 = k + mid - i;
    buf[k2..n].copy_from_slice(&v[j..n]);
    v.copy_from_slice(&buf[..n]);
    c
}

/// A statistic with a bootstrap confidence interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Estimate {
    /// The statistic on the full sample.
    pub value: f64,
    /// Lower end of the 95 % percentile interval.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// `stat` on `(x, y)` with a 95 % percentile bootstrap interval over `rounds` resamples drawn
/// from a SplitMix64 stream seeded by `seed`.
pub fn bootstrap(
    x: &[f64],
    y: &[f64],
    rounds: usize,
    seed: u64,
    stat: impl Fn(&[f64], &[f64]) -> Option<f64>,
) -> Option<Estimate> {
    let value = stat(x, y)?;
    let n = x.len();
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    };
    let mut vals = Vec::with_capacity(rounds);
    let (mut bx, mut by) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..rounds {
        for i in 0..n {
            let j = (next() % n as u64) as usize;
            bx[i] = x[j];
            by[i] = y[j];
        }
        if let Some(v) = stat(&bx, &by) {
            vals.push(v);
        }
    }
    if vals.is_empty() {
        return Some(Estimate {
            value,
            low: value,
            high: value,
        });
    }
    vals.sort_by(f64::total_cmp);
    let q = |p: f64| vals[((p * (vals.len() - 1) as f64).round() as usize).min(vals.len() - 1)];
    Some(Estimate {
        value,
        low: q(0.025),
        high: q(0.975),
    })
}

/// Ranks with ties averaged (1-based).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        for &p in &idx[i..=j] {
            r[p] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (None for fewer than 3 points or a constant input).
pub fn spearman_rho(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() < 3 || a.len() != b.len() {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// How well `score` (higher = more suspicious) flags the positives.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Detection {
    /// Positives (non-robust samples).
    pub positives: usize,
    /// Negatives.
    pub negatives: usize,
    /// Area under the ROC curve (ties count one half).
    pub auroc: Option<f64>,
    /// Area under the precision-recall curve by the trapezoidal rule over the curve's points,
    /// starting at (recall 0, precision 1): sklearn's `auc(recall, precision)`, the figure the
    /// margin-consistency paper reports.
    pub aupr: Option<f64>,
    /// Average precision (the step-wise area, sklearn's `average_precision_score`).
    pub average_precision: Option<f64>,
    /// False-positive rate at the smallest threshold reaching 95 % true-positive rate.
    pub fpr_at_95_tpr: Option<f64>,
}

/// Detection figures of `score` for the labels `positive`.
pub fn detection(score: &[f64], positive: &[bool]) -> Detection {
    let p = positive.iter().filter(|&&b| b).count();
    let n = positive.len() - p;
    if p == 0 || n == 0 {
        return Detection {
            positives: p,
            negatives: n,
            auroc: None,
            aupr: None,
            average_precision: None,
            fpr_at_95_tpr: None,
        };
    }
    let counts = sweep(score, positive);
    // AUROC as the trapezoidal area under the ROC points (one per tie group): the Mann–Whitney
    // statistic with ties counted one half.
    // Twice the area in units of one (positive, negative) pair, counted exactly.
    let mut area2 = 0u64;
    let (mut ap, mut trap) = (0.0, 0.0);
    let (mut last_tp, mut last_fp, mut last_precision) = (0usize, 0usize, 1.0);
    let mut fpr95 = None;
    for &(tp, fp) in &counts {
        area2 += ((fp - last_fp) * (tp + last_tp)) as u64;
        let precision = tp as f64 / (tp + fp) as f64;
        let d_recall = (tp - last_tp) as f64 / p as f64;
        ap += d_recall * precision;
        trap += d_recall * 0.5 * (precision + last_precision);
        (last_tp, last_fp, last_precision) = (tp, fp, precision);
        if fpr95.is_none() && tp as f64 >= 0.95 * p as f64 {
            fpr95 = Some(fp as f64 / n as f64);
        }
    }
    Detection {
        positives: p,
        negatives: n,
        auroc: Some(area2 as f64 / (2 * p * n) as f64),
        aupr: Some(trap),
        average_precision: Some(ap),
        fpr_at_95_tpr: fpr95,
    }
}

/// Cumulative (true, false) positives when the threshold sweeps from the highest score down,
/// one entry per group of tied scores.
fn sweep(score: &[f64], positive: &[bool]) -> Vec<(usize, usize)> {
    let mut idx: Vec<usize> = (0..score.len()).collect();
    idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut out = Vec::new();
    for (k, &q) in idx.iter().enumerate() {
        if positive[q] {
            tp += 1;
        } else {
            fp += 1;
        }
        if idx.get(k + 1).is_none_or(|&next| score[next] != score[q]) {
            out.push((tp, fp));
        }
    }
    out
}

/// The ROC curve of `score` (higher = more suspicious): `(false-positive rate, true-positive
/// rate)` from (0, 0) to (1, 1), one point per distinct score. Empty without both classes.
pub fn roc_curve(score: &[f64], positive: &[bool]) -> Vec<[f64; 2]> {
    let p = positive.iter().filter(|&&b| b).count();
    let n = positive.len() - p;
    if p == 0 || n == 0 {
        return Vec::new();
    }
    std::iter::once([0.0, 0.0])
        .chain(
            sweep(score, positive)
                .into_iter()
                .map(|(tp, fp)| [fp as f64 / n as f64, tp as f64 / p as f64]),
        )
        .collect()
}

/// The largest threshold `t` such that flagging `score ≥ t` catches at least `recall` of the
/// positives (the value to deploy for a chosen recall).
pub fn threshold_for_recall(score: &[f64], positive: &[bool], recall: f64) -> Option<f64> {
    let mut pos: Vec<f64> = score
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(s, _)| *s)
        .collect();
    if pos.is_empty() {
        return None;
    }
    pos.sort_by(|a, b| b.total_cmp(a));
    let need = ((recall * pos.len() as f64).ceil() as usize).clamp(1, pos.len());
    Some(pos[need - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// O(n²) definition of τ-b, for comparison.
    fn naive_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
        let n = x.len();
        let (mut c, mut d, mut tx, mut ty) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for i in 0..n {
            for j in i + 1..n {
                let (a, b) = (
                    (x[i] - x[j]).signum() * (x[i] != x[j]) as u8 as f64,
                    (y[i] - y[j]).signum() * (y[i] != y[j]) as u8 as f64,
                );
                if a == 0.0 && b == 0.0 {
                } else if a == 0.0 {
                    tx += 1.0;
                } else if b == 0.0 {
                    ty += 1.0;
                } else if a == b {
                    c += 1.0;
                } else {
                    d += 1.0;
                }
            }
        }
        let den = ((c + d + tx) * (c + d + ty)).sqrt();
        (den > 0.0).then(|| (c - d) / den)
    }

    #[test]
    fn kendall_matches_the_quadratic_definition_with_ties() {
        let mut s = 1u64;
        for n in [2usize, 3, 7, 50, 200] {
            let mut r = || {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) % 7) as f64
            };
            let x: Vec<f64> = (0..n).map(|_| r()).collect();
            let y: Vec<f64> = (0..n).map(|_| r()).collect();
            match (kendall_tau_b(&x, &y), naive_tau_b(&x, &y)) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-12, "n={n}: {a} vs {b}"),
                (a, b) => assert_eq!(a.is_some(), b.is_some(), "n={n}"),
            }
        }
        assert_eq!(kendall_tau_b(&[1.0, 2.0, 3.0], &[2.0, 4.0, 8.0]), Some(1.0));
        assert_eq!(
            kendall_tau_b(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]),
            Some(-1.0)
        );
        assert_eq!(kendall_tau_b(&[1.0, 1.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn auroc_equals_the_pairwise_definition_with_ties() {
        let mut s = 5u64;
        let mut r = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s >> 33
        };
        let score: Vec<f64> = (0..300).map(|_| (r() % 13) as f64).collect();
        let pos: Vec<bool> = (0..300).map(|_| r() % 3 == 0).collect();
        let (mut num, mut den) = (0.0, 0.0);
        for i in (0..300).filter(|&i| pos[i]) {
            for j in (0..300).filter(|&j| !pos[j]) {
                den += 1.0;
                num += if score[i] > score[j] {
                    1.0
                } else if score[i] == score[j] {
                    0.5
                } else {
                    0.0
                };
            }
        }
        let got = detection(&score, &pos).auroc.unwrap();
        assert!((got - num / den).abs() < 1e-12, "{got} vs {}", num / den);
    }

    #[test]
    fn detection_on_hand_cases() {
        // Perfect separation.
        let d = detection(&[0.9, 0.8, 0.2, 0.1], &[true, true, false, false]);
        assert_eq!(
            (d.auroc, d.aupr, d.fpr_at_95_tpr),
            (Some(1.0), Some(1.0), Some(0.0))
        );
        // Reversed.
        let d = detection(&[0.1, 0.2, 0.8, 0.9], &[true, true, false, false]);
        assert_eq!(d.auroc, Some(0.0));
        assert_eq!(d.fpr_at_95_tpr, Some(1.0));
        // One tie across classes: AUROC = (1 + 0.5) / 2; AP = (1/2)·1 + (1/2)·(2/3).
        let d = detection(&[0.9, 0.5, 0.5], &[true, true, false]);
        assert_eq!(d.auroc, Some(0.75));
        assert!((d.average_precision.unwrap() - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
        // Trapezoids through (0, 1), (1/2, 1), (1, 2/3): 1/2 + 1/2·(1 + 2/3)/2.
        assert!((d.aupr.unwrap() - (0.5 + 5.0 / 12.0)).abs() < 1e-12);
        let roc = roc_curve(&[0.9, 0.5, 0.5], &[true, true, false]);
        assert_eq!(roc, vec![[0.0, 0.0], [0.0, 0.5], [1.0, 1.0]]);
        assert_eq!(detection(&[1.0], &[true]).auroc, None);
        assert_eq!(
            threshold_for_recall(&[0.9, 0.7, 0.3, 0.2], &[true, true, true, false], 0.6),
            Some(0.7)
        );
    }

    #[test]
    fn bootstrap_interval_brackets_the_value_and_is_seeded() {
        let x: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let y: Vec<f64> = x.iter().map(|v| v + ((v * 7.0) % 13.0)).collect();
        let a = bootstrap(&x, &y, 200, 3, kendall_tau_b).unwrap();
        let b = bootstrap(&x, &y, 200, 3, kendall_tau_b).unwrap();
        assert_eq!(a, b);
        assert!(a.low <= a.value && a.value <= a.high && a.high <= 1.0);
    }
}
