//! Gaussian blur, one of the 4 extra corruptions.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `x ← x ⊛ g_σ` per channel, `g_σ(i) ∝ exp(-i²/(2σ²))` for `|i| ≤ int(4σ + 0.5)`, separable, edges
//! replicated; σ = 0.4…1 px (CIFAR), 1…6 px (ImageNet).
//!
//! # Defaults
//! `skimage.filters.gaussian(x, sigma, channel_axis=-1)` (SciPy `gaussian_filter`, mode `nearest`,
//! truncate 4), summed in SciPy's order in `f64`.

use crate::error::Result;
use crate::image::{to_unit_f64, unit_to_u8, ImageU8};
use crate::ops::{border::Border, filter::gaussian_filter_hwc};
use crate::params::Table;
use crate::rng::RandomSource;

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    _rng: &mut R,
) -> Result<ImageU8> {
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let mut x = to_unit_f64(img);
    gaussian_filter_hwc(&mut x, h, w, c, t.gaussian_blur[s], Border::Nearest);
    Ok(ImageU8::from_parts(
        h,
        w,
        c,
        x.iter().map(|&v| unit_to_u8(v)).collect(),
    ))
}
