//! Fog: a diamond-square plasma fractal added to the image.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `m = max(x)`, `x ← clip((x + c·P)·m/(m + c), 0, 1)` with `P` a plasma fractal in `[0, 1]`
//! (diamond-square, perturbation amplitude 100 divided by the decay `d` each octave);
//! (c, d) = (0.2, 3) … (1.5, 1.75) (CIFAR), (1.5, 2) … (3, 1.4) (ImageNet).
//!
//! # Defaults
//! `plasma_fractal` of the reference (after FLHerne/mapgen). The map side is the next power of two
//! at least the longer image side (32 for CIFAR, 256 for ImageNet at 224, as in the reference), and
//! its top-left `H × W` corner is used.

use crate::error::Result;
use crate::image::{to_unit_f64, unit_to_u8, ImageU8};
use crate::params::Table;
use crate::rng::RandomSource;

/// The reference's `plasma_fractal(mapsize, wibbledecay)`: an `n × n` map (`n` a power of two)
/// normalised to `[0, 1]`.
pub fn plasma_fractal<R: RandomSource>(n: usize, wibble_decay: f64, rng: &mut R) -> Vec<f64> {
    let mut map = vec![0.0f64; n * n];
    let mut step = n;
    let mut wibble = 100.0f64;
    while step >= 2 {
        let half = step / 2;
        let m = n / step; // grid points per axis at this step
                          // fillsquares: centre of each square = mean of its 4 corners (wrapping) + noise.
        for i in 0..m {
            for j in 0..m {
                let c = |a: usize, b: usize| map[(a % m) * step * n + (b % m) * step];
                let s = c(i, j) + c(i + 1, j) + (c(i, j + 1) + c(i + 1, j + 1));
                map[(i * step + half) * n + j * step + half] =
                    s / 4.0 + wibble * rng.uniform(-wibble, wibble);
            }
        }
        // filldiamonds
        let dr = |map: &[f64], a: usize, b: usize| {
            map[((a % m) * step + half) * n + (b % m) * step + half]
        };
        let ul = |map: &[f64], a: usize, b: usize| map[(a % m) * step * n + (b % m) * step];
        let mut lt = vec![0.0; m * m];
        for i in 0..m {
            for j in 0..m {
                let ldr = dr(&map, i, j) + dr(&map, i + m - 1, j);
                let lul = ul(&map, i, j) + ul(&map, i, j + 1);
                lt[i * m + j] = ldr + lul;
            }
        }
        for i in 0..m {
            for j in 0..m {
                map[i * step * n + j * step + half] =
                    lt[i * m + j] / 4.0 + wibble * rng.uniform(-wibble, wibble);
            }
        }
        let mut tt = vec![0.0; m * m];
        for i in 0..m {
            for j in 0..m {
                let tdr = dr(&map, i, j) + dr(&map, i, j + m - 1);
                let tul = ul(&map, i, j) + ul(&map, i + 1, j);
                tt[i * m + j] = tdr + tul;
            }
        }
        for i in 0..m {
            for j in 0..m {
                map[(i * step + half) * n + j * step] =
                    tt[i * m + j] / 4.0 + wibble * rng.uniform(-wibble, wibble);
            }
        }
        step /= 2;
        wibble /= wibble_decay;
    }
    let min = map.iter().copied().fold(f64::INFINITY, f64::min);
    map.iter_mut().for_each(|v| *v -= min);
    let max = map.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max > 0.0 {
        map.iter_mut().for_each(|v| *v /= max);
    }
    map
}

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    rng: &mut R,
) -> Result<ImageU8> {
    let p = t.fog[s];
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let n = h.max(w).next_power_of_two().max(2);
    let fractal = plasma_fractal(n, p.wibble_decay, rng);
    let x = to_unit_f64(img);
    let max_val = x.iter().copied().fold(0.0f64, f64::max);
    let mut out = vec![0u8; x.len()];
    for y in 0..h {
        for xx in 0..w {
            let f = p.strength * fractal[y * n + xx];
            for ch in 0..c {
                let i = (y * w + xx) * c + ch;
                out[i] = unit_to_u8((x[i] + f) * max_val / (max_val + p.strength));
            }
        }
    }
    Ok(ImageU8::from_parts(h, w, c, out))
}
