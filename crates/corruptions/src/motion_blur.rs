//! Motion blur along a random direction (ImageMagick's kernel, implemented in Rust).
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `θ ~ U(−45°, 45°)`; `x(p) ← Σ_i k_i · x(p + round(i·(cos θ, sin θ)))`, `k_i ∝ exp(−i²/(2σ²))`,
//! `i = 0 … 2·ceil(r)`, edge pixels repeated; (r, σ) = (6, 1) … (9, 2.5) (CIFAR),
//! (10, 3) … (20, 15) (ImageNet).
//!
//! # Defaults
//! The reference calls `MagickMotionBlurImage` (ImageMagick 6, Q16) through Wand. [`MotionKernel`]
//! reproduces its kernel, offsets, 16-bit rounding and 8-bit export; with the same angle it matches
//! the stored reference outputs (see the crate tests). No ImageMagick dependency.
//!
//! [`MotionKernel`]: crate::ops::motion::MotionKernel

use crate::error::Result;
use crate::image::ImageU8;
use crate::ops::motion::MotionKernel;
use crate::params::Table;
use crate::rng::RandomSource;

/// Motion blur with an explicit angle in degrees (the random part of the family is only the angle).
pub fn motion_blur_with_angle(img: &ImageU8, radius: f64, sigma: f64, angle_deg: f64) -> ImageU8 {
    let k = MotionKernel::new(radius, sigma, angle_deg);
    let data = k.apply(img.as_slice(), img.height(), img.width(), img.channels());
    ImageU8::from_parts(img.height(), img.width(), img.channels(), data)
}

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    rng: &mut R,
) -> Result<ImageU8> {
    let p = t.motion_blur[s];
    let angle = rng.uniform(-45.0, 45.0);
    Ok(motion_blur_with_angle(img, p.radius, p.sigma, angle))
}
