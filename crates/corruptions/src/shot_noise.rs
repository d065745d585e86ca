//! Shot (Poisson) noise.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `x ← clip(Poisson(x·λ)/λ, 0, 1)` per value; λ = 500…50 (CIFAR), 60…3 (ImageNet).
//!
//! # Defaults
//! `shot_noise` of the reference; Poisson deviates from [`crate::Rng::poisson`] (NumPy's algorithms).

use crate::error::Result;
use crate::image::{unit_to_u8, ImageU8};
use crate::params::Table;
use crate::rng::{Poisson, RandomSource};

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    rng: &mut R,
) -> Result<ImageU8> {
    let lam = t.shot_noise[s];
    // One set of sampler constants per grey level.
    let per_level: Vec<Poisson> = (0..256)
        .map(|v| Poisson::new(v as f64 / 255.0 * lam))
        .collect();
    let data = img
        .as_slice()
        .iter()
        .map(|&v| unit_to_u8(rng.poisson_with(&per_level[v as usize]) as f64 / lam))
        .collect();
    Ok(ImageU8::from_parts(
        img.height(),
        img.width(),
        img.channels(),
        data,
    ))
}
