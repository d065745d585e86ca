//! Per-sample scalar objectives over the logits and their gradients with respect to the
//! logits (the seed of the backward pass). Samples are independent (inference-mode models),
//! so the input gradient of the summed objective holds each sample's own gradient.

use crate::error::{Error, Result};

/// A per-sample scalar function of the logits `z` (K classes).
#[derive(Debug, Clone, Copy)]
pub enum Loss<'a> {
    /// Cross-entropy `−log softmax(z)_y`.
    CrossEntropy {
        /// True labels, one per sample.
        labels: &'a [usize],
    },
    /// Difference of logits ratio (Croce & Hein 2020, untargeted):
    /// `−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 1e−12)`, π the logits sorted descending.
    Dlr {
        /// True labels.
        labels: &'a [usize],
    },
    /// Logit margin `z_y − max_{j≠y} z_j` (positive when correctly classified).
    Margin {
        /// True labels.
        labels: &'a [usize],
    },
    /// `Σ_k w_k z_k` with one weight row per sample (`N·K` weights): any logit combination,
    /// e.g. a Jacobian row `z_j − z_y`.
    Weights(&'a [f32]),
}

/// Index of the largest logit other than `y`.
pub fn runner_up(z: &[f32], y: usize) -> usize {
    let mut best = usize::MAX;
    for (j, &v) in z.iter().enumerate() {
        if j != y && (best == usize::MAX || v > z[best]) {
            best = j;
        }
    }
    best
}

impl Loss<'_> {
    /// The same loss on samples `r` only (per-sample losses never mix samples).
    pub(crate) fn samples(&self, r: std::ops::Range<usize>, k: usize) -> Loss<'_> {
        match self {
            Loss::CrossEntropy { labels } => Loss::CrossEntropy { labels: &labels[r] },
            Loss::Dlr { labels } => Loss::Dlr { labels: &labels[r] },
            Loss::Margin { labels } => Loss::Margin { labels: &labels[r] },
            Loss::Weights(w) => Loss::Weights(&w[r.start * k..r.end * k]),
        }
    }

    /// Whether the loss fits `logits` logits of `k` classes: the weights' or labels' count, the
    /// labels' range, and enough classes for DLR.
    pub(crate) fn check(&self, logits: usize, k: usize) -> Result<()> {
        let n = logits / k.max(1);
        let labels = match self {
            Loss::Weights(w) => {
                if w.len() != logits {
                    return Err(Error::Input(format!(
                        "{} logit weights for {logits} logits",
                        w.len()
                    )));
                }
                return Ok(());
            }
            Loss::CrossEntropy { labels } | Loss::Dlr { labels } | Loss::Margin { labels } => {
                *labels
            }
        };
        if labels.len() != n {
            return Err(Error::Input(format!(
                "{} labels for {n} samples",
                labels.len()
            )));
        }
        if let Some((i, &y)) = labels.iter().enumerate().find(|(_, &y)| y >= k) {
            return Err(Error::Input(format!(
                "label {y} of sample {i} is out of range for {k} classes"
            )));
        }
        if matches!(self, Loss::Dlr { .. }) && k < 3 {
            return Err(Error::Input("the DLR loss needs at least 3 classes".into()));
        }
        Ok(())
    }

    /// Values (one per sample) and `∂value/∂z` (N·K) for logits `z` (N·K).
    pub fn evaluate(&self, z: &[f32], k: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        self.check(z.len(), k)?;
        let n = z.len() / k.max(1);
        let mut vals = Vec::with_capacity(n);
        let mut seed = vec![0.0f32; z.len()];
        let labels = match self {
            Loss::Weights(w) => {
                for (row, wr) in z.chunks(k).zip(w.chunks(k)) {
                    vals.push(row.iter().zip(wr).map(|(a, b)| a * b).sum());
                }
                seed.copy_from_slice(w);
                return Ok((vals, seed));
            }
            Loss::CrossEntropy { labels } | Loss::Dlr { labels } | Loss::Margin { labels } => {
                *labels
            }
        };
        for (i, (row, s)) in z.chunks(k).zip(seed.chunks_mut(k)).enumerate() {
            let y = labels[i];
            match self {
                Loss::CrossEntropy { .. } => {
                    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let sum: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
                    let lse = m as f64 + sum.ln();
                    vals.push((lse - row[y] as f64) as f32);
                    for (j, sj) in s.iter_mut().enumerate() {
                        *sj = ((row[j] as f64 - lse).exp() - (j == y) as u8 as f64) as f32;
                    }
                }
                Loss::Margin { .. } => {
                    let r = runner_up(row, y);
                    vals.push(row[y] - row[r]);
                    s[y] = 1.0;
                    s[r] = -1.0;
                }
                Loss::Dlr { .. } => {
                    let mut order: Vec<usize> = (0..k).collect();
                    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                    let (p1, p3) = (order[0], order[2]);
                    let r = runner_up(row, y);
                    let u = row[y] - row[r];
                    let d = row[p1] - row[p3] + 1e-12;
                    vals.push(-u / d);
                    s[y] += -1.0 / d;
                    s[r] += 1.0 / d;
                    s[p1] += u / (d * d);
                    s[p3] -= u / (d * d);
                }
                Loss::Weights(_) => unreachable!(),
            }
        }
        Ok((vals, seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central finite differences of each loss against its analytic seed.
    #[test]
    fn seeds_match_finite_differences() {
        let z = [0.3f32, -1.2, 2.5, 0.9, 1.7, -0.4];
        let labels = [3usize];
        let w = [0.5f32, -1.0, 0.0, 2.0, 0.1, 0.3];
        for loss in [
            Loss::CrossEntropy { labels: &labels },
            Loss::Dlr { labels: &labels },
            Loss::Margin { labels: &labels },
            Loss::Weights(&w),
        ] {
            let (_, seed) = loss.evaluate(&z, 6).unwrap();
            for j in 0..6 {
                let h = 1e-3f32;
                let mut a = z;
                a[j] += h;
                let mut b = z;
                b[j] -= h;
                let fd = (loss.evaluate(&a, 6).unwrap().0[0] - loss.evaluate(&b, 6).unwrap().0[0])
                    / (2.0 * h);
                assert!(
                    (fd - seed[j]).abs() < 2e-3,
                    "{loss:?} logit {j}: fd {fd} vs {}",
                    seed[j]
                );
            }
        }
    }

    #[test]
    fn label_out_of_range_is_an_error() {
        let err = Loss::Margin { labels: &[7] }
            .evaluate(&[0.0; 5], 5)
            .unwrap_err();
        assert!(err.to_string().contains("label 7 of sample 0"));
    }
}
