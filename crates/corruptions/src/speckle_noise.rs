//! Speckle (multiplicative Gaussian) noise, one of the 4 extra corruptions.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `x ← clip(x + x·n, 0, 1)`, `n ~ N(0, σ²)` per value; σ = 0.06…0.2 (CIFAR), 0.15…0.6 (ImageNet).

use crate::error::Result;
use crate::image::{unit_to_u8, ImageU8};
use crate::params::Table;
use crate::rng::RandomSource;

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    rng: &mut R,
) -> Result<ImageU8> {
    let sigma = t.speckle_noise[s];
    let data = img
        .as_slice()
        .iter()
        .map(|&v| {
            let x = v as f64 / 255.0;
            unit_to_u8(x + x * rng.normal(0.0, sigma))
        })
        .collect();
    Ok(ImageU8::from_parts(
        img.height(),
        img.width(),
        img.channels(),
        data,
    ))
}
