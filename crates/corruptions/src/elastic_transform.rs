//! Elastic transform: a random affine warp followed by a smooth random displacement field.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261; elastic distortion after Simard et al.,
//! ICDAR 2003.
//!
//! # Formula
//! Affine: three control points around the centre (`±⌊min(H, W)/3⌋`) are moved by `U(−a, a)` and
//! the image is warped accordingly (bilinear, reflected borders). Displacement:
//! `dx, dy = α·(U(−1, 1)^{H×W} ⊛ g_σ)` (Gaussian truncated at 3σ, reflected borders) and
//! `x(i, j) ← x(i + dy, j + dx)` with bilinear interpolation (half-sample reflected borders).
//! CIFAR (α, σ, a) = 32·(0, 0, 0.08) … 32·(0.1, 0.03, 0.03); ImageNet 244·(2, 0.7, 0.1) …
//!
//! # Defaults
//! `elastic_transform` of `make_cifar_c.py` / `make_imagenet_c.py` (OpenCV `getAffineTransform` +
//! `warpAffine` with 1/32-pixel coordinate quantisation, SciPy `gaussian` + `map_coordinates`,
//! order 1, mode `reflect`); `f32` image as in the reference.

use crate::error::Result;
use crate::image::{trunc_u8_f32, ImageU8};
use crate::ops::border::Border;
use crate::ops::cv::{affine_from_points, warp_affine_f32};
use crate::ops::filter::gaussian_filter;
use crate::params::Table;
use crate::rng::RandomSource;

/// SciPy `map_coordinates` coordinate folding for mode `reflect` (half-sample symmetric).
#[inline]
fn reflect_coord(v: f64, n: usize) -> f64 {
    let len = n as f64;
    if n == 1 {
        return 0.0;
    }
    let sz2 = 2.0 * len;
    let mut v = v;
    if v < 0.0 {
        if v < -sz2 {
            v += sz2 * (-v / sz2).trunc();
        }
        v = if v < -len { v + sz2 } else { -v - 1.0 };
    } else if v > len - 1.0 {
        v -= sz2 * (v / sz2).trunc();
        if v >= len {
            v = sz2 - v - 1.0;
        }
    }
    v
}

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    rng: &mut R,
) -> Result<ImageU8> {
    let p = t.elastic_transform[s];
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let image: Vec<f32> = img.as_slice().iter().map(|&v| v as f32 / 255.0).collect();

    // Random affine (points written (row, col) but read by OpenCV as (x, y), as in the reference).
    let (cs0, cs1) = ((h / 2) as f64, (w / 2) as f64);
    let sq = (h.min(w) / 3) as f64;
    let pts1 = [
        [cs0 + sq, cs1 + sq],
        [cs0 + sq, cs1 - sq],
        [cs0 - sq, cs1 - sq],
    ];
    let mut pts2 = pts1;
    for pt in pts2.iter_mut() {
        for v in pt.iter_mut() {
            *v = (*v as f32 + rng.uniform(-p.affine, p.affine) as f32) as f64;
        }
    }
    let warped = match affine_from_points(&pts1, &pts2) {
        Some(m) => warp_affine_f32(&image, h, w, c, &m),
        None => image,
    };

    let field = |rng: &mut R| -> Vec<f32> {
        let mut d: Vec<f64> = (0..h * w).map(|_| rng.uniform(-1.0, 1.0)).collect();
        gaussian_filter(&mut d, h, w, p.sigma, Border::Reflect, 3.0);
        d.iter().map(|&v| (v * p.alpha) as f32).collect()
    };
    let dx = field(rng);
    let dy = field(rng);

    let mut out = vec![0u8; h * w * c];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let cy = reflect_coord(y as f64 + dy[i] as f64, h);
            let cx = reflect_coord(x as f64 + dx[i] as f64, w);
            let (fy, fx) = (cy.floor(), cx.floor());
            let (ty, tx) = (cy - fy, cx - fx);
            let y0 = Border::Reflect.index(fy as isize, h);
            let y1 = Border::Reflect.index(fy as isize + 1, h);
            let x0 = Border::Reflect.index(fx as isize, w);
            let x1 = Border::Reflect.index(fx as isize + 1, w);
            for ch in 0..c {
                let g = |yy: usize, xx: usize| warped[(yy * w + xx) * c + ch] as f64;
                let v = g(y0, x0) * (1.0 - ty) * (1.0 - tx)
                    + g(y0, x1) * (1.0 - ty) * tx
                    + g(y1, x0) * ty * (1.0 - tx)
                    + g(y1, x1) * ty * tx;
                out[i * c + ch] = trunc_u8_f32((v as f32).clamp(0.0, 1.0) * 255.0);
            }
        }
    }
    Ok(ImageU8::from_parts(h, w, c, out))
}
