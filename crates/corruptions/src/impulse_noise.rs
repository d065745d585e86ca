//! Impulse (salt-and-pepper) noise.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! Each value independently: with probability `a` it is replaced, by 1 (salt) or 0 (pepper) with
//! equal odds; otherwise kept. `a` = 0.01…0.07 (CIFAR), 0.03…0.27 (ImageNet).
//!
//! # Defaults
//! scikit-image 0.14's `random_noise(mode='s&p', amount=a)` as the reference uses it (per channel).

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
    let amount = t.impulse_noise[s];
    // Two whole-image draws, flips then salt, in the reference's order.
    let flipped: Vec<bool> = img
        .as_slice()
        .iter()
        .map(|_| rng.next_f64() < amount)
        .collect();
    let data = img
        .as_slice()
        .iter()
        .zip(flipped)
        .map(|(&v, flip)| {
            let salted = rng.next_f64() < 0.5;
            let x = match (flip, salted) {
                (true, true) => 1.0,
                (true, false) => 0.0,
                _ => v as f64 / 255.0,
            };
            unit_to_u8(x)
        })
        .collect();
    Ok(ImageU8::from_parts(
        img.height(),
        img.width(),
        img.channels(),
        data,
    ))
}
