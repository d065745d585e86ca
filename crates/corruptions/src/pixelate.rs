//! Pixelate: box down-sampling followed by box up-sampling.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `x ← resize_box(resize_box(x, ⌊s·W⌋ × ⌊s·H⌋), W × H)`; s = 0.95…0.65 (CIFAR), 0.6…0.25 (ImageNet).
//!
//! # Defaults
//! Pillow's `Image.resize(..., Image.BOX)` reproduced bit for bit, 8-bit fixed point
//! ([`crate::ops::resample::pil_box_resize`]).

use crate::error::Result;
use crate::image::ImageU8;
use crate::ops::resample::pil_box_resize;
use crate::params::Table;
use crate::rng::RandomSource;

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    _rng: &mut R,
) -> Result<ImageU8> {
    let f = t.pixelate[s];
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let sw = ((w as f64 * f) as usize).max(1);
    let sh = ((h as f64 * f) as usize).max(1);
    let small = pil_box_resize(img.as_slice(), h, w, c, sh, sw);
    let data = pil_box_resize(&small, sh, sw, c, h, w);
    Ok(ImageU8::from_parts(h, w, c, data))
}
