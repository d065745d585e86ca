//! Spatter: water droplets or mud splashes, one of the 4 extra corruptions.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! Liquid layer `L = N(μ, s²) ⊛ g_σ`, `L[L < t] = 0`.
//! Water: `e = 255 − Canny(uint8(255·L), 50, 150)`, `d = equalize(uint8(box₃(min(dist(e), 20))))`,
//! `d = box₃(filter2D(d, [[−2,−1,0],[−1,1,1],[0,1,2]]))`, `m = L·d / max(L·d)·k` and
//! `x ← clip(x + m·(175, 238, 238)/255, 0, 1)`.
//! Mud: `m = [L > t] ⊛ g_k`, `m[m < 0.8] = 0`, `x ← clip(x·(1 − m) + m·(63, 42, 20)/255, 0, 1)`.
//!
//! # Defaults
//! `spatter` of the reference with OpenCV's Canny (L1 gradient), 5×5 chamfer distance transform,
//! histogram equalisation and box filters re-implemented in [`crate::ops::cv`]. When the liquid layer
//! is empty the reference divides 0 by 0; here the image is returned unchanged. Grayscale images use
//! the BT.601 luma of the colours.

use crate::error::Result;
use crate::image::{unit_to_u8, ImageU8, LUMA};
use crate::ops::border::Border;
use crate::ops::cv::{canny, distance_transform_5x5, equalize_hist, filter2d_u8_3x3};
use crate::ops::filter::{box3_f32, box3_u8, gaussian_filter};
use crate::params::Table;
use crate::rng::RandomSource;

fn colour(rgb: [f64; 3], c: usize) -> Vec<f64> {
    if c == 3 {
        rgb.iter().map(|v| v / 255.0).collect()
    } else {
        vec![(LUMA[0] * rgb[0] + LUMA[1] * rgb[1] + LUMA[2] * rgb[2]) / 255.0]
    }
}

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    rng: &mut R,
) -> Result<ImageU8> {
    let p = t.spatter[s];
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let x: Vec<f32> = img.as_slice().iter().map(|&v| v as f32 / 255.0).collect();
    let mut liquid: Vec<f64> = (0..h * w).map(|_| rng.normal(p.loc, p.scale)).collect();
    gaussian_filter(&mut liquid, h, w, p.sigma, Border::Nearest, 4.0);
    liquid.iter_mut().for_each(|v| {
        if *v < p.threshold {
            *v = 0.0
        }
    });
    let mut out = vec![0u8; h * w * c];
    if !p.mud {
        let l8: Vec<u8> = liquid.iter().map(|&v| (v * 255.0) as u8).collect();
        let edges = canny(&l8, h, w, 50, 150);
        let inv: Vec<u8> = edges.iter().map(|&v| 255 - v).collect();
        let dist: Vec<f32> = distance_transform_5x5(&inv, h, w)
            .iter()
            .map(|&v| v.min(20.0))
            .collect();
        let dist: Vec<u8> = box3_f32(&dist, h, w).iter().map(|&v| v as u8).collect();
        let dist = equalize_hist(&dist);
        let ker = [-2.0, -1.0, 0.0, -1.0, 1.0, 1.0, 0.0, 1.0, 2.0];
        let dist = filter2d_u8_3x3(&dist, h, w, &ker);
        let dist = box3_u8(&dist, h, w);
        let m: Vec<f32> = l8
            .iter()
            .zip(&dist)
            .map(|(&a, &b)| a as f32 * b as f32)
            .collect();
        let max = m.iter().copied().fold(0.0f32, f32::max);
        let col = colour([175.0, 238.0, 238.0], c);
        for i in 0..h * w {
            let mv = if max > 0.0 {
                m[i] / max * p.intensity as f32
            } else {
                0.0
            };
            for ch in 0..c {
                let v = x[i * c + ch] + mv * col[ch] as f32;
                out[i * c + ch] = unit_to_u8(v.clamp(0.0, 1.0) as f64);
            }
        }
    } else {
        let mut m: Vec<f64> = liquid
            .iter()
            .map(|&v| if v > p.threshold { 1.0 } else { 0.0 })
            .collect();
        gaussian_filter(&mut m, h, w, p.intensity, Border::Nearest, 4.0);
        let col = colour([63.0, 42.0, 20.0], c);
        for i in 0..h * w {
            let mv = m[i] as f32;
            let mv = if mv < 0.8 { 0.0 } else { mv };
            for ch in 0..c {
                let v = x[i * c + ch] * (1.0 - mv) + col[ch] as f32 * mv;
                out[i * c + ch] = unit_to_u8(v as f64);
            }
        }
    }
    Ok(ImageU8::from_parts(h, w, c, out))
}
