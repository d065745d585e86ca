//! Snow: a thresholded, zoomed, motion-blurred noise layer added twice (as is and rotated 180°) to a
//! whitened image.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `L ~ N(μ, s²)` per pixel; `L ← clipped_zoom(L, z)`; `L[L < t] = 0`; `L ← uint8(255·clip(L, 0, 1))`;
//! `L ← motion_blur(L, r, σ, θ)/255` with `θ ~ U(−135°, −45°)`;
//! `x ← b·x + (1 − b)·max(x, 1.5·gray(x) + 0.5)`; `x ← clip(x + L + rot180(L), 0, 1)`.
//!
//! # Defaults
//! `snow` of the reference, with ImageMagick's motion blur from [`crate::ops::motion`] and
//! `gray = 0.299R + 0.587G + 0.114B` (OpenCV `RGB2GRAY`, `f32`). Grayscale images use themselves as
//! `gray`.

use crate::error::Result;
use crate::image::{unit_to_u8, ImageU8};
use crate::ops::{motion::MotionKernel, zoom::clipped_zoom_f64};
use crate::params::Table;
use crate::rng::RandomSource;

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    rng: &mut R,
) -> Result<ImageU8> {
    let p = t.snow[s];
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let layer: Vec<f64> = (0..h * w).map(|_| rng.normal(p.loc, p.scale)).collect();
    let layer = clipped_zoom_f64(&layer, h, w, p.zoom);
    let layer_u8: Vec<u8> = layer
        .iter()
        .map(|&v| unit_to_u8(if v < p.threshold { 0.0 } else { v }))
        .collect();
    let angle = rng.uniform(-135.0, -45.0);
    let blurred = MotionKernel::new(p.blur_radius, p.blur_sigma, angle).apply(&layer_u8, h, w, 1);
    let snow: Vec<f64> = blurred.iter().map(|&v| v as f64 / 255.0).collect();

    let x: Vec<f32> = img.as_slice().iter().map(|&v| v as f32 / 255.0).collect();
    let blend = p.blend as f32;
    let one_minus = (1.0 - p.blend) as f32;
    let mut out = vec![0u8; x.len()];
    for y in 0..h {
        for xx in 0..w {
            let i = y * w + xx;
            let px = &x[i * c..(i + 1) * c];
            let gray = if c == 3 {
                px[0] * 0.299 + px[1] * 0.587 + px[2] * 0.114
            } else {
                px[0]
            };
            let lift = gray * 1.5 + 0.5;
            let sn = snow[i] + snow[(h - 1 - y) * w + (w - 1 - xx)];
            for ch in 0..c {
                let v = blend * px[ch] + one_minus * px[ch].max(lift);
                out[i * c + ch] = unit_to_u8(v as f64 + sn);
            }
        }
    }
    Ok(ImageU8::from_parts(h, w, c, out))
}
