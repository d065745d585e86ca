//! Zoom blur: the average of centre zooms of the image.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `x ← clip((x + Σ_{z ∈ Z} zoom_z(x)) / (|Z| + 1), 0, 1)` with `Z = arange(1, stop, step)` (NumPy
//! semantics: CIFAR 1…1.06, 1.11, 1.15, 1.20, 1.25 in steps of 0.01; ImageNet up to 1.30), where
//! `zoom_z` crops the centre `ceil(n/z)` pixels per axis, enlarges them by `z` with bilinear
//! interpolation and trims the result back to `n`.
//!
//! # Defaults
//! `clipped_zoom` with `scipy.ndimage.zoom(order=1)`; accumulation in `f32` like the reference.
//! Non-square images are cropped per axis (the reference assumes square images).

use crate::error::Result;
use crate::image::{trunc_u8_f32, ImageU8};
use crate::ops::zoom::{add_clipped_zoom_f32, np_arange};
use crate::params::Table;
use crate::rng::RandomSource;

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    _rng: &mut R,
) -> Result<ImageU8> {
    let p = t.zoom_blur[s];
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let x: Vec<f32> = img
        .as_slice()
        .iter()
        .map(|&v| (v as f64 / 255.0) as f32)
        .collect();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let zooms = np_arange(1.0, p.stop, p.step);
    let mut acc = vec![0f32; x.len()];
    for &z in &zooms {
        add_clipped_zoom_f32(&x64, h, w, c, z, &mut acc);
    }
    let n = (zooms.len() + 1) as f32;
    let data = x
        .iter()
        .zip(&acc)
        .map(|(&a, &b)| trunc_u8_f32(((a + b) / n).clamp(0.0, 1.0) * 255.0))
        .collect();
    Ok(ImageU8::from_parts(h, w, c, data))
}
