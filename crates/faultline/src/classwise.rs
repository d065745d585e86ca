//! Class-wise robustness (Medi, Grabinski & Keuper, *Towards Class-wise Robustness Analysis*,
//! arXiv 2411.19853; counters as in the same authors' FAIR-TAT code): for predictions `ŷ` on
//! clean, attacked or corrupted inputs with labels `y` over K classes,
//! `TP_c = #{y = c, ŷ = c}`, `FP_c = #{ŷ = c, y ≠ c}`, `FN_c = #{y = c, ŷ ≠ c}`, `M = #{ŷ ≠ y}`,
//! class accuracy `TP_c / N_c`, `CFPS_c = FP_c / M` (the share of all errors that land in `c`),
//! `CFNS_c = FN_c / M`. With no errors CFPS and CFNS are undefined (`None`), never NaN. For
//! targeted attacks the same counters are taken against the target label. Also: the latent
//! structure of the penultimate features per class (centroids, distances, cosines, spread) and
//! its correlation with the confusion and CFPS.

use serde::Serialize;

use crate::metrics::confusion;
use crate::stats::spearman_rho as spearman;

/// Class-wise figures for one condition (clean, an attack at ε, a corruption at a severity).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClasswiseReport {
    /// Condition name, e.g. `clean`, `pgd linf 2/255`, `fog s3`.
    pub condition: String,
    /// Samples.
    pub n: usize,
    /// Overall accuracy.
    pub accuracy: f64,
    /// Total misclassifications M.
    pub errors: u64,
    /// TP_c / N_c per class (None for a class without samples).
    pub class_accuracy: Vec<Option<f64>>,
    /// FP_c / M (None when M = 0).
    pub cfps: Option<Vec<f64>>,
    /// FN_c / M (None when M = 0).
    pub cfns: Option<Vec<f64>>,
    /// Rows: true class, columns: predicted class.
    pub confusion: Vec<Vec<u64>>,
    /// The class with the lowest accuracy and that accuracy.
    pub worst_class: Option<(usize, f64)>,
    /// Best minus worst class accuracy.
    pub accuracy_range: Option<f64>,
    /// Standard deviation of the class accuracies.
    pub accuracy_std: Option<f64>,
    /// Share of samples whose prediction differs from the clean prediction (None for clean).
    pub flip_rate: Option<f64>,
}

/// Class-wise figures from `(label, prediction)` pairs over `k` classes; `clean` gives the clean
/// predictions of the same samples (in the same order) for the flip rate.
pub fn classwise(
    condition: &str,
    pairs: &[(usize, usize)],
    k: usize,
    clean: Option<&[usize]>,
) -> ClasswiseReport {
    let conf = confusion(pairs.iter().copied(), k);
    let n = pairs.len();
    let tp: Vec<u64> = (0..k).map(|c| conf[c][c]).collect();
    let nc: Vec<u64> = conf.iter().map(|r| r.iter().sum()).collect();
    let fp: Vec<u64> = (0..k)
        .map(|c| (0..k).filter(|&r| r != c).map(|r| conf[r][c]).sum())
        .collect();
    let fnc: Vec<u64> = (0..k).map(|c| nc[c] - tp[c]).collect();
    let m: u64 = fp.iter().sum();
    let class_accuracy: Vec<Option<f64>> = (0..k)
        .map(|c| (nc[c] > 0).then(|| tp[c] as f64 / nc[c] as f64))
        .collect();
    let present: Vec<(usize, f64)> = class_accuracy
        .iter()
        .enumerate()
        .filter_map(|(c, a)| a.map(|a| (c, a)))
        .collect();
    let worst_class = present.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
    let best = present
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let mean = present.iter().map(|p| p.1).sum::<f64>() / present.len().max(1) as f64;
    let std = (present.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>()
        / present.len().max(1) as f64)
        .sqrt();
    let share = |v: &[u64]| (m > 0).then(|| v.iter().map(|&x| x as f64 / m as f64).collect());
    ClasswiseReport {
        condition: condition.to_string(),
        n,
        accuracy: if n > 0 {
            tp.iter().sum::<u64>() as f64 / n as f64
        } else {
            0.0
        },
        errors: m,
        class_accuracy,
        cfps: share(&fp),
        cfns: share(&fnc),
        confusion: conf,
        worst_class,
        accuracy_range: worst_class.map(|w| best - w.1),
        accuracy_std: (!present.is_empty()).then_some(std),
        flip_rate: clean.map(|c| {
            let flips = pairs.iter().zip(c).filter(|((_, p), c)| p != *c).count();
            flips as f64 / n.max(1) as f64
        }),
    }
}

/// Targeted attacks toward one class: how easily it is reached.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetReport {
    /// Target class.
    pub target: usize,
    /// Samples of other classes attacked toward it.
    pub attacked: usize,
    /// Fraction whose prediction became the target.
    pub success_rate: f64,
    /// Fraction not classified as their true label any more (reached the target or not).
    pub misclassified_rate: f64,
}

/// Latent-space structure of the penultimate features.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatentReport {
    /// Feature dimension.
    pub dim: usize,
    /// Samples per class used.
    pub counts: Vec<usize>,
    /// Euclidean distances between class centroids.
    pub centroid_distance: Vec<Vec<f64>>,
    /// Cosine similarities between class centroids.
    pub centroid_cosine: Vec<Vec<f64>>,
    /// Mean distance of a class's samples to their centroid.
    pub intra: Vec<f64>,
    /// Mean distance of a class's centroid to the other centroids.
    pub inter: Vec<f64>,
    /// intra / inter per class (high: the class is diffuse relative to its separation).
    pub intra_inter_ratio: Vec<f64>,
    /// Spearman correlation between centroid distance and confusion over class pairs
    /// (expected negative: close classes are confused more).
    pub distance_vs_confusion: Option<f64>,
    /// Spearman correlation between a class's mean distance to the others and its CFPS.
    pub inter_vs_cfps: Option<f64>,
    /// 2-D PCA coordinates of the centroids.
    pub pca_centroids: Vec<[f64; 2]>,
}

/// Latent structure from `features` (n × dim, row-major) with `labels`, against the confusion
/// matrix and CFPS of some condition.
pub fn latent(
    features: &[f32],
    dim: usize,
    labels: &[usize],
    k: usize,
    conf: &[Vec<u64>],
    cfps: Option<&[f64]>,
) -> LatentReport {
    let mut sum = vec![vec![0.0f64; dim]; k];
    let mut counts = vec![0usize; k];
    for (row, &y) in features.chunks(dim).zip(labels) {
        if y < k {
            counts[y] += 1;
            for (s, v) in sum[y].iter_mut().zip(row) {
                *s += *v as f64;
            }
        }
    }
    let cent: Vec<Vec<f64>> = sum
        .iter()
        .zip(&counts)
        .map(|(s, &c)| s.iter().map(|v| v / c.max(1) as f64).collect())
        .collect();
    let dist = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let centroid_distance: Vec<Vec<f64>> = (0..k)
        .map(|i| (0..k).map(|j| dist(&cent[i], &cent[j])).collect())
        .collect();
    let centroid_cosine: Vec<Vec<f64>> = (0..k)
        .map(|i| {
            (0..k)
                .map(|j| {
                    let d: f64 = cent[i].iter().zip(&cent[j]).map(|(x, y)| x * y).sum();
                    let (ni, nj) = (
                        dist(&cent[i], &vec![0.0; dim]),
                        dist(&cent[j], &vec![0.0; dim]),
                    );
                    if ni > 0.0 && nj > 0.0 {
                        d / (ni * nj)
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let mut intra = vec![0.0f64; k];
    for (row, &y) in features.chunks(dim).zip(labels) {
        if y < k {
            let r: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            intra[y] += dist(&r, &cent[y]);
        }
    }
    for (v, &c) in intra.iter_mut().zip(&counts) {
        *v /= c.max(1) as f64;
    }
    let inter: Vec<f64> = (0..k)
        .map(|i| {
            (0..k)
                .filter(|&j| j != i)
                .map(|j| centroid_distance[i][j])
                .sum::<f64>()
                / (k - 1).max(1) as f64
        })
        .collect();
    let intra_inter_ratio = intra
        .iter()
        .zip(&inter)
        .map(|(a, b)| if *b > 0.0 { a / b } else { 0.0 })
        .collect();
    let (mut dv, mut cv) = (Vec::new(), Vec::new());
    for i in 0..k {
        for j in 0..k {
            if i != j && i < conf.len() && j < conf.len() {
                dv.push(centroid_distance[i][j]);
                cv.push((conf[i][j] + conf[j][i]) as f64);
            }
        }
    }
    LatentReport {
        dim,
        counts,
        distance_vs_confusion: spearman(&dv, &cv),
        inter_vs_cfps: cfps.and_then(|c| spearman(&inter, c)),
        pca_centroids: pca2(&cent),
        centroid_distance,
        centroid_cosine,
        intra,
        inter,
        intra_inter_ratio,
    }
}

/// Projects points onto their first two principal components (power iteration with deflation
/// on the covariance; deterministic start vector).
pub fn pca2(points: &[Vec<f64>]) -> Vec<[f64; 2]> {
    let n = points.len();
    let d = points.first().map_or(0, |p| p.len());
    if n == 0 || d == 0 {
        return vec![[0.0, 0.0]; n];
    }
    let mean: Vec<f64> = (0..d)
        .map(|j| points.iter().map(|p| p[j]).sum::<f64>() / n as f64)
        .collect();
    let c: Vec<Vec<f64>> = points
        .iter()
        .map(|p| p.iter().zip(&mean).map(|(a, m)| a - m).collect())
        .collect();
    let cov = |v: &[f64]| -> Vec<f64> {
        // (Cᵀ C) v without forming the d × d matrix.
        let cv: Vec<f64> = c
            .iter()
            .map(|r| r.iter().zip(v).map(|(a, b)| a * b).sum())
            .collect();
        (0..d)
            .map(|j| c.iter().zip(&cv).map(|(r, s)| r[j] * s).sum())
            .collect()
    };
    let mut comps: Vec<Vec<f64>> = Vec::new();
    for _ in 0..2 {
        let deflate = |w: &mut Vec<f64>, comps: &[Vec<f64>]| {
            for u in comps {
                let dot: f64 = w.iter().zip(u).map(|(a, b)| a * b).sum();
                w.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
            }
        };
        let mut v: Vec<f64> = (0..d).map(|j| 1.0 + (j % 7) as f64 * 0.1).collect();
        deflate(&mut v, &comps);
        let scale = c.iter().flatten().map(|a| a * a).sum::<f64>().max(1e-300);
        for _ in 0..200 {
            let mut w = cov(&v);
            deflate(&mut w, &comps);
            let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
            // No variance left in the remaining directions: the component is zero.
            if norm <= 1e-12 * scale {
                v = vec![0.0; d];
                break;
            }
            v = w.iter().map(|a| a / norm).collect();
        }
        comps.push(v);
    }
    c.iter()
        .map(|r| {
            let p = |u: &[f64]| r.iter().zip(u).map(|(a, b)| a * b).sum::<f64>();
            [p(&comps[0]), p(&comps[1])]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counted by hand: labels/predictions over 3 classes, unbalanced (class 0 has 4 samples,
    /// class 1 has 2, class 2 has 1).
    #[test]
    fn counters_match_a_hand_computed_confusion_matrix() {
        let pairs = [(0, 0), (0, 0), (0, 1), (0, 2), (1, 1), (1, 0), (2, 1)];
        let r = classwise("t", &pairs, 3, Some(&[0, 0, 0, 0, 1, 1, 2]));
        assert_eq!(
            r.confusion,
            vec![vec![2, 1, 1], vec![1, 1, 0], vec![0, 1, 0]]
        );
        assert_eq!(r.errors, 4);
        // FP: class 0 ← (1,0) = 1; class 1 ← (0,1),(2,1) = 2; class 2 ← (0,2) = 1.
        assert_eq!(r.cfps, Some(vec![0.25, 0.5, 0.25]));
        // FN: class 0: 2, class 1: 1, class 2: 1.
        assert_eq!(r.cfns, Some(vec![0.5, 0.25, 0.25]));
        assert_eq!(r.class_accuracy, vec![Some(0.5), Some(0.5), Some(0.0)]);
        assert_eq!(r.worst_class, Some((2, 0.0)));
        assert_eq!(r.accuracy_range, Some(0.5));
        assert!((r.accuracy - 3.0 / 7.0).abs() < 1e-12);
        // Predictions that differ from the clean ones: samples 2, 3, 5, 6.
        assert_eq!(r.flip_rate, Some(4.0 / 7.0));
        assert!((r.cfps.unwrap().iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn no_errors_means_undefined_scores_not_nan() {
        let r = classwise("clean", &[(0, 0), (1, 1)], 3, None);
        assert_eq!(r.cfps, None);
        assert_eq!(r.cfns, None);
        assert_eq!(r.class_accuracy[2], None);
        assert_eq!(r.flip_rate, None);
    }

    #[test]
    fn spearman_and_pca_on_known_cases() {
        assert_eq!(
            spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]),
            Some(1.0)
        );
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[3.0, 2.0, 1.0]), None);
        // Points on a line in 3-D: the first component carries everything.
        let pts: Vec<Vec<f64>> = (0..5)
            .map(|i| vec![i as f64, 2.0 * i as f64, 0.0])
            .collect();
        let p = pca2(&pts);
        assert!(p.iter().all(|q| q[1].abs() < 1e-6), "{p:?}");
        assert!((p[4][0] - p[0][0]).abs() - (4.0f64 * 5.0f64.sqrt()) < 1e-9);
    }

    #[test]
    fn latent_structure_of_separated_clusters() {
        // Two tight clusters around (0,0) and (10,0), one around (0,1) close to the first.
        let feats = [
            0.0f32, 0.0, 0.2, 0.0, 10.0, 0.0, 10.2, 0.0, 0.0, 1.0, 0.2, 1.0,
        ];
        let labels = [0, 0, 1, 1, 2, 2];
        let conf = vec![vec![2, 0, 3], vec![0, 2, 0], vec![3, 0, 2]];
        let l = latent(&feats, 2, &labels, 3, &conf, Some(&[0.5, 0.0, 0.5]));
        assert!(
            (l.centroid_distance[0][1] - 10.0).abs() < 1e-6,
            "{:?}",
            l.centroid_distance
        );
        assert!((l.centroid_distance[0][2] - 1.0).abs() < 1e-9);
        assert!((l.intra[0] - 0.1).abs() < 1e-6);
        // Closer pairs are confused more: a negative correlation.
        assert!(l.distance_vs_confusion.unwrap() < 0.0);
    }
}
