//! JPEG compression artefacts.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `x ← decode(encode(x, quality q))`; q = 80, 65, 58, 50, 40 (CIFAR), 25, 18, 15, 10, 7 (ImageNet).
//!
//! # Defaults
//! The reference saves with Pillow (libjpeg-turbo, baseline, 4:2:0, IJG tables scaled by quality) and
//! decodes with Pillow. [`crate::ops::jpeg`] reproduces every lossy integer step of that round trip
//! (colour conversion, chroma subsampling, islow DCT, quantisation, islow IDCT, fancy upsampling);
//! the lossless entropy coding is skipped, so no bytes are produced and no codec is linked.

use crate::error::Result;
use crate::image::ImageU8;
use crate::ops::jpeg::jpeg_roundtrip;
use crate::params::Table;
use crate::rng::RandomSource;

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    _rng: &mut R,
) -> Result<ImageU8> {
    let q = t.jpeg_compression[s];
    let (h, w, c) = (img.height(), img.width(), img.channels());
    Ok(ImageU8::from_parts(
        h,
        w,
        c,
        jpeg_roundtrip(img.as_slice(), h, w, c, q),
    ))
}
