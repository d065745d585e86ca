//! Contrast reduction towards the per-channel mean.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `x ← clip((x − μ_c)·c + μ_c, 0, 1)`, `μ_c` the mean of channel `c` over the image;
//! c = 0.75…0.15 (CIFAR), 0.4…0.05 (ImageNet).

use crate::error::Result;
use crate::image::{to_unit_f64, unit_to_u8, ImageU8};
use crate::params::Table;
use crate::rng::RandomSource;

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    _rng: &mut R,
) -> Result<ImageU8> {
    let f = t.contrast[s];
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let x = to_unit_f64(img);
    let mut means = vec![0.0f64; c];
    for px in x.chunks_exact(c) {
        for (m, &v) in means.iter_mut().zip(px) {
            *m += v;
        }
    }
    means.iter_mut().for_each(|m| *m /= (h * w) as f64);
    let data = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let m = means[i % c];
            unit_to_u8((v - m) * f + m)
        })
        .collect();
    Ok(ImageU8::from_parts(h, w, c, data))
}
