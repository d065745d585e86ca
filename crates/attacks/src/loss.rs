//! The objectives attacks ascend: untargeted or targeted cross-entropy, DLR (Croce & Hein 2020)
//! and the logit margin; their per-sample values and their input gradients.

use faultline_engine::{Loss, Model};
use serde::{Deserialize, Serialize};

use crate::attack::Goal;
use crate::{Error, Result};

/// The loss an attack ascends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AttackLoss {
    /// Cross-entropy (untargeted: raise CE of the label; targeted: lower CE of the target).
    #[default]
    Ce,
    /// Difference of logits ratio (Croce & Hein 2020); targeted:
    /// `−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e−12)`.
    Dlr,
    /// Logit margin (untargeted: lower `z_y − max_{j≠y} z_j`; targeted: raise `z_t − max_{j≠t} z_j`).
    Margin,
}

impl std::str::FromStr for AttackLoss {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "ce" => Ok(AttackLoss::Ce),
            "dlr" => Ok(AttackLoss::Dlr),
            "margin" => Ok(AttackLoss::Margin),
            o => Err(format!("unknown loss '{o}': use ce, dlr or margin")),
        }
    }
}

/// Logits and the input gradient of the objective to *maximize* on a batch: one forward and one
/// backward pass.
pub fn objective_grad(
    model: &Model,
    x: &[f32],
    loss: AttackLoss,
    goal: Goal,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let k = model.num_classes();
    let (sign, engine_loss): (f32, Option<Loss>) = match (loss, goal.targets) {
        (AttackLoss::Ce, None) => (
            1.0,
            Some(Loss::CrossEntropy {
                labels: goal.labels,
            }),
        ),
        (AttackLoss::Ce, Some(t)) => (-1.0, Some(Loss::CrossEntropy { labels: t })),
        (AttackLoss::Margin, None) => (
            -1.0,
            Some(Loss::Margin {
                labels: goal.labels,
            }),
        ),
        (AttackLoss::Margin, Some(t)) => (1.0, Some(Loss::Margin { labels: t })),
        (AttackLoss::Dlr, None) => (
            1.0,
            Some(Loss::Dlr {
                labels: goal.labels,
            }),
        ),
        (AttackLoss::Dlr, Some(_)) => (1.0, None),
    };
    let (z, mut g) = match engine_loss {
        // One pass per chunk, forward then backward (see `Model::loss_grad`).
        Some(l) => {
            let r = model.loss_grad(x, &l)?;
            (r.logits, r.grad)
        }
        None => {
            let f = model.forward(x)?;
            let z = f.logits().to_vec();
            let t = goal.targets.unwrap_or_default();
            if k < 4 {
                return Err(Error::Invalid(
                    "the targeted DLR loss needs at least 4 classes".into(),
                ));
            }
            let mut w = vec![0.0f32; z.len()];
            for (i, (row, wr)) in z.chunks(k).zip(w.chunks_mut(k)).enumerate() {
                let (y, tt) = (goal.labels[i], t[i]);
                let mut order: Vec<usize> = (0..k).collect();
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                let (p1, p3, p4) = (order[0], order[2], order[3]);
                let u = row[y] - row[tt];
                let d = row[p1] - 0.5 * (row[p3] + row[p4]) + 1e-12;
                // L = −u/d: ∂L/∂z_y = −1/d, ∂L/∂z_t = 1/d, ∂L/∂d = u/d².
                wr[y] -= 1.0 / d;
                wr[tt] += 1.0 / d;
                wr[p1] += u / (d * d);
                wr[p3] -= 0.5 * u / (d * d);
                wr[p4] -= 0.5 * u / (d * d);
            }
            let g = f.input_grad(&w)?;
            (z, g)
        }
    };
    if sign < 0.0 {
        g.iter_mut().for_each(|v| *v = -*v);
    }
    Ok((z, g))
}

/// Per-sample value of the loss ascended (the objective whose gradient `objective_grad` gives).
pub fn loss_value(z: &[f32], y: usize, t: Option<usize>, loss: AttackLoss) -> f32 {
    let k = z.len();
    let max_except = |c: usize| {
        (0..k)
            .filter(|&j| j != c)
            .map(|j| z[j])
            .fold(f32::NEG_INFINITY, f32::max)
    };
    let lse = || {
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        m as f64 + z.iter().map(|&v| ((v - m) as f64).exp()).sum::<f64>().ln()
    };
    let mut s: Vec<f32> = z.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    match (loss, t) {
        (AttackLoss::Ce, None) => (lse() - z[y] as f64) as f32,
        (AttackLoss::Ce, Some(t)) => -((lse() - z[t] as f64) as f32),
        (AttackLoss::Dlr, None) => -(z[y] - max_except(y)) / (s[0] - s[2] + 1e-12),
        (AttackLoss::Dlr, Some(t)) => -(z[y] - z[t]) / (s[0] - 0.5 * (s[2] + s[3]) + 1e-12),
        (AttackLoss::Margin, None) => -(z[y] - max_except(y)),
        (AttackLoss::Margin, Some(t)) => z[t] - max_except(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_values_match_their_definitions() {
        let z = [3.0f32, 1.0, 2.0, 0.0, -1.0];
        // DLR: −(z_y − max_{j≠y})/(π1 − π3).
        assert!((loss_value(&z, 0, None, AttackLoss::Dlr) + 1.0 / 2.0).abs() < 1e-6);
        // Targeted DLR: −(z_y − z_t)/(π1 − (π3 + π4)/2).
        let want = -(3.0 - 1.0) / (3.0 - 0.5 * (1.0 + 0.0));
        assert!((loss_value(&z, 0, Some(1), AttackLoss::Dlr) - want).abs() < 1e-6);
        let lse = z.iter().map(|v| (*v as f64).exp()).sum::<f64>().ln();
        assert!((loss_value(&z, 2, None, AttackLoss::Ce) as f64 - (lse - 2.0)).abs() < 1e-5);
    }
}
