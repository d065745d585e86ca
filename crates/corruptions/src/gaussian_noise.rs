//! Additive Gaussian noise.
//!
//! # Paper
//! Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
//! Perturbations", ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `x ← clip(x + n, 0, 1)`, `n ~ N(0, σ²)` independently per value, `x` in `[0, 1]`;
//! σ = 0.04…0.10 (CIFAR), 0.08…0.38 (ImageNet).
//!
//! # Defaults
//! `gaussian_noise` of `make_cifar_c.py` / `make_imagenet_c.py`; NumPy's generator is replaced by the
//! per-sample stream of [`crate::Rng`].

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
    let sigma = t.gaussian_noise[s];
    let data = img
        .as_slice()
        .iter()
        .map(|&v| unit_to_u8(v as f64 / 255.0 + rng.normal(0.0, sigma)))
        .collect();
    Ok(ImageU8::from_parts(
        img.height(),
        img.width(),
        img.channels(),
        data,
    ))
}
