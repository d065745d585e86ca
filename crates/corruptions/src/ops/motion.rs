//! ImageMagick 6 `MotionBlurImage` (Q16, non-HDRI), the kernel behind `motion_blur` and `snow`.
//!
//! The reference round-trips the image through PNG into ImageMagick (Wand) and back; both ways are
//! lossless for 8-bit data, so only the blur itself matters:
//!
//! * kernel width `n = 2·ceil(radius) + 1` (`GetOptimalKernelWidth1D`),
//!   weights `k_i ∝ exp(-i²/(2σ²))`, `i = 0..n`, normalised to sum 1 (`GetMotionBlurKernel`);
//! * offsets `(dx_i, dy_i) = (ceil(i·cos θ − 0.5), ceil(i·sin θ − 0.5))` — computed, as in
//!   ImageMagick, from `point = n·(sin θ, cos θ)` divided by its length;
//! * `q = Σ_i k_i · 257·p(x + dx_i, y + dy_i)` in `f64` with edge-clamped ("virtual") pixels,
//!   `ClampToQuantum` rounds to the 16-bit quantum, and the export back to 8 bits truncates,
//!   `⌊q / 257⌋`. (The textbook `ScaleQuantumToChar` rounds; the truncating variant is what
//!   reproduces all stored reference outputs exactly, see the crate tests.)

/// Kernel weights and integer pixel offsets of ImageMagick's motion blur.
#[derive(Debug, Clone)]
pub struct MotionKernel {
    /// Normalised weights, one per tap.
    pub weights: Vec<f64>,
    /// `(dx, dy)` per tap.
    pub offsets: Vec<(isize, isize)>,
}

impl MotionKernel {
    /// The kernel for `radius`, `sigma` (pixels) and `angle` (degrees).
    pub fn new(radius: f64, sigma: f64, angle_deg: f64) -> Self {
        let width = if radius > f64::EPSILON {
            (2.0 * radius.ceil() + 1.0) as usize
        } else {
            3
        };
        let sigma = if sigma.abs() < 1e-12 { 1e-12 } else { sigma };
        let sq2pi = 2.506_628_274_631_000_5;
        let raw: Vec<f64> = (0..width)
            .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp() / (sq2pi * sigma))
            .collect();
        let norm: f64 = raw.iter().sum();
        let weights = raw.iter().map(|k| k / norm).collect();
        let theta = angle_deg * std::f64::consts::PI / 180.0;
        let px = width as f64 * theta.sin();
        let py = width as f64 * theta.cos();
        let hyp = px.hypot(py);
        let offsets = (0..width)
            .map(|i| {
                let dx = ((i as f64 * py) / hyp - 0.5).ceil() as isize;
                let dy = ((i as f64 * px) / hyp - 0.5).ceil() as isize;
                (dx, dy)
            })
            .collect();
        Self { weights, offsets }
    }

    /// Blurs an HWC `u8` image (each channel independently) and returns the 8-bit result.
    ///
    /// Taps are accumulated one after the other for a whole row (vectorised where the tap stays
    /// inside the image, clamped per pixel near the edges), so every pixel sums its taps in kernel
    /// order exactly like ImageMagick's per-pixel loop.
    pub fn apply(&self, src: &[u8], h: usize, w: usize, c: usize) -> Vec<u8> {
        let q16: Vec<f64> = src.iter().map(|&v| v as f64 * 257.0).collect();
        let mut out = vec![0u8; src.len()];
        let (hi, wi) = (h as isize, w as isize);
        let rw = w * c;
        let mut acc = vec![0.0f64; rw];
        for y in 0..hi {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (&k, &(dx, dy)) in self.weights.iter().zip(&self.offsets) {
                let sy = (y + dy).clamp(0, hi - 1) as usize;
                let srow = &q16[sy * rw..(sy + 1) * rw];
                // Columns whose source x + dx lies inside the image.
                let x_lo = (-dx).clamp(0, wi) as usize;
                let x_hi = (wi - dx).clamp(0, wi) as usize;
                for x in (0..x_lo).chain(x_hi.max(x_lo)..w) {
                    let sx = (x as isize + dx).clamp(0, wi - 1) as usize;
                    for ch in 0..c {
                        acc[x * c + ch] += k * srow[sx * c + ch];
                    }
                }
                if x_hi > x_lo {
                    let s0 = ((x_lo as isize + dx) as usize) * c;
                    crate::ops::simd::axpy(
                        &mut acc[x_lo * c..x_hi * c],
                        k,
                        &srow[s0..s0 + (x_hi - x_lo) * c],
                    );
                }
            }
            let orow = &mut out[y as usize * rw..(y as usize + 1) * rw];
            for (o, &a) in orow.iter_mut().zip(&acc) {
                *o = quantum_to_char(clamp_to_quantum(a));
            }
        }
        out
    }
}

/// ImageMagick `ClampToQuantum` (non-HDRI Q16): round half up into `0..=65535`.
#[inline]
fn clamp_to_quantum(v: f64) -> u32 {
    if v <= 0.0 {
        0
    } else if v >= 65535.0 {
        65535
    } else {
        (v + 0.5) as u32
    }
}

/// 16-bit quantum to 8 bits as the reference's ImageMagick build exported it: `⌊q / 257⌋`.
#[inline]
fn quantum_to_char(q: u32) -> u8 {
    (q / 257) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_shape() {
        let k = MotionKernel::new(6.0, 1.0, 0.0);
        assert_eq!(k.weights.len(), 13);
        assert!((k.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(k.offsets[3], (3, 0));
        let k = MotionKernel::new(6.0, 1.0, 90.0);
        assert_eq!(k.offsets[3], (0, 3));
        // Constant images stay constant.
        let img = vec![77u8; 8 * 8 * 3];
        assert_eq!(k.apply(&img, 8, 8, 3), img);
        for q in [0u32, 257, 65535, 128 * 257] {
            assert_eq!(quantum_to_char(q) as u32, q / 257);
        }
    }
}
