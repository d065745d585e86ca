//! Training losses with their gradients with respect to the network's outputs.
//!
//! Both return the loss value (accumulated in f64) and write `dL/d(output)`, so any training
//! loop can pass the gradient straight to [`crate::Mlp::backward`].

use serde::{Deserialize, Serialize};

use crate::activation::sigmoid;
use crate::error::{Error, Result};

/// Which loss [`crate::fit`] minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Mean squared error over every output value of the batch (PyTorch `MSELoss()`).
    #[default]
    Mse,
    /// Pairwise ranking loss `BCE(σ(s_a − s_b), 1[t_a > t_b])` over the pairs
    /// [`flip_pairs`] forms in each (shuffled) batch; pairs with `t_a = t_b` are skipped.
    /// Needs one output.
    Ranking,
}

/// `L = mean((pred − target)²)`; writes `dL/dpred = 2 (pred − target) / len` into `grad`.
pub fn mse(pred: &[f32], target: &[f32], grad: &mut [f32]) -> Result<f64> {
    if pred.len() != target.len() || grad.len() != pred.len() {
        return Err(Error::Param {
            name: "target",
            reason: format!(
                "mse over {} predictions, {} targets and {} gradients",
                pred.len(),
                target.len(),
                grad.len()
            ),
        });
    }
    if pred.is_empty() {
        return Ok(0.0);
    }
    let scale = 2.0 / pred.len() as f32;
    let mut sum = 0f64;
    for ((g, &p), &t) in grad.iter_mut().zip(pred).zip(target) {
        let d = p - t;
        sum += (d as f64) * (d as f64);
        *g = scale * d;
    }
    Ok(sum / pred.len() as f64)
}

/// The pairs of positions `(k, len − 1 − k)` for `k < len / 2`: each position meets its mirror
/// image, as in the notebook's `sigmoid(s − s.flip(0))` over a shuffled batch. Applied to a
/// batch whose order is a seeded shuffle, this is a seeded random matching; each unordered pair
/// appears once (the notebook counts it in both orders, which only doubles the loss).
pub fn flip_pairs(len: usize) -> Vec<(usize, usize)> {
    (0..len / 2).map(|k| (k, len - 1 - k)).collect()
}

/// Pairwise ranking loss over `pairs` of positions into `scores`/`target`:
/// `L = mean over pairs with t_a ≠ t_b of BCE(σ(s_a − s_b), y)`, `y = 1[t_a > t_b]`,
/// computed stably as `softplus(d) − y·d` with `d = s_a − s_b`. Writes `dL/ds` into `grad`
/// (`∂/∂s_a = (σ(d) − y)/P`, `∂/∂s_b = −(σ(d) − y)/P`) and returns `(L, P)`, `P` the number of
/// pairs used; with no usable pair, `L = 0` and the gradient is zero.
pub fn ranking(
    scores: &[f32],
    target: &[f32],
    pairs: &[(usize, usize)],
    grad: &mut [f32],
) -> Result<(f64, usize)> {
    let len = scores.len();
    if target.len() != len || grad.len() != len {
        return Err(Error::Param {
            name: "target",
            reason: format!(
                "ranking over {len} scores, {} targets and {} gradients",
                target.len(),
                grad.len()
            ),
        });
    }
    if let Some(&(a, b)) = pairs.iter().find(|&&(a, b)| a >= len || b >= len) {
        return Err(Error::Param {
            name: "pairs",
            reason: format!("pair ({a}, {b}) outside {len} scores"),
        });
    }
    grad.fill(0.0);
    let used = pairs
        .iter()
        .filter(|&&(a, b)| target[a] != target[b])
        .count();
    if used == 0 {
        return Ok((0.0, 0));
    }
    let inv = 1.0 / used as f32;
    let mut sum = 0f64;
    for &(a, b) in pairs {
        if target[a] == target[b] {
            continue;
        }
        let y = if target[a] > target[b] { 1.0f32 } else { 0.0 };
        let d = scores[a] - scores[b];
        let dd = d as f64;
        sum += dd.max(0.0) - dd * y as f64 + (-dd.abs()).exp().ln_1p();
        let g = (sigmoid(d) - y) * inv;
        grad[a] += g;
        grad[b] -= g;
    }
    Ok((sum / used as f64, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mse_hand_values() {
        // diffs 1, −2 → L = (1 + 4)/2 = 2.5, dL/dp = 2·diff/2 = diff.
        let mut g = [0.0; 2];
        let l = mse(&[1.0, 0.0], &[0.0, 2.0], &mut g).unwrap();
        assert_eq!(l, 2.5);
        assert_eq!(g, [1.0, -2.0]);
        assert!(mse(&[1.0], &[0.0, 1.0], &mut g).is_err());
    }

    #[test]
    fn ranking_hand_values_and_ties_skipped() {
        // Pair (0,3): d = 0.5 − 0.2 = 0.3, t0 > t3 → y = 1, ℓ = ln(1 + e^(−0.3)).
        // Pair (1,2): tie in t → skipped.
        let s = [0.5, 0.9, 0.1, 0.2];
        let t = [2.0, 1.0, 1.0, 0.0];
        let pairs = flip_pairs(4);
        assert_eq!(pairs, vec![(0, 3), (1, 2)]);
        let mut g = [0.0; 4];
        let (l, p) = ranking(&s, &t, &pairs, &mut g).unwrap();
        assert_eq!(p, 1);
        let want = (1.0f64 + (-0.3f64).exp()).ln();
        assert!((l - want).abs() < 1e-6, "{l} vs {want}");
        let gs = 1.0 / (1.0 + 0.3f32.exp()); // σ(d) − 1 = −σ(−d)
        assert!((g[0] + gs).abs() < 1e-6 && (g[3] - gs).abs() < 1e-6);
        assert_eq!((g[1], g[2]), (0.0, 0.0));
    }

    #[test]
    fn ranking_is_stable_for_large_differences_and_checks_pairs() {
        let mut g = [0.0; 2];
        let (l, _) = ranking(&[-100.0, 100.0], &[1.0, 0.0], &[(0, 1)], &mut g).unwrap();
        assert!((l - 200.0).abs() < 1e-9);
        assert!(ranking(&[0.0, 0.0], &[1.0, 0.0], &[(0, 2)], &mut g).is_err());
        let (l, p) = ranking(&[0.0, 1.0], &[1.0, 1.0], &[(0, 1)], &mut g).unwrap();
        assert_eq!((l, p, g), (0.0, 0, [0.0, 0.0]));
    }
}
