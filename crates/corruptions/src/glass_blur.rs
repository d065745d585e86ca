//! Glass blur: Gaussian blur, local pixel shuffling, Gaussian blur.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `x₁ = uint8(255·(x ⊛ g_σ))`; then `iterations` sweeps over rows `h = H−d … d+1` and columns
//! `w = W−d … d+1` (descending), each drawing `dx, dy ∈ [−d, d)` and setting
//! `x₁[h, w] ← x₁[h+dy, w+dx]`; finally `x ← clip(x₁/255 ⊛ g_σ, 0, 1)`.
//!
//! # Defaults
//! `glass_blur` of the reference, including its NumPy-view "swap", which in effect copies the
//! displaced pixel instead of swapping (see the reference README). Blurs as in
//! [`crate::gaussian_blur`]. The loop bounds follow the actual image size (the reference hard-codes
//! 32 or 224). Cost is linear in the pixel count, unlike the reference's Python loop.

use crate::error::Result;
use crate::image::{to_unit_f64, trunc_u8, unit_to_u8, ImageU8};
use crate::ops::{border::Border, filter::gaussian_filter_hwc};
use crate::params::Table;
use crate::rng::RandomSource;

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    rng: &mut R,
) -> Result<ImageU8> {
    let p = t.glass_blur[s];
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let mut x = to_unit_f64(img);
    gaussian_filter_hwc(&mut x, h, w, c, p.sigma, Border::Nearest);
    let mut px: Vec<u8> = x.iter().map(|&v| trunc_u8(v * 255.0)).collect();
    let d = p.max_delta;
    let (hi, wi) = (h as i64, w as i64);
    for _ in 0..p.iterations {
        let mut yy = hi - d;
        while yy > d {
            let mut xx = wi - d;
            while xx > d {
                let dx = rng.randint(-d, d);
                let dy = rng.randint(-d, d);
                let (sy, sx) = ((yy + dy) as usize, (xx + dx) as usize);
                let dst = (yy as usize * w + xx as usize) * c;
                let src = (sy * w + sx) * c;
                px.copy_within(src..src + c, dst);
                xx -= 1;
            }
            yy -= 1;
        }
    }
    let mut y: Vec<f64> = px.iter().map(|&v| v as f64 / 255.0).collect();
    gaussian_filter_hwc(&mut y, h, w, c, p.sigma, Border::Nearest);
    Ok(ImageU8::from_parts(
        h,
        w,
        c,
        y.iter().map(|&v| unit_to_u8(v)).collect(),
    ))
}
