//! Stability under perturbation sequences: flip probability and mFR (Hendrycks & Dietterich,
//! *Benchmarking Neural Network Robustness to Common Corruptions and Perturbations*, ICLR 2019,
//! the ImageNet-P / CIFAR-10-P protocol; methods.md §6.4). Not in AISafety.
//!
//! Each image `x` becomes a sequence `x_1 … x_n` per family, generated on the fly from a seed (so
//! no data set has to be stored); CIFAR-10-P's sequences have 30 frames, the default here is
//! [`FlipParams::frames`] = 10 for speed [U: flag `--mfr-frames`]. Families (after CIFAR-10-P,
//! parameters chosen for small images [U]):
//!
//! | family | frame `j = 0 … n−1` |
//! |---|---|
//! | `gaussian_noise` | `x + N(0, 0.03²)`, fresh noise each frame (noise: compared to frame 1) |
//! | `speckle_noise` | `x + x·N(0, 0.06²)`, fresh each frame (compared to frame 1) |
//! | `gaussian_blur` | Gaussian blur σ = 0.3 + 0.7·j/(n−1) |
//! | `brightness` | `x + 0.2·j/(n−1)` |
//! | `translate` | shift by `j` pixels in a seeded direction (reflected border) |
//! | `rotate` | rotation by `±15°·j/(n−1)` about the centre, seeded sign |
//! | `zoom` | scale by `1 + 0.2·j/(n−1)` about the centre |
//!
//! Frames are clipped to [0, 1] and quantised to 8 bits, as stored sequences are.
//!
//! - Flip probability of a family over `m` images:
//!   `FP = (1/(m(n−1))) Σ_i Σ_{j=2..n} 1[f(x_j) ≠ f(x_{j−1})]` (noise families compare `x_j` with
//!   `x_1` instead).
//! - **mfr** = mean over families of `FP^f / FP^baseline` (families where the baseline never flips
//!   are left out; None when every family is).

use faultline_corruptions::ops::border::Border;
use faultline_corruptions::ops::cv::warp_affine_f32;
use faultline_corruptions::ops::filter::gaussian_filter;
use faultline_seed::Stream;

/// The perturbation families, in report order.
pub const FAMILIES: [&str; 7] = [
    "gaussian_noise",
    "speckle_noise",
    "gaussian_blur",
    "brightness",
    "translate",
    "rotate",
    "zoom",
];

/// Whether a family's frames are compared with the first frame (noise) instead of the previous.
pub fn against_first(family: &str) -> bool {
    family.ends_with("_noise")
}

/// Parameters of the sequences.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlipParams {
    /// Frames per sequence (≥ 2).
    pub frames: usize,
    /// Seed of the noise and of the directions.
    pub seed: u64,
}

impl Default for FlipParams {
    fn default() -> Self {
        FlipParams {
            frames: 10,
            seed: 0,
        }
    }
}

/// The `frames` frames of `family` for one CHW image in [0, 1] (sample `index`, for its seeded
/// stream), concatenated.
pub fn sequence(
    family: &str,
    x: &[f32],
    [c, h, w]: [usize; 3],
    p: &FlipParams,
    index: u64,
) -> Vec<f32> {
    let n = p.frames.max(2);
    let mut rng = Stream::new(p.seed, index, family);
    let frac = |j: usize| j as f64 / (n - 1) as f64;
    let dir = (rng.below(8), if rng.below(2) == 0 { 1.0 } else { -1.0 });
    let mut out = Vec::with_capacity(n * x.len());
    for j in 0..n {
        let frame: Vec<f32> = match family {
            "gaussian_noise" => x.iter().map(|&v| v + 0.03 * rng.gauss()).collect(),
            "speckle_noise" => x.iter().map(|&v| v + v * 0.06 * rng.gauss()).collect(),
            "gaussian_blur" => {
                let sigma = 0.3 + 0.7 * frac(j);
                x.chunks(h * w)
                    .flat_map(|plane| {
                        let mut p: Vec<f64> = plane.iter().map(|&v| v as f64).collect();
                        gaussian_filter(&mut p, h, w, sigma, Border::Reflect, 4.0);
                        p.into_iter().map(|v| v as f32)
                    })
                    .collect()
            }
            "brightness" => x.iter().map(|&v| v + 0.2 * frac(j) as f32).collect(),
            "translate" => {
                const STEPS: [(f64, f64); 8] = [
                    (1.0, 0.0),
                    (-1.0, 0.0),
                    (0.0, 1.0),
                    (0.0, -1.0),
                    (1.0, 1.0),
                    (1.0, -1.0),
                    (-1.0, 1.0),
                    (-1.0, -1.0),
                ];
                let (dx, dy) = STEPS[dir.0];
                warp(
                    x,
                    [c, h, w],
                    [1.0, 0.0, dx * j as f64, 0.0, 1.0, dy * j as f64],
                )
            }
            "rotate" => {
                let a = (dir.1 * 15.0 * frac(j)).to_radians();
                warp(
                    x,
                    [c, h, w],
                    about_centre(a.cos(), -a.sin(), a.sin(), a.cos(), h, w),
                )
            }
            "zoom" => {
                let s = 1.0 + 0.2 * frac(j);
                warp(x, [c, h, w], about_centre(s, 0.0, 0.0, s, h, w))
            }
            other => unreachable!("unknown perturbation family {other}"),
        };
        out.extend(
            frame
                .iter()
                .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() / 255.0),
        );
    }
    out
}

/// The affine map `p ↦ A·(p − centre) + centre` for the 2×2 matrix `A = [[a, b], [c, d]]`.
fn about_centre(a: f64, b: f64, c: f64, d: f64, h: usize, w: usize) -> [f64; 6] {
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    [a, b, cx - a * cx - b * cy, c, d, cy - c * cx - d * cy]
}

/// Warps a CHW image by the affine map `m` (bilinear, reflected border).
fn warp(x: &[f32], [c, h, w]: [usize; 3], m: [f64; 6]) -> Vec<f32> {
    let mut hwc = vec![0f32; x.len()];
    for ch in 0..c {
        for i in 0..h * w {
            hwc[i * c + ch] = x[ch * h * w + i];
        }
    }
    let out = warp_affine_f32(&hwc, h, w, c, &m);
    let mut chw = vec![0f32; x.len()];
    for ch in 0..c {
        for i in 0..h * w {
            chw[ch * h * w + i] = out[i * c + ch];
        }
    }
    chw
}

/// Flips of one sequence's predictions: (flips, comparisons).
pub fn flips(preds: &[usize], against_first: bool) -> (u64, u64) {
    let n = preds.len();
    if n < 2 {
        return (0, 0);
    }
    let f = (1..n)
        .filter(|&j| {
            let prev = if against_first { 0 } else { j - 1 };
            preds[j] != preds[prev]
        })
        .count();
    (f as u64, (n - 1) as u64)
}

/// mfr from per-family flip probabilities of the model and of the baseline (same order).
pub fn mfr(model: &[f64], baseline: &[f64]) -> Option<f64> {
    let rates: Vec<f64> = model
        .iter()
        .zip(baseline)
        .filter(|(_, &b)| b > 0.0)
        .map(|(m, b)| m / b)
        .collect();
    (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_by_hand() {
        // Consecutive: 0→0, 0→1, 1→1, 1→0: 2 flips of 4. Against the first: 1, 1, 0 differ → 2.
        assert_eq!(flips(&[0, 0, 1, 1, 0], false), (2, 4));
        assert_eq!(flips(&[0, 0, 1, 1, 0], true), (2, 4));
        assert_eq!(flips(&[0, 1, 0, 1], true), (2, 3));
        assert_eq!(flips(&[0, 1, 0, 1], false), (3, 3));
        // FP 0.2 and 0.1 against a baseline of 0.4 and 0 (left out) → 0.5.
        assert_eq!(mfr(&[0.2, 0.1], &[0.4, 0.0]), Some(0.5));
        assert_eq!(mfr(&[0.2], &[0.0]), None);
    }

    #[test]
    fn sequences_are_seeded_and_start_near_the_image() {
        let (c, h, w) = (1, 8, 8);
        let x: Vec<f32> = (0..64).map(|i| ((i * 7) % 64) as f32 / 64.0).collect();
        let p = FlipParams { frames: 4, seed: 5 };
        for fam in FAMILIES {
            let s = sequence(fam, &x, [c, h, w], &p, 3);
            assert_eq!(s.len(), 4 * 64, "{fam}");
            assert_eq!(s, sequence(fam, &x, [c, h, w], &p, 3), "{fam}");
            if !against_first(fam) && fam != "gaussian_blur" {
                // Frame 1 is the identity (up to 8-bit rounding).
                assert!(s[..64]
                    .iter()
                    .zip(&x)
                    .all(|(a, b)| (a - b).abs() <= 0.5 / 255.0 + 1e-6));
            }
        }
        // Translate by j pixels: frame 2 of a horizontal ramp shifted by one column.
        let ramp: Vec<f32> = (0..64).map(|i| (i % 8) as f32 / 8.0).collect();
        let p = FlipParams { frames: 3, seed: 0 };
        let s = sequence("translate", &ramp, [1, 8, 8], &p, 0);
        assert_ne!(&s[64..128], &s[..64]);
    }
}
