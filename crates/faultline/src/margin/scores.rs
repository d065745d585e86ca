//! Scores computed from one clean forward pass, each meant to order samples like their input
//! margin (higher = farther from the boundary):
//! - logit margin `m(x) = z_(1) − z_(2)` (top-1 minus top-2 logit);
//! - probability margin `p_(1) − p_(2)` of the softmax;
//! - maximum softmax probability `p_(1)`;
//! - feature-space margin `min_{j≠i} (z_i − z_j)/‖w_i − w_j‖_q` with `i` the predicted class, `w`
//!   the rows of the final affine layer and `q` the dual of the threat norm (L1 for L∞, L2 for
//!   L2, L∞ for L1): the exact distance of the penultimate features to the nearest linear boundary (the
//!   notebook's "output dist", methods.md §5.2). Equal to the logit margin up to a constant when
//!   all `‖w_i − w_j‖` are equal (the equidistance assumption).

use faultline_attacks::Norm;
use faultline_engine::LinearHead;
use serde::{Deserialize, Serialize};

/// The score names, in report order.
pub const SCORES: [&str; 4] = ["logit_margin", "prob_margin", "max_prob", "feature_margin"];

/// Dual norms `‖w_i − w_j‖_q` of the final layer's row differences (K × K, symmetric).
#[derive(Debug, Clone, PartialEq)]
pub struct RowGaps {
    k: usize,
    gaps: Vec<f64>,
}

impl RowGaps {
    /// The dual norms of the row differences of `head` for the threat norm `norm`.
    pub fn new(head: &LinearHead, norm: Norm) -> Self {
        let (k, d) = (head.classes, head.dim);
        let mut gaps = vec![0.0; k * k];
        for i in 0..k {
            for j in i + 1..k {
                let diff =
                    (0..d).map(|c| head.weight[i * d + c] as f64 - head.weight[j * d + c] as f64);
                let g = match norm {
                    Norm::Linf => diff.map(f64::abs).sum::<f64>(),
                    Norm::L2 => diff.map(|v| v * v).sum::<f64>().sqrt(),
                    Norm::L1 => diff.map(f64::abs).fold(0.0, f64::max),
                };
                gaps[i * k + j] = g;
                gaps[j * k + i] = g;
            }
        }
        RowGaps { k, gaps }
    }
    /// `‖w_i − w_j‖_q`.
    pub fn gap(&self, i: usize, j: usize) -> f64 {
        self.gaps[i * self.k + j]
    }
    /// Smallest and largest gap over pairs `i < j` (equal under equidistance).
    pub fn range(&self) -> (f64, f64) {
        let mut r = (f64::INFINITY, 0.0f64);
        for i in 0..self.k {
            for j in i + 1..self.k {
                r = (r.0.min(self.gap(i, j)), r.1.max(self.gap(i, j)));
            }
        }
        r
    }
}

/// The scores of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// `z_(1) − z_(2)`.
    pub logit_margin: f32,
    /// `p_(1) − p_(2)`.
    pub prob_margin: f32,
    /// `p_(1)`.
    pub max_prob: f32,
    /// `min_{j≠i} (z_i − z_j)/‖w_i − w_j‖_q`; None without a final affine layer.
    pub feature_margin: Option<f32>,
}

impl Scores {
    /// The scores of one logit row; `gaps` enables the feature-space margin.
    pub fn of(z: &[f32], gaps: Option<&RowGaps>) -> Scores {
        let (mut i1, mut i2) = (0usize, usize::MAX);
        for j in 1..z.len() {
            if z[j] > z[i1] {
                i2 = i1;
                i1 = j;
            } else if i2 == usize::MAX || z[j] > z[i2] {
                i2 = j;
            }
        }
        if z.len() < 2 {
            return Scores {
                logit_margin: f32::INFINITY,
                prob_margin: 1.0,
                max_prob: 1.0,
                feature_margin: None,
            };
        }
        let zmax = z[i1] as f64;
        let sum: f64 = z.iter().map(|&v| (v as f64 - zmax).exp()).sum();
        let p = |j: usize| ((z[j] as f64 - zmax).exp() / sum) as f32;
        let feature_margin = gaps.map(|g| {
            (0..z.len())
                .filter(|&j| j != i1)
                .map(|j| (z[i1] as f64 - z[j] as f64) / g.gap(i1, j).max(1e-30))
                .fold(f64::INFINITY, f64::min) as f32
        });
        Scores {
            logit_margin: z[i1] - z[i2],
            prob_margin: p(i1) - p(i2),
            max_prob: p(i1),
            feature_margin,
        }
    }
    /// The score called `name` (one of [`SCORES`]).
    pub fn get(&self, name: &str) -> Option<f32> {
        match name {
            "logit_margin" => Some(self.logit_margin),
            "prob_margin" => Some(self.prob_margin),
            "max_prob" => Some(self.max_prob),
            "feature_margin" => self.feature_margin,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_of_a_hand_row() {
        let head = LinearHead {
            classes: 3,
            dim: 2,
            weight: vec![1.0, 0.0, 0.0, 2.0, -1.0, -1.0],
            bias: vec![0.0; 3],
        };
        let g = RowGaps::new(&head, Norm::Linf);
        assert_eq!((g.gap(0, 1), g.gap(0, 2), g.gap(1, 2)), (3.0, 3.0, 4.0));
        let s = Scores::of(&[2.0, 0.5, -1.0], Some(&g));
        assert_eq!(s.logit_margin, 1.5);
        // min(1.5/3, 3/3)
        assert!((s.feature_margin.unwrap() - 0.5).abs() < 1e-7);
        let e: Vec<f64> = [2.0f64, 0.5, -1.0].iter().map(|v| v.exp()).collect();
        let t: f64 = e.iter().sum();
        assert!((s.max_prob as f64 - e[0] / t).abs() < 1e-6);
        assert!((s.prob_margin as f64 - (e[0] - e[1]) / t).abs() < 1e-6);
        let l2 = RowGaps::new(&head, Norm::L2);
        assert!((l2.gap(1, 2) - 10f64.sqrt()).abs() < 1e-12);
        assert_eq!(Scores::of(&[0.0, 1.0], None).logit_margin, 1.0);
    }
}
