//! Model behaviour on (clean, adversarial) pairs — Guo et al., *A Comprehensive Evaluation
//! Framework for Deep Model Robustness* (Pattern Recognition 2023; platform `DIG-Beihang/AISafety`),
//! methods.md §3.4. Notation: label `y`, softmax `P(·)`, successful set
//! `S = {i : F(x_i^a) ≠ y_i}` (untargeted). Averages over an empty `S` are `None`.
//!
//! - **ca** = `#{F(x) = y} / N` (clean accuracy).
//! - **aaw** = `#{F(x^a) = y} / N` under a white-box attack (= 1 − asr).
//! - **aab** = the same under a black-box attack (query-based Square by default).
//! - **asr** = `|S| / N`.
//! - **acac** = mean over `S` of `max_k P(x^a)_k` (confidence in the wrong class).
//! - **actc** = mean over `S` of `P(x^a)_y` (confidence left on the true class).
//! - **nte** = mean over `S` of `P(x^a)_(1) − P(x^a)_(2)` (top-1 minus top-2 probability).
//! - **rgb** = `#{F(blur(x^a)) ≠ y} / |S|`, Gaussian blur of radius 2 on the 0–255 image.
//! - **ric** = `#{F(jpeg(x^a)) ≠ y} / |S|`, JPEG re-encoding at quality 55.
//!
//! Counted over all samples, as the reference does: a sample the model already gets wrong is in
//! `S` with `x^a = x`.

use faultline_corruptions::ops::border::Border;
use faultline_corruptions::ops::filter::gaussian_filter;
use faultline_corruptions::ops::jpeg::jpeg_roundtrip;

/// Numerically stable softmax of one logit row, in f64.
pub fn softmax(z: &[f32]) -> Vec<f64> {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = z.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Index of the largest value (first on ties).
pub fn argmax64(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// Streaming counters for ca, aaw (or aab), asr, acac, actc and nte.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Behaviour {
    n: u64,
    clean_correct: u64,
    adv_correct: u64,
    success: u64,
    acac: f64,
    actc: f64,
    nte: f64,
}

/// What [`Behaviour`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct BehaviourFigures {
    /// Clean accuracy.
    pub ca: f64,
    /// Adversarial accuracy.
    pub adv_accuracy: f64,
    /// Attack success rate.
    pub asr: f64,
    /// Mean top probability over `S`.
    pub acac: Option<f64>,
    /// Mean true-class probability over `S`.
    pub actc: Option<f64>,
    /// Mean top-1 − top-2 probability over `S`.
    pub nte: Option<f64>,
}

impl Behaviour {
    /// Adds one sample: its label and its clean and adversarial logits.
    pub fn add(&mut self, label: usize, clean: &[f32], adv: &[f32]) {
        self.n += 1;
        let pc = softmax(clean);
        let pa = softmax(adv);
        if argmax64(&pc) == label {
            self.clean_correct += 1;
        }
        let top = argmax64(&pa);
        if top == label {
            self.adv_correct += 1;
            return;
        }
        self.success += 1;
        let mut sorted = pa.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        self.acac += sorted[0];
        self.actc += pa[label];
        self.nte += sorted[0] - sorted.get(1).copied().unwrap_or(0.0);
    }

    /// The figures (None before any sample).
    pub fn figures(&self) -> Option<BehaviourFigures> {
        if self.n == 0 {
            return None;
        }
        let n = self.n as f64;
        let s = self.success as f64;
        let over_s = |v: f64| (self.success > 0).then(|| v / s);
        Some(BehaviourFigures {
            ca: self.clean_correct as f64 / n,
            adv_accuracy: self.adv_correct as f64 / n,
            asr: s / n,
            acac: over_s(self.acac),
            actc: over_s(self.actc),
            nte: over_s(self.nte),
        })
    }
}

/// Counters of a ratio `#{F(T(x^a)) ≠ y} / #{F(x^a) ≠ y}` (rgb, ric).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Ratio {
    num: u64,
    den: u64,
}

impl Ratio {
    /// Adds one sample: its label and the predictions on `x^a` and on `T(x^a)`.
    pub fn add(&mut self, label: usize, adv_pred: usize, transformed_pred: usize) {
        if adv_pred != label {
            self.den += 1;
            if transformed_pred != label {
                self.num += 1;
            }
        }
    }
    /// The ratio, None when no adversarial example succeeded.
    pub fn value(&self) -> Option<f64> {
        (self.den > 0).then(|| self.num as f64 / self.den as f64)
    }
}

/// Radius of the Gaussian blur of rgb (PIL's `GaussianBlur(2)`).
pub const RGB_RADIUS: f64 = 2.0;
/// JPEG quality of ric.
pub const RIC_QUALITY: u8 = 55;

/// Gaussian blur (σ = `radius`, truncated at 4σ, reflected borders as SciPy) of CHW images in
/// [0, 1], applied to the image rounded to 0–255 and rounded back, as the reference blurs the
/// 8-bit image. PIL approximates the Gaussian by three box blurs, so values differ from PIL's by
/// a level or so; the metric only uses the predictions.
pub fn blur_images(images: &[f32], h: usize, w: usize, radius: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(images.len());
    for plane in images.chunks(h * w) {
        let mut p: Vec<f64> = plane
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as f64)
            .collect();
        gaussian_filter(&mut p, h, w, radius, Border::Reflect, 4.0);
        out.extend(
            p.iter()
                .map(|&v| (v.round().clamp(0.0, 255.0) / 255.0) as f32),
        );
    }
    out
}

/// JPEG round trip of CHW images in [0, 1] (1 or 3 channels) at `quality`.
pub fn jpeg_images(images: &[f32], c: usize, h: usize, w: usize, quality: u8) -> Vec<f32> {
    let per = c * h * w;
    let mut out = Vec::with_capacity(images.len());
    for img in images.chunks(per) {
        let mut hwc = vec![0u8; per];
        for ch in 0..c {
            for i in 0..h * w {
                hwc[i * c + ch] = (img[ch * h * w + i].clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        let back = jpeg_roundtrip(&hwc, h, w, c, quality);
        for ch in 0..c {
            for i in 0..h * w {
                out.push(back[i * c + ch] as f32 / 255.0);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes, logits (0, m): P(class 1) = σ(m).
    fn sig(m: f64) -> f64 {
        1.0 / (1.0 + (-m).exp())
    }

    #[test]
    fn two_class_margins_by_hand() {
        let mut b = Behaviour::default();
        // Sample 0 (y = 0): clean right (margin 2), adversarial wrong with margin 1.
        b.add(0, &[2.0, 0.0], &[0.0, 1.0]);
        // Sample 1 (y = 0): clean right, adversarial still right.
        b.add(0, &[3.0, 0.0], &[1.0, 0.0]);
        // Sample 2 (y = 1): clean wrong, adversarial wrong with margin 3.
        b.add(1, &[1.0, 0.0], &[3.0, 0.0]);
        let f = b.figures().unwrap();
        assert!((f.ca - 2.0 / 3.0).abs() < 1e-12);
        assert!((f.adv_accuracy - 1.0 / 3.0).abs() < 1e-12);
        assert!((f.asr - 2.0 / 3.0).abs() < 1e-12);
        let (p1, p3) = (sig(1.0), sig(3.0));
        assert!((f.acac.unwrap() - (p1 + p3) / 2.0).abs() < 1e-12);
        assert!((f.actc.unwrap() - ((1.0 - p1) + (1.0 - p3)) / 2.0).abs() < 1e-12);
        let nte = ((2.0 * p1 - 1.0) + (2.0 * p3 - 1.0)) / 2.0;
        assert!((f.nte.unwrap() - nte).abs() < 1e-12);
    }

    #[test]
    fn no_success_gives_none() {
        let mut b = Behaviour::default();
        b.add(0, &[1.0, 0.0], &[1.0, 0.0]);
        let f = b.figures().unwrap();
        assert_eq!((f.asr, f.acac, f.nte), (0.0, None, None));
        assert!(Behaviour::default().figures().is_none());
    }

    #[test]
    fn ratio_counts_only_successful_examples() {
        let mut r = Ratio::default();
        r.add(0, 1, 1); // still fooled after the transform
        r.add(0, 1, 0); // transform repaired it
        r.add(0, 0, 1); // not a successful example: ignored
        assert_eq!(r.value(), Some(0.5));
        assert_eq!(Ratio::default().value(), None);
    }

    #[test]
    fn blur_keeps_a_flat_image_and_spreads_a_dot() {
        let flat = vec![0.5f32; 2 * 9 * 9];
        let b = blur_images(&flat, 9, 9, RGB_RADIUS);
        assert!(b.iter().all(|&v| (v - 128.0 / 255.0).abs() < 1e-6));
        let mut dot = vec![0.0f32; 81];
        dot[40] = 1.0;
        let b = blur_images(&dot, 9, 9, RGB_RADIUS);
        assert!(b[40] < 0.1 && b[41] > 0.0 && b[41] <= b[40]);
        let j = jpeg_images(&flat, 1, 9, 9, RIC_QUALITY);
        assert!(j
            .iter()
            .all(|&v| (v - 128.0 / 255.0).abs() <= 1.0 / 255.0 + 1e-6));
    }
}
