//! Threat models: the norm of the perturbation, projection onto `B_p(x0, ε) ∩ [0, 1]^d`, the
//! steepest-ascent direction for a gradient, random starts, and per-sample norms.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The norm that measures a perturbation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// max_i |δ_i|
    Linf,
    /// (Σ δ_i²)^½
    L2,
}

impl Norm {
    /// `linf` or `l2`.
    pub fn name(self) -> &'static str {
        match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
        }
    }
    /// ‖v‖ in this norm.
    pub fn of(self, v: impl Iterator<Item = f32>) -> f32 {
        match self {
            Norm::Linf => v.fold(0.0f32, |m, x| m.max(x.abs())),
            Norm::L2 => v.map(|x| (x as f64) * (x as f64)).sum::<f64>().sqrt() as f32,
        }
    }
    /// The dual norm of `v` (L1 for L∞, L2 for L2): the denominator of a linear distance.
    pub fn dual_of(self, v: impl Iterator<Item = f32>) -> f32 {
        match self {
            Norm::Linf => v.map(|x| x.abs() as f64).sum::<f64>() as f32,
            Norm::L2 => Norm::L2.of(v),
        }
    }
    /// ‖a − b‖ in this norm.
    pub fn dist(self, a: &[f32], b: &[f32]) -> f32 {
        self.of(a.iter().zip(b).map(|(x, y)| x - y))
    }
}

impl std::str::FromStr for Norm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "linf" | "inf" | "l-inf" => Ok(Norm::Linf),
            "l2" | "2" => Ok(Norm::L2),
            o => Err(format!("unknown norm '{o}': use linf or l2")),
        }
    }
}

/// Moves `x` by `step` along the steepest-ascent direction of `grad` for the norm:
/// `sign(g)` (L∞) or `g / (‖g‖₂ + 1e−10)` (L2, torchattacks' `eps_for_division`).
pub fn ascend(norm: Norm, x: &mut [f32], grad: &[f32], step: f32) {
    match norm {
        Norm::Linf => {
            for (v, g) in x.iter_mut().zip(grad) {
                // sign(0) = 0, as torch.sign.
                *v += step
                    * if *g > 0.0 {
                        1.0
                    } else if *g < 0.0 {
                        -1.0
                    } else {
                        0.0
                    };
            }
        }
        Norm::L2 => {
            let n = Norm::L2.of(grad.iter().copied()) + 1e-10;
            for (v, g) in x.iter_mut().zip(grad) {
                *v += step * g / n;
            }
        }
    }
}

/// Projects `x` onto `B(x0, eps) ∩ [0, 1]^d`: clip the perturbation to the ball (L∞: per
/// coordinate; L2: rescale when longer than `eps`), then clip the image to [0, 1].
pub fn project(norm: Norm, x: &mut [f32], x0: &[f32], eps: f32) {
    match norm {
        Norm::Linf => {
            for (v, o) in x.iter_mut().zip(x0) {
                *v = (*v - o).clamp(-eps, eps) + o;
                *v = v.clamp(0.0, 1.0);
            }
        }
        Norm::L2 => {
            let n = Norm::L2.dist(x, x0);
            let f = if n > eps { eps / n } else { 1.0 };
            for (v, o) in x.iter_mut().zip(x0) {
                *v = (o + (*v - o) * f).clamp(0.0, 1.0);
            }
        }
    }
}

/// A random generator for one sample, derived from the global seed, the sample's index and a
/// stream tag (attack name, restart), so results do not depend on batching or threads.
pub fn sample_rng(seed: u64, index: usize, tag: &str) -> ChaCha8Rng {
    // FNV-1a over the tag, mixed with the seed and the index by SplitMix64.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in tag.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    let mut z = seed ^ h ^ (index as u64).wrapping_mul(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
}

/// Uniform in [0, 1).
pub fn uniform(rng: &mut ChaCha8Rng) -> f32 {
    (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32
}

/// Standard normal (Box–Muller).
pub fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1 = (uniform(rng) as f64).max(1e-12);
    let u2 = uniform(rng) as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// A uniformly random point of `B(x0, eps)` (L∞: uniform per coordinate, as torchattacks;
/// L2: uniform direction and radius `eps·u^{1/d}`), clipped to [0, 1].
pub fn random_start(norm: Norm, x0: &[f32], eps: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let mut x: Vec<f32> = match norm {
        Norm::Linf => x0
            .iter()
            .map(|&v| v + eps * (2.0 * uniform(rng) - 1.0))
            .collect(),
        Norm::L2 => {
            let d: Vec<f32> = (0..x0.len()).map(|_| normal(rng)).collect();
            let n = Norm::L2.of(d.iter().copied()).max(1e-12);
            let r = eps * uniform(rng).powf(1.0 / x0.len() as f32);
            x0.iter().zip(&d).map(|(&v, &g)| v + r * g / n).collect()
        }
    };
    project(norm, &mut x, x0, eps);
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_lands_in_the_ball_and_the_box() {
        let x0 = [0.5f32, 0.0, 1.0, 0.3];
        let mut a = [0.9f32, -0.2, 1.3, 0.31];
        project(Norm::Linf, &mut a, &x0, 0.1);
        assert_eq!(a, [0.6, 0.0, 1.0, 0.31]);
        let mut b = [0.5f32 + 3.0, 0.0, 1.0, 0.3 + 4.0];
        project(Norm::L2, &mut b, &x0, 1.0);
        assert!(
            (b[0] - 1.0).abs() < 1e-6 && (b[3] - 1.0).abs() < 1e-6,
            "{b:?}"
        );
        let mut rng = sample_rng(1, 2, "t");
        for norm in [Norm::Linf, Norm::L2] {
            let r = random_start(norm, &x0, 0.05, &mut rng);
            assert!(norm.dist(&r, &x0) <= 0.05 + 1e-6);
            assert!(r.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn streams_depend_only_on_seed_index_and_tag() {
        let a: Vec<u32> = (0..4).map(|_| sample_rng(7, 3, "pgd").next_u32()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            sample_rng(7, 3, "pgd").next_u32(),
            sample_rng(7, 4, "pgd").next_u32()
        );
        assert_ne!(
            sample_rng(7, 3, "pgd").next_u32(),
            sample_rng(7, 3, "pgd:1").next_u32()
        );
    }
}
