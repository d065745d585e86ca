//! Per-feature standardisation `x' = (x − mean) / std`, fitted on training data and stored with
//! the model, because logit vectors differ in scale from one classifier to the next.

use crate::error::{check_finite, check_len, Error, Result};

/// Per-feature mean and standard deviation (population, ddof 0, as scikit-learn's
/// `StandardScaler`). A feature with zero spread gets std 1 so it maps to 0 instead of NaN.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Standardizer {
    /// Fits mean and std on `n` rows of `features` columns (row-major), accumulating in f64.
    pub fn fit(x: &[f32], n: usize, features: usize) -> Result<Self> {
        check_len("input", x, n, features)?;
        check_finite("input", x)?;
        if n == 0 || features == 0 {
            return Err(Error::Param {
                name: "n",
                reason: "cannot fit a standardizer on no data".into(),
            });
        }
        let mut sum = vec![0f64; features];
        for row in x.chunks_exact(features) {
            sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
        let mut sq = vec![0f64; features];
        for row in x.chunks_exact(features) {
            for ((s, &v), m) in sq.iter_mut().zip(row).zip(&mean) {
                *s += (v as f64 - m).powi(2);
            }
        }
        let std = sq
            .iter()
            .map(|s| {
                let sd = (s / n as f64).sqrt() as f32;
                if sd > 0.0 && sd.is_finite() {
                    sd
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Standardizer {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        })
    }

    /// Builds one from known statistics; every std must be positive and finite.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        if mean.len() != std.len() || mean.is_empty() {
            return Err(Error::Param {
                name: "std",
                reason: format!("{} means and {} stds", mean.len(), std.len()),
            });
        }
        check_finite("mean", &mean)?;
        if let Some(i) = std.iter().position(|&s| !(s > 0.0 && s.is_finite())) {
            return Err(Error::Param {
                name: "std",
                reason: format!("std[{i}] = {} is not positive and finite", std[i]),
            });
        }
        Ok(Standardizer { mean, std })
    }

    /// Per-feature means.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Per-feature standard deviations.
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// Number of features.
    pub fn features(&self) -> usize {
        self.mean.len()
    }

    /// `out = (x − mean) / std` row by row; `x` and `out` have the same length, a multiple of
    /// the feature count (checked by the callers).
    pub(crate) fn apply_into(&self, x: &[f32], out: &mut [f32]) {
        let f = self.features();
        for (o, r) in out.chunks_exact_mut(f).zip(x.chunks_exact(f)) {
            for j in 0..f {
                o[j] = (r[j] - self.mean[j]) / self.std[j];
            }
        }
    }

    /// Standardises `n` rows.
    pub fn apply(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        check_len("input", x, n, self.features())?;
        let mut out = vec![0.0; x.len()];
        self.apply_into(x, &mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardized_columns_have_zero_mean_unit_std() {
        // Columns: 1,2,3,4 (mean 2.5, std √1.25) and a constant 7 (std → 1).
        let x = [1.0, 7.0, 2.0, 7.0, 3.0, 7.0, 4.0, 7.0];
        let s = Standardizer::fit(&x, 4, 2).unwrap();
        assert_eq!(s.mean(), &[2.5, 7.0]);
        assert!((s.std()[0] - 1.25f32.sqrt()).abs() < 1e-6);
        assert_eq!(s.std()[1], 1.0);
        let y = s.apply(&x, 4).unwrap();
        assert!((y[0] + 1.5 / 1.25f32.sqrt()).abs() < 1e-6);
        assert_eq!(y[1], 0.0);
    }

    #[test]
    fn bad_shapes_and_stds_are_errors() {
        assert!(matches!(
            Standardizer::fit(&[1.0, 2.0, 3.0], 2, 2),
            Err(Error::Shape { .. })
        ));
        assert!(Standardizer::new(vec![0.0], vec![0.0]).is_err());
        assert!(Standardizer::new(vec![0.0, 1.0], vec![1.0]).is_err());
    }
}
