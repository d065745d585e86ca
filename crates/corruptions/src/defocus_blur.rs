//! Defocus blur: convolution with an anti-aliased disk.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! Disk `D(i, j) = [i² + j² ≤ r²] / Σ` on the grid `−8…8` (or `−r…r` when `r > 8`), smoothed by a
//! 3×3 (5×5 when `r > 8`) Gaussian of σ = alias blur with reflected borders, then
//! `x ← clip(x ⋆ K, 0, 1)` per channel (correlation, `BORDER_REFLECT_101`).
//!
//! # Defaults
//! `disk()` + `cv2.filter2D` of the reference; the kernel is built in `f32` like OpenCV, the
//! correlation runs in `f64` (OpenCV uses a DFT for this kernel size; the results agree to ~1e-15).

use crate::error::Result;
use crate::image::{merge_planes, split_planes, to_unit_f64, unit_to_u8, ImageU8};
use crate::ops::{cv::gaussian_blur_f32, filter::filter2d_f64};
use crate::params::Table;
use crate::rng::RandomSource;

/// The reference's `disk(radius, alias_blur)` kernel (`f32`), with its side length.
pub fn disk_kernel(radius: f64, alias_blur: f64) -> (Vec<f32>, usize) {
    let (coords, ksize): (Vec<f64>, usize) = if radius <= 8.0 {
        ((-8..=8).map(|v| v as f64).collect(), 3)
    } else {
        // np.arange(-radius, radius + 1)
        let n = (2.0 * radius + 1.0).ceil() as usize;
        ((0..n).map(|i| -radius + i as f64).collect(), 5)
    };
    let n = coords.len();
    let r2 = radius * radius;
    let mut k = vec![0f32; n * n];
    for (i, &y) in coords.iter().enumerate() {
        for (j, &x) in coords.iter().enumerate() {
            if x * x + y * y <= r2 {
                k[i * n + j] = 1.0;
            }
        }
    }
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    (gaussian_blur_f32(&k, n, n, ksize, alias_blur), n)
}

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    _rng: &mut R,
) -> Result<ImageU8> {
    let p = t.defocus_blur[s];
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let (k32, n) = disk_kernel(p.radius, p.alias_blur);
    let k: Vec<f64> = k32.iter().map(|&v| v as f64).collect();
    let planes = split_planes(&to_unit_f64(img), c);
    let out: Vec<Vec<u8>> = planes
        .iter()
        .map(|pl| {
            filter2d_f64(pl, h, w, &k, n, n)
                .iter()
                .map(|&v| unit_to_u8(v))
                .collect()
        })
        .collect();
    Ok(ImageU8::from_parts(h, w, c, merge_planes(&out)))
}
