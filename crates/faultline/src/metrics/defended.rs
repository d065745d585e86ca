//! A model `F` against its defended version `F^D` on the same clean samples — Guo et al. (AISafety),
//! methods.md §3.4:
//!
//! - **cav** = `Acc(F^D) − Acc(F)` (= crr − csr).
//! - **crr** = `#{F wrong ∧ F^D right} / N` (rectified).
//! - **csr** = `#{F right ∧ F^D wrong} / N` (sacrificed).
//! - **ccv** = mean over samples both classify correctly of `|P(x)_y − P^D(x)_y|` — the platform's
//!   documented definition; its code instead uses the adversarial outputs of samples both models
//!   misclassify, which we do not follow.
//! - **cos** = mean over the same samples of the Jensen–Shannon divergence (natural log) between
//!   `P(x)` and `P^D(x)`.

use super::behaviour::{argmax64, softmax};

/// Streaming counters of the defended-vs-undefended metrics.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Defended {
    n: u64,
    right: u64,
    right_d: u64,
    rectified: u64,
    sacrificed: u64,
    both: u64,
    ccv: f64,
    cos: f64,
}

/// What [`Defended`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct DefendedFigures {
    /// Classification accuracy variance `Acc(F^D) − Acc(F)`.
    pub cav: f64,
    /// Classification rectify ratio.
    pub crr: f64,
    /// Classification sacrifice ratio.
    pub csr: f64,
    /// Classification confidence variance (None when no sample is right for both).
    pub ccv: Option<f64>,
    /// Classification output stability (None when no sample is right for both).
    pub cos: Option<f64>,
}

/// Jensen–Shannon divergence (natural log) of two distributions.
pub fn js_divergence(p: &[f64], q: &[f64]) -> f64 {
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(&x, _)| x > 0.0)
            .map(|(&x, &y)| x * (x / y).ln())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| 0.5 * (a + b)).collect();
    0.5 * kl(p, &m) + 0.5 * kl(q, &m)
}

impl Defended {
    /// Adds one clean sample: its label and the logits of `F` and of `F^D`.
    pub fn add(&mut self, label: usize, z: &[f32], zd: &[f32]) {
        self.n += 1;
        let (p, pd) = (softmax(z), softmax(zd));
        let (r, rd) = (argmax64(&p) == label, argmax64(&pd) == label);
        self.right += r as u64;
        self.right_d += rd as u64;
        self.rectified += (!r && rd) as u64;
        self.sacrificed += (r && !rd) as u64;
        if r && rd {
            self.both += 1;
            self.ccv += (p[label] - pd[label]).abs();
            self.cos += js_divergence(&p, &pd);
        }
    }

    /// The figures (None before any sample).
    pub fn figures(&self) -> Option<DefendedFigures> {
        if self.n == 0 {
            return None;
        }
        let n = self.n as f64;
        let both = |v: f64| (self.both > 0).then(|| v / self.both as f64);
        Some(DefendedFigures {
            cav: (self.right_d as f64 - self.right as f64) / n,
            crr: self.rectified as f64 / n,
            csr: self.sacrificed as f64 / n,
            ccv: both(self.ccv),
            cos: both(self.cos),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_class_pairs_by_hand() {
        let mut d = Defended::default();
        // Both right: P_y = σ(2) vs σ(1).
        d.add(0, &[2.0, 0.0], &[1.0, 0.0]);
        // F wrong, F^D right: rectified.
        d.add(1, &[1.0, 0.0], &[0.0, 1.0]);
        // F right, F^D wrong: sacrificed.
        d.add(0, &[1.0, 0.0], &[0.0, 1.0]);
        // Both wrong.
        d.add(0, &[0.0, 1.0], &[0.0, 1.0]);
        let f = d.figures().unwrap();
        assert_eq!((f.crr, f.csr, f.cav), (0.25, 0.25, 0.0));
        let s = |m: f64| 1.0 / (1.0 + (-m).exp());
        assert!((f.ccv.unwrap() - (s(2.0) - s(1.0))).abs() < 1e-12);
        // JS of Bernoulli(a) and Bernoulli(b), written out.
        let (a, b) = (s(2.0), s(1.0));
        let m = 0.5 * (a + b);
        let h = |p: f64, q: f64| p * (p / q).ln() + (1.0 - p) * ((1.0 - p) / (1.0 - q)).ln();
        assert!((f.cos.unwrap() - 0.5 * (h(a, m) + h(b, m))).abs() < 1e-12);
    }

    #[test]
    fn js_is_zero_for_equal_and_ln2_for_disjoint() {
        assert!(js_divergence(&[0.3, 0.7], &[0.3, 0.7]).abs() < 1e-15);
        assert!((js_divergence(&[1.0, 0.0], &[0.0, 1.0]) - 2f64.ln()).abs() < 1e-12);
    }
}
