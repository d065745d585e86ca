//! Saturate: scale and shift the HSV saturation, one of the 4 extra corruptions.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `(H, S, V) = rgb2hsv(x)`, `S ← clip(S·a + b, 0, 1)`, `x ← hsv2rgb(H, S, V)`;
//! (a, b) = (0.3, 0) … (2.5, 0.2) (CIFAR), (0.3, 0) … (20, 0.2) (ImageNet).
//!
//! # Defaults
//! scikit-image's HSV conversions in `f64`. Grayscale images are expanded to RGB, corrupted, and
//! mapped back with BT.601 luma (`0.299R + 0.587G + 0.114B`, rounded); a gray pixel has hue 0, so
//! severities with `b > 0` tint it red before the luma conversion, exactly as on an RGB gray image.

use crate::error::Result;
use crate::image::{unit_to_u8, ImageU8, LUMA};
use crate::ops::hsv::{hsv2rgb, rgb2hsv};
use crate::params::Table;
use crate::rng::RandomSource;

/// Applies `f` to every pixel in HSV space (scikit-image conventions) and converts back to `u8`.
pub(crate) fn map_hsv(img: &ImageU8, f: impl Fn(f64, f64, f64) -> (f64, f64, f64)) -> ImageU8 {
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let src = img.as_slice();
    let mut out = vec![0u8; src.len()];
    for i in 0..h * w {
        let (r, g, b) = if c == 3 {
            (src[3 * i], src[3 * i + 1], src[3 * i + 2])
        } else {
            (src[i], src[i], src[i])
        };
        let (hh, ss, vv) = rgb2hsv(r as f64 / 255.0, g as f64 / 255.0, b as f64 / 255.0);
        let (hh, ss, vv) = f(hh, ss, vv);
        let (r2, g2, b2) = hsv2rgb(hh, ss, vv);
        let px = [unit_to_u8(r2), unit_to_u8(g2), unit_to_u8(b2)];
        if c == 3 {
            out[3 * i..3 * i + 3].copy_from_slice(&px);
        } else {
            let l = LUMA[0] * px[0] as f64 + LUMA[1] * px[1] as f64 + LUMA[2] * px[2] as f64;
            out[i] = l.round().clamp(0.0, 255.0) as u8;
        }
    }
    ImageU8::from_parts(h, w, c, out)
}

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    _rng: &mut R,
) -> Result<ImageU8> {
    let p = t.saturate[s];
    Ok(map_hsv(img, |h, s, v| {
        (h, (s * p.scale + p.shift).clamp(0.0, 1.0), v)
    }))
}
