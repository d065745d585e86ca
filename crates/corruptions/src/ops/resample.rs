//! Pillow's `Image.resize(..., BOX)` for 8-bit images and OpenCV's bilinear `resize`.

/// Pillow's fixed-point precision for 8-bit resampling (`PRECISION_BITS = 32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// Pillow `precompute_coeffs` for the BOX filter (support 0.5) and `normalize_coeffs_8bpc`:
/// per output sample the first source index, tap count and fixed-point weights.
fn box_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 0.5 * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin);
            let mut k: Vec<f64> = (0..n)
                .map(|x| {
                    let t = (x as f64 + xmin as f64 - center + 0.5) * ss;
                    if t > -0.5 && t <= 0.5 {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            let ww: f64 = k.iter().sum();
            if ww != 0.0 {
                k.iter_mut().for_each(|v| *v /= ww);
            }
            let kk = k
                .iter()
                .map(|&v| {
                    if v < 0.0 {
                        (-0.5 + v * (1u64 << PRECISION_BITS) as f64) as i32
                    } else {
                        (0.5 + v * (1u64 << PRECISION_BITS) as f64) as i32
                    }
                })
                .collect();
            (xmin, kk)
        })
        .collect()
}

#[inline]
fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Pillow `Image.resize((out_w, out_h), Image.BOX)` of an HWC `u8` image: a horizontal pass over the
/// rows the vertical pass needs, rounded to 8 bits, then a vertical pass, as in `ImagingResampleInner`.
pub fn pil_box_resize(
    src: &[u8],
    h: usize,
    w: usize,
    c: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<u8> {
    let need_h = out_w != w;
    let need_v = out_h != h;
    let kv = box_coeffs(h, out_h);
    let (ybox_first, ybox_last) = if need_v {
        let last = kv.last().map(|(s, k)| s + k.len()).unwrap_or(h);
        (kv[0].0, last)
    } else {
        (0, h)
    };
    // Horizontal pass.
    let (tmp, th) = if need_h {
        let kh = box_coeffs(w, out_w);
        let th = ybox_last - ybox_first;
        let mut tmp = vec![0u8; th * out_w * c];
        for yy in 0..th {
            let row = &src[(yy + ybox_first) * w * c..(yy + ybox_first + 1) * w * c];
            for (xx, (xmin, k)) in kh.iter().enumerate() {
                for ch in 0..c {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (x, &kx) in k.iter().enumerate() {
                        ss += row[(xmin + x) * c + ch] as i64 * kx as i64;
                    }
                    tmp[(yy * out_w + xx) * c + ch] = clip8(ss);
                }
            }
        }
        (tmp, th)
    } else {
        (
            src[ybox_first * w * c..ybox_last * w * c].to_vec(),
            ybox_last - ybox_first,
        )
    };
    if !need_v {
        debug_assert_eq!(th, h);
        return tmp;
    }
    // Vertical pass.
    let mut out = vec![0u8; out_h * out_w * c];
    for (yy, (ymin, k)) in kv.iter().enumerate() {
        let ymin = ymin - ybox_first;
        for xx in 0..out_w * c {
            let mut ss: i64 = 1 << (PRECISION_BITS - 1);
            for (y, &ky) in k.iter().enumerate() {
                ss += tmp[(ymin + y) * out_w * c + xx] as i64 * ky as i64;
            }
            out[yy * out_w * c + xx] = clip8(ss);
        }
    }
    out
}

/// OpenCV `resize(src, (out_w, out_h), INTER_LINEAR)` of an HWC `u8` image: half-pixel-centred source
/// coordinates `(d + 0.5)/scale − 0.5`, clamped at the borders, weights in 11-bit fixed point.
/// Used for the frost textures (where the CIFAR scale 0.2 samples exact pixels `5i + 2`).
pub fn cv_resize_linear(
    src: &[u8],
    h: usize,
    w: usize,
    c: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<u8> {
    const BITS: i64 = 11;
    const ONE: i64 = 1 << BITS;
    let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, i64, i64)> {
        let scale = n_in as f64 / n_out as f64;
        (0..n_out)
            .map(|d| {
                let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
                let mut s = f.floor() as i64;
                let mut t = f - s as f32;
                if s < 0 {
                    s = 0;
                    t = 0.0;
                }
                if s >= n_in as i64 - 1 {
                    s = n_in as i64 - 1;
                    t = 0.0;
                }
                let w1 = (t * ONE as f32).round() as i64;
                let s1 = (s + 1).min(n_in as i64 - 1);
                (s as usize, s1 as usize, ONE - w1, w1)
            })
            .collect()
    };
    let ay = axis(h, out_h);
    let ax = axis(w, out_w);
    let mut out = vec![0u8; out_h * out_w * c];
    for (y, &(y0, y1, wy0, wy1)) in ay.iter().enumerate() {
        for (x, &(x0, x1, wx0, wx1)) in ax.iter().enumerate() {
            for ch in 0..c {
                let p = |yy: usize, xx: usize| src[(yy * w + xx) * c + ch] as i64;
                let top = p(y0, x0) * wx0 + p(y0, x1) * wx1;
                let bot = p(y1, x0) * wx0 + p(y1, x1) * wx1;
                let v = (top * wy0 + bot * wy1 + (1 << (2 * BITS - 1))) >> (2 * BITS);
                out[(y * out_w + x) * c + ch] = v.clamp(0, 255) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_downscale_by_two_averages_pairs() {
        let src: Vec<u8> = vec![10, 20, 30, 41];
        let out = pil_box_resize(&src, 1, 4, 1, 1, 2);
        assert_eq!(out, vec![15, 36]);
    }

    #[test]
    fn linear_fifth_picks_pixels() {
        let src: Vec<u8> = (0..100).map(|v| v as u8).collect();
        let out = cv_resize_linear(&src, 10, 10, 1, 2, 2);
        assert_eq!(out, vec![22, 27, 72, 77]);
    }
}
