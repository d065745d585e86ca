//! Latent shift (methods.md §2, the class-wise literature's explanation of CFPS): where a
//! perturbation moves the penultimate features of each class, measured against the class
//! centroids `C_j` of the clean features (mean feature of the samples labelled `j`).
//!
//! For a sample with clean features `f`, perturbed features `g` and label `c`:
//! - shift `‖g − f‖₂` (and relative to `‖f‖₂`);
//! - distance `‖f − C_j‖₂` and cosine `cos(f, C_j)` to every centroid, before and after;
//! - direction `cos(g − f, C_j − f)`: how squarely the move heads toward centroid `j` (samples
//!   that do not move are left out of it);
//! - Voronoi crossing: the clean features lie in cell `c` (nearest centroid `c`) and the
//!   perturbed ones in another cell.
//!
//! Each is averaged over the samples of a class. Per destination class `j`, the **inflow** is
//! the share of all samples that crossed from their own cell into cell `j`; its Spearman
//! correlation with the CFPS of the same perturbation over the classes says whether the classes
//! that attract errors are the ones the features move into. Likewise the **pull** of class `j`,
//! the mean direction cosine toward `C_j` of the samples of the other classes.

use serde::Serialize;

use crate::stats::spearman_rho;

/// The latent shift of one class's samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassShift {
    /// Class index.
    pub class: usize,
    /// Samples of the class.
    pub n: usize,
    /// Mean `‖g − f‖₂`.
    pub mean_shift: f64,
    /// Mean `‖g − f‖₂ / ‖f‖₂`.
    pub relative_shift: f64,
    /// Mean distance to each centroid before the perturbation.
    pub distance_before: Vec<f64>,
    /// The same after.
    pub distance_after: Vec<f64>,
    /// Mean cosine with each centroid before.
    pub cosine_before: Vec<f64>,
    /// The same after.
    pub cosine_after: Vec<f64>,
    /// Mean `cos(g − f, C_j − f)` over the samples that moved (None: none moved).
    pub toward: Vec<Option<f64>>,
    /// The other class whose centroid the moves head toward most (largest `toward`).
    pub toward_class: Option<usize>,
    /// Share of the class's samples in their own cell before whose perturbed features lie in
    /// another cell (None: none in their own cell).
    pub crossed: Option<f64>,
    /// How many crossed into each cell.
    pub crossed_to: Vec<usize>,
}

/// The latent shift under one perturbation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShiftReport {
    /// The perturbation (`pgd linf 8/255`, `fog s3`).
    pub condition: String,
    /// Samples compared.
    pub n: usize,
    /// Mean `‖g − f‖₂` over all samples.
    pub mean_shift: f64,
    /// Share of the samples in their own cell before that end in another.
    pub crossed: Option<f64>,
    /// Per class.
    pub classes: Vec<ClassShift>,
    /// Per destination class: share of all samples that crossed into its cell.
    pub inflow: Vec<f64>,
    /// Per class `j`: mean `cos(g − f, C_j − f)` over the moving samples of the other classes.
    pub pull: Vec<Option<f64>>,
    /// CFPS per class under the same perturbation.
    pub cfps: Option<Vec<f64>>,
    /// Spearman ρ over the classes between inflow and CFPS.
    pub inflow_vs_cfps: Option<f64>,
    /// Spearman ρ over the classes between pull and CFPS.
    pub pull_vs_cfps: Option<f64>,
}

fn dist(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn norm(a: impl Iterator<Item = f64>) -> f64 {
    a.map(|v| v * v).sum::<f64>().sqrt()
}

/// Cosine of two vectors given as iterators of equal length (None when one is zero).
fn cosine(a: &[f64], b: &[f64]) -> Option<f64> {
    let (na, nb) = (norm(a.iter().copied()), norm(b.iter().copied()));
    (na > 0.0 && nb > 0.0).then(|| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (na * nb))
}

/// Class centroids of `features` (n × dim) by `labels` (classes without samples: zero).
pub fn centroids(features: &[f32], dim: usize, labels: &[usize], k: usize) -> Vec<Vec<f64>> {
    let mut sum = vec![vec![0.0f64; dim]; k];
    let mut counts = vec![0usize; k];
    for (row, &y) in features.chunks(dim.max(1)).zip(labels) {
        if y < k {
            counts[y] += 1;
            for (s, v) in sum[y].iter_mut().zip(row) {
                *s += *v as f64;
            }
        }
    }
    sum.into_iter()
        .zip(counts)
        .map(|(s, c)| s.into_iter().map(|v| v / c.max(1) as f64).collect())
        .collect()
}

/// The nearest of the `cent` centroids present (`present[j]`: class `j` has samples).
fn cell(f: &[f32], cent: &[Vec<f64>], present: &[bool]) -> usize {
    (0..cent.len())
        .filter(|&j| present[j])
        .min_by(|&a, &b| dist(f, &cent[a]).total_cmp(&dist(f, &cent[b])))
        .unwrap_or(0)
}

/// The latent shift from `clean` to `perturbed` features (both n × dim, row i the same sample)
/// with `labels`, against centroids of the clean features; `cfps` of the same perturbation.
pub fn latent_shift(
    condition: &str,
    clean: &[f32],
    perturbed: &[f32],
    dim: usize,
    labels: &[usize],
    k: usize,
    cfps: Option<&[f64]>,
) -> ShiftReport {
    let cent = centroids(clean, dim, labels, k);
    let mut present = vec![false; k];
    for &y in labels.iter().filter(|&&y| y < k) {
        present[y] = true;
    }
    let n = labels.len().min(clean.len() / dim.max(1));
    let mut classes = Vec::with_capacity(k);
    // Per destination j: sums of toward-cosines from samples of other classes.
    let mut pull = vec![(0.0f64, 0usize); k];
    let mut inflow = vec![0usize; k];
    let (mut shift_all, mut own_all, mut crossed_all) = (0.0f64, 0usize, 0usize);
    for c in 0..k {
        let rows: Vec<usize> = (0..n).filter(|&i| labels[i] == c).collect();
        let mut s = ClassShift {
            class: c,
            n: rows.len(),
            mean_shift: 0.0,
            relative_shift: 0.0,
            distance_before: vec![0.0; k],
            distance_after: vec![0.0; k],
            cosine_before: vec![0.0; k],
            cosine_after: vec![0.0; k],
            toward: vec![None; k],
            toward_class: None,
            crossed: None,
            crossed_to: vec![0; k],
        };
        let mut toward = vec![(0.0f64, 0usize); k];
        let (mut own, mut crossed) = (0usize, 0usize);
        for &i in &rows {
            let f = &clean[i * dim..(i + 1) * dim];
            let g = &perturbed[i * dim..(i + 1) * dim];
            let fd: Vec<f64> = f.iter().map(|&v| v as f64).collect();
            let gd: Vec<f64> = g.iter().map(|&v| v as f64).collect();
            let delta: Vec<f64> = gd.iter().zip(&fd).map(|(a, b)| a - b).collect();
            let shift = norm(delta.iter().copied());
            s.mean_shift += shift;
            s.relative_shift += shift / norm(fd.iter().copied()).max(1e-30);
            for j in 0..k {
                s.distance_before[j] += dist(f, &cent[j]);
                s.distance_after[j] += dist(g, &cent[j]);
                s.cosine_before[j] += cosine(&fd, &cent[j]).unwrap_or(0.0);
                s.cosine_after[j] += cosine(&gd, &cent[j]).unwrap_or(0.0);
                let to: Vec<f64> = cent[j].iter().zip(&fd).map(|(a, b)| a - b).collect();
                if let Some(cs) = cosine(&delta, &to) {
                    toward[j].0 += cs;
                    toward[j].1 += 1;
                    if j != c {
                        pull[j].0 += cs;
                        pull[j].1 += 1;
                    }
                }
            }
            if cell(f, &cent, &present) == c {
                own += 1;
                let to = cell(g, &cent, &present);
                if to != c {
                    crossed += 1;
                    s.crossed_to[to] += 1;
                    inflow[to] += 1;
                }
            }
        }
        let m = rows.len().max(1) as f64;
        shift_all += s.mean_shift;
        s.mean_shift /= m;
        s.relative_shift /= m;
        for v in s
            .distance_before
            .iter_mut()
            .chain(s.distance_after.iter_mut())
            .chain(s.cosine_before.iter_mut())
            .chain(s.cosine_after.iter_mut())
        {
            *v /= m;
        }
        s.toward = toward
            .iter()
            .map(|&(sum, cnt)| (cnt > 0).then(|| sum / cnt as f64))
            .collect();
        s.toward_class = (0..k)
            .filter(|&j| j != c)
            .filter_map(|j| s.toward[j].map(|v| (j, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(j, _)| j);
        s.crossed = (own > 0).then(|| crossed as f64 / own as f64);
        own_all += own;
        crossed_all += crossed;
        classes.push(s);
    }
    let inflow: Vec<f64> = inflow.iter().map(|&v| v as f64 / n.max(1) as f64).collect();
    let pull: Vec<Option<f64>> = pull
        .iter()
        .map(|&(sum, cnt)| (cnt > 0).then(|| sum / cnt as f64))
        .collect();
    let pull_f: Vec<f64> = pull.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
    let corr = |x: &[f64]| {
        cfps.and_then(|c| {
            let (a, b): (Vec<f64>, Vec<f64>) = x
                .iter()
                .zip(c)
                .filter(|(a, b)| a.is_finite() && b.is_finite())
                .map(|(a, b)| (*a, *b))
                .unzip();
            spearman_rho(&a, &b)
        })
    };
    ShiftReport {
        condition: condition.into(),
        n,
        mean_shift: shift_all / n.max(1) as f64,
        crossed: (own_all > 0).then(|| crossed_all as f64 / own_all as f64),
        inflow_vs_cfps: corr(&inflow),
        pull_vs_cfps: corr(&pull_f),
        classes,
        inflow,
        pull,
        cfps: cfps.map(<[f64]>::to_vec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class 0 at (−1, 0) and (1, 0) (centroid (0, 0)), class 1 at (9, 0) and (11, 0)
    /// (centroid (10, 0)); the perturbation moves (1, 0) to (6, 0), into class 1's cell.
    #[test]
    fn constructed_features_give_the_hand_computed_shift() {
        let clean = [-1.0, 0.0, 1.0, 0.0, 9.0, 0.0, 11.0, 0.0];
        let pert = [-1.0, 0.0, 6.0, 0.0, 9.0, 0.0, 11.0, 0.0];
        let labels = [0, 0, 1, 1];
        let r = latent_shift("t", &clean, &pert, 2, &labels, 2, Some(&[0.0, 1.0]));
        let c0 = &r.classes[0];
        assert_eq!(c0.n, 2);
        assert!((c0.mean_shift - 2.5).abs() < 1e-12);
        // ‖(5, 0)‖ / ‖(1, 0)‖ = 5, and 0 for the other: mean 2.5.
        assert!((c0.relative_shift - 2.5).abs() < 1e-12);
        assert_eq!(c0.distance_before, vec![1.0, 10.0]);
        assert_eq!(c0.distance_after, vec![3.5, 7.5]);
        // cos((−1,0),(0,0)) is undefined (zero centroid) → 0; toward C1 = (10, 0): −1 and 1.
        assert_eq!(c0.cosine_before, vec![0.0, 0.0]);
        assert_eq!(c0.cosine_after, vec![0.0, 0.0]);
        // Only the moved sample counts: (5, 0) against C0 − f = (−1, 0) and C1 − f = (9, 0).
        assert_eq!(c0.toward, vec![Some(-1.0), Some(1.0)]);
        assert_eq!(c0.toward_class, Some(1));
        assert_eq!(c0.crossed, Some(0.5));
        assert_eq!(c0.crossed_to, vec![0, 1]);
        let c1 = &r.classes[1];
        assert_eq!(c1.mean_shift, 0.0);
        assert_eq!(c1.toward, vec![None, None]);
        assert_eq!(c1.crossed, Some(0.0));
        assert!((c1.cosine_before[1] - 1.0).abs() < 1e-12);
        assert_eq!(r.inflow, vec![0.0, 0.25]);
        assert_eq!(r.pull, vec![None, Some(1.0)]);
        assert_eq!(r.crossed, Some(0.25));
        assert!((r.mean_shift - 1.25).abs() < 1e-12);
        assert_eq!(r.inflow_vs_cfps, spearman_rho(&[0.0, 0.25], &[0.0, 1.0]));
    }

    #[test]
    fn no_movement_means_no_shift_and_no_crossing() {
        let f = [0.0, 1.0, 2.0, 3.0, 5.0, 5.0];
        let r = latent_shift("none", &f, &f, 2, &[0, 1, 1], 2, None);
        assert_eq!(r.mean_shift, 0.0);
        assert_eq!(r.crossed, Some(0.0));
        assert!(r
            .classes
            .iter()
            .all(|c| c.toward.iter().all(Option::is_none)));
        assert_eq!(r.inflow_vs_cfps, None);
    }
}
