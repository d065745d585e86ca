//! How perceptible adversarial perturbations are, over the successful set `S` (methods.md §3.4,
//! Guo et al. / AISafety; PSD from DEEPSEC, Ling et al. 2019):
//!
//! - **ald_l0** = mean over `S` of `‖x^a − x‖_0 / D`, counting the values whose 8-bit level
//!   changed (`round(255·x^a) ≠ round(255·x)`), `D = C·H·W`.
//! - **ald_l2** = mean over `S` of the relative distance `‖x^a − x‖_2 / ‖x‖_2`.
//! - **ald_linf** = mean over `S` of `‖x^a − x‖_∞` on the [0, 1] scale.
//! - **ass** = mean over `S` of SSIM(x^a, x) on images rounded to 0–255 ([`super::ssim`],
//!   scikit-image defaults). Higher = less perceptible.
//! - **psd** = mean over `S` of `Σ_j |δ_j| / std(R(x_j))`, summed over channels and pixels, with
//!   `R(x_j)` the 3×3 neighbourhood of pixel `j` in the clean image (reflect padding, NumPy's
//!   `reflect`), on the [0, 1] scale. This is the documented/DEEPSEC weight (perturbations in flat
//!   regions count more); AISafety's code multiplies by the std instead — we follow the
//!   documentation. A flat neighbourhood has std 0: the std is floored at [`PSD_STD_FLOOR`]
//!   (one 8-bit level) [U].

use super::ssim::ssim;
use faultline_corruptions::ops::border::Border;

/// Lower bound of the neighbourhood std in psd [U].
pub const PSD_STD_FLOOR: f64 = 1.0 / 255.0;

/// Streaming sums of the imperceptibility metrics over successful examples.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Imperceptibility {
    n: u64,
    l0: f64,
    l2: f64,
    linf: f64,
    ssim: f64,
    ssim_n: u64,
    psd: f64,
}

/// What [`Imperceptibility`] reports (None when `S` is empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImperceptibilityFigures {
    /// Mean L0 fraction.
    pub ald_l0: Option<f64>,
    /// Mean relative L2.
    pub ald_l2: Option<f64>,
    /// Mean L∞.
    pub ald_linf: Option<f64>,
    /// Mean SSIM.
    pub ass: Option<f64>,
    /// Mean perturbation sensitivity distance.
    pub psd: Option<f64>,
}

/// Perturbation sensitivity distance of one CHW image pair on the [0, 1] scale.
pub fn psd(x: &[f32], xa: &[f32], c: usize, h: usize, w: usize) -> f64 {
    let mut total = 0.0;
    for ch in 0..c {
        let p = &x[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            for xx in 0..w {
                let j = ch * h * w + y * w + xx;
                let d = (xa[j] - x[j]).abs() as f64;
                if d == 0.0 {
                    continue;
                }
                let (mut s, mut ss) = (0.0, 0.0);
                for dy in -1isize..=1 {
                    for dx in -1isize..=1 {
                        let yy = Border::Reflect101.index(y as isize + dy, h);
                        let xi = Border::Reflect101.index(xx as isize + dx, w);
                        let v = p[yy * w + xi] as f64;
                        s += v;
                        ss += v * v;
                    }
                }
                let mean = s / 9.0;
                let std = (ss / 9.0 - mean * mean).max(0.0).sqrt();
                total += d / std.max(PSD_STD_FLOOR);
            }
        }
    }
    total
}

impl Imperceptibility {
    /// Adds one successful example: clean and adversarial CHW images in [0, 1].
    pub fn add(&mut self, x: &[f32], xa: &[f32], c: usize, h: usize, w: usize) {
        self.n += 1;
        let d = x.len() as f64;
        let level = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round();
        let changed = x
            .iter()
            .zip(xa)
            .filter(|(&a, &b)| level(a) != level(b))
            .count();
        self.l0 += changed as f64 / d;
        let (mut dd, mut xx, mut inf) = (0.0f64, 0.0f64, 0.0f64);
        for (&a, &b) in x.iter().zip(xa) {
            let e = (b - a) as f64;
            dd += e * e;
            xx += (a as f64) * (a as f64);
            inf = inf.max(e.abs());
        }
        if xx > 0.0 {
            self.l2 += dd.sqrt() / xx.sqrt();
        }
        self.linf += inf;
        let a: Vec<f64> = x.iter().map(|&v| level(v) as f64).collect();
        let b: Vec<f64> = xa.iter().map(|&v| level(v) as f64).collect();
        if let Some(s) = ssim(&b, &a, c, h, w, 255.0) {
            self.ssim += s;
            self.ssim_n += 1;
        }
        self.psd += psd(x, xa, c, h, w);
    }

    /// The figures.
    pub fn figures(&self) -> ImperceptibilityFigures {
        let n = self.n as f64;
        let m = |v: f64| (self.n > 0).then(|| v / n);
        ImperceptibilityFigures {
            ald_l0: m(self.l0),
            ald_l2: m(self.l2),
            ald_linf: m(self.linf),
            ass: (self.ssim_n > 0).then(|| self.ssim / self.ssim_n as f64),
            psd: m(self.psd),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_by_hand() {
        // 1×1×4 image (too small for SSIM): x = (0.5, 0.5, 0.5, 0.5), two values moved by 0.1.
        let x = [0.5f32; 4];
        let xa = [0.6f32, 0.4, 0.5, 0.5];
        let mut m = Imperceptibility::default();
        m.add(&x, &xa, 1, 1, 4);
        let f = m.figures();
        assert!((f.ald_l0.unwrap() - 0.5).abs() < 1e-12);
        // ‖δ‖₂ = 0.1·√2, ‖x‖₂ = 1.
        assert!((f.ald_l2.unwrap() - 0.1 * 2f64.sqrt()).abs() < 1e-6);
        assert!((f.ald_linf.unwrap() - 0.1).abs() < 1e-6);
        assert_eq!(f.ass, None);
        assert_eq!(Imperceptibility::default().figures().psd, None);
    }

    #[test]
    fn psd_weights_by_neighbourhood_std() {
        // 3×3 image, centre perturbed by 0.1. Its neighbourhood (the whole image) holds values
        // {0, 1} in a checkerboard: five 0s and four 1s → mean 4/9, std = √(4/9 − 16/81) = √20/9.
        let x: Vec<f32> = (0..9).map(|i| (i % 2) as f32).collect();
        let mut xa = x.clone();
        xa[4] += 0.1;
        let std = 20f64.sqrt() / 9.0;
        assert!((psd(&x, &xa, 1, 3, 3) - 0.1 / std).abs() < 1e-6);
        // On a flat image the floor applies.
        let flat = vec![0.5f32; 9];
        let mut fa = flat.clone();
        fa[0] = 0.6;
        assert!((psd(&flat, &fa, 1, 3, 3) - 0.1 * 255.0).abs() < 1e-3);
    }
}
