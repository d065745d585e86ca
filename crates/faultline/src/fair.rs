//! Class-aware adversarial fine-tuning from a class-wise run (methods.md §2.5, after FAIR-TAT,
//! Medi et al., and the re-weighting of FRL, Xu et al., ICML 2021 "To be robust or to be fair"):
//! the per-class robust accuracy `acc_c` of a `classwise` run's attack condition (its first ε)
//! sets either
//! - **weights** of the adversarial cross-entropy, `w_c = λ + (1 − λ) · e_c / ē` with
//!   `e_c = 1 − acc_c` the class's robust error and `ē` their mean (mean weight 1; a class at the
//!   mean error keeps weight 1, the most vulnerable ones weigh more; λ = 0.5 [U], the floor
//!   that keeps robust classes learning — methods.md gives no re-weighting rule, FRL updates
//!   weights from the same error signal), or
//! - **per-class radii**, FAIR-TAT's class-adaptive ε ("G-rob"): `ε_c = (λ + acc_c) · ε`,
//!   λ = 0.5 (methods.md §2.5): classes that are already robust train at larger radii, the
//!   vulnerable ones at smaller, reachable ones.
//!
//! Classes without samples in the run count at the mean.

use std::path::Path;

use serde::Serialize;

use crate::error::{io, Error, Result};

/// λ of both rules.
pub const LAMBDA: f64 = 0.5;

/// The per-class robust accuracy of a class-wise run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassRobustness {
    /// The attack condition read (`pgd linf 2/255`).
    pub condition: String,
    /// Robust accuracy per class (None: no sample).
    pub accuracy: Vec<Option<f64>>,
    /// CFPS per class under it.
    pub cfps: Option<Vec<f64>>,
}

impl ClassRobustness {
    /// Reads the first attack condition of a `classwise` run directory's `run.json`.
    pub fn from_run(dir: &Path) -> Result<Self> {
        let p = dir.join("run.json");
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        let bad = |why: &str| Error::RunDir {
            path: p.clone(),
            why: why.into(),
        };
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|_| bad("not a run record"))?;
        if v["command"].as_str().is_some_and(|c| c != "classwise") {
            return Err(bad("not a classwise run"));
        }
        let r = v["classwise"]
            .as_array()
            .and_then(|a| a.get(1))
            .filter(|r| r["condition"].as_str().is_some_and(|c| !c.contains(" s")))
            .ok_or_else(|| {
                bad("the classwise run has no attack condition (run it with --attack)")
            })?;
        let accuracy = r["class_accuracy"]
            .as_array()
            .ok_or_else(|| bad("no class_accuracy"))?
            .iter()
            .map(|a| a.as_f64())
            .collect();
        let cfps = r["cfps"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect());
        Ok(ClassRobustness {
            condition: r["condition"].as_str().unwrap_or_default().into(),
            accuracy,
            cfps,
        })
    }

    /// The accuracies with missing classes at the mean of the others.
    fn filled(&self) -> Vec<f64> {
        let known: Vec<f64> = self.accuracy.iter().flatten().copied().collect();
        let mean = known.iter().sum::<f64>() / known.len().max(1) as f64;
        self.accuracy.iter().map(|a| a.unwrap_or(mean)).collect()
    }

    /// Loss weights `λ + (1 − λ) e_c / ē` (all 1 when no class has a robust error).
    pub fn weights(&self) -> Vec<f32> {
        let err: Vec<f64> = self.filled().iter().map(|a| 1.0 - a).collect();
        let mean = err.iter().sum::<f64>() / err.len().max(1) as f64;
        err.iter()
            .map(|e| {
                if mean > 0.0 {
                    (LAMBDA + (1.0 - LAMBDA) * e / mean) as f32
                } else {
                    1.0
                }
            })
            .collect()
    }

    /// Radius factors `λ + acc_c` (ε_c = factor · ε).
    pub fn eps_factors(&self) -> Vec<f32> {
        self.filled().iter().map(|a| (LAMBDA + a) as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_and_radii_follow_the_formulas() {
        let r = ClassRobustness {
            condition: "pgd".into(),
            accuracy: vec![Some(0.5), Some(0.9), Some(0.1), None],
            cfps: None,
        };
        // Accuracies filled: 0.5, 0.9, 0.1, 0.5; errors 0.5, 0.1, 0.9, 0.5 (mean 0.5).
        let w = r.weights();
        let want = [1.0, 0.5 + 0.5 * 0.2, 0.5 + 0.5 * 1.8, 1.0];
        for (a, b) in w.iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-6, "{w:?}");
        }
        assert!((w.iter().sum::<f32>() / 4.0 - 1.0).abs() < 1e-6);
        let f = r.eps_factors();
        let want = [1.0, 1.4, 0.6, 1.0];
        for (a, b) in f.iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-6, "{f:?}");
        }
        let all_robust = ClassRobustness {
            accuracy: vec![Some(1.0); 3],
            ..r
        };
        assert_eq!(all_robust.weights(), vec![1.0; 3]);
    }
}
