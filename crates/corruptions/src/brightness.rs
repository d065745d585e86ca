//! Brightness: raise the HSV value channel.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `(H, S, V) = rgb2hsv(x)`, `V ← clip(V + c, 0, 1)`, `x ← hsv2rgb(H, S, V)`; c = 0.05…0.3 (CIFAR),
//! 0.1…0.5 (ImageNet).
//!
//! # Defaults
//! scikit-image's `rgb2hsv` / `hsv2rgb` in `f64` ([`crate::ops::hsv`]). Grayscale images are treated
//! as RGB with equal channels (exact: the result stays gray).

use crate::error::Result;
use crate::image::ImageU8;
use crate::params::Table;
use crate::rng::RandomSource;
use crate::saturate::map_hsv;

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    _rng: &mut R,
) -> Result<ImageU8> {
    let c = t.brightness[s];
    Ok(map_hsv(img, |h, s, v| (h, s, (v + c).clamp(0.0, 1.0))))
}
