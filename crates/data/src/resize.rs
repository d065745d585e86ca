//! torchvision-compatible `Resize(r)` + `CenterCrop(c)` on 8-bit interleaved images.
//!
//! Models trained with torchvision see images that PIL resized with its antialiased
//! bilinear filter (a triangle filter widened by the scale factor when shrinking), computed
//! in fixed point with rounding to 8 bits after each of the two separable passes. Plain
//! bilinear interpolation would alias badly when shrinking large photos and shift accuracy,
//! so this module re-implements Pillow's `ImagingResample` (`Resample.c`) step for step.

/// An 8-bit image, pixels interleaved (HWC).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Image8 {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

/// Pillow's `PRECISION_BITS` for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Output size of torchvision `Resize(size)`: the shorter side becomes `size`, the longer
/// one is scaled and truncated (`int(size * long / short)`). Returns (width, height).
pub(crate) fn resized_size(width: usize, height: usize, size: usize) -> (usize, usize) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = ((size as f64 * long as f64 / short as f64) as usize).max(1);
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// Filter weights of one output pixel: first input index and weights in fixed point.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` for the bilinear filter (support 1) plus
/// `normalize_coeffs_8bpc`.
fn coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0 times filterscale
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let t = ((x + xmin) as f64 - center + 0.5) * ss;
            let w = (1.0 - t.abs()).max(0.0);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(n) {
            let w = if ww != 0.0 { kx / ww } else { *kx };
            let f = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if f < 0.0 {
                (f - 0.5) as i32
            } else {
                (f + 0.5) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs {
        bounds,
        ksize,
        weights,
    }
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS) << 8 {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes with Pillow's antialiased bilinear filter: horizontal pass, then vertical pass,
/// each rounded to 8 bits (as Pillow does).
pub(crate) fn resize_bilinear(img: &Image8, out_w: usize, out_h: usize) -> Image8 {
    let c = img.channels;
    let mut cur = img.clone();
    if out_w != cur.width {
        let co = coeffs(cur.width, out_w);
        let mut out = vec![0u8; out_w * cur.height * c];
        for y in 0..cur.height {
            let row = &cur.data[y * cur.width * c..(y + 1) * cur.width * c];
            for xx in 0..out_w {
                let (xmin, n) = co.bounds[xx];
                let k = &co.weights[xx * co.ksize..xx * co.ksize + n];
                for ch in 0..c {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (x, &w) in k.iter().enumerate() {
                        ss += row[(x + xmin) * c + ch] as i64 * w as i64;
                    }
                    out[(y * out_w + xx) * c + ch] = clip8(ss);
                }
            }
        }
        cur = Image8 {
            width: out_w,
            height: cur.height,
            channels: c,
            data: out,
        };
    }
    if out_h != cur.height {
        let co = coeffs(cur.height, out_h);
        let w = cur.width;
        let mut out = vec![0u8; w * out_h * c];
        for yy in 0..out_h {
            let (ymin, n) = co.bounds[yy];
            let k = &co.weights[yy * co.ksize..yy * co.ksize + n];
            for i in 0..w * c {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for (y, &wt) in k.iter().enumerate() {
                    ss += cur.data[(y + ymin) * w * c + i] as i64 * wt as i64;
                }
                out[yy * w * c + i] = clip8(ss);
            }
        }
        cur = Image8 {
            width: w,
            height: out_h,
            channels: c,
            data: out,
        };
    }
    cur
}

/// Python's `int(round(x))`: ties to even.
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// torchvision `CenterCrop(size)`: zero-pads first when the image is smaller, then crops
/// the centre with Python's rounding of the offsets.
pub(crate) fn center_crop(img: &Image8, size: usize) -> Image8 {
    let c = img.channels;
    let mut cur = img.clone();
    if size > cur.width || size > cur.height {
        let (pl, pr) = if size > cur.width {
            ((size - cur.width) / 2, (size - cur.width).div_ceil(2))
        } else {
            (0, 0)
        };
        let (pt, pb) = if size > cur.height {
            ((size - cur.height) / 2, (size - cur.height).div_ceil(2))
        } else {
            (0, 0)
        };
        let nw = cur.width + pl + pr;
        let nh = cur.height + pt + pb;
        let mut data = vec![0u8; nw * nh * c];
        for y in 0..cur.height {
            let src = &cur.data[y * cur.width * c..(y + 1) * cur.width * c];
            let off = ((y + pt) * nw + pl) * c;
            data[off..off + src.len()].copy_from_slice(src);
        }
        cur = Image8 {
            width: nw,
            height: nh,
            channels: c,
            data,
        };
        if cur.width == size && cur.height == size {
            return cur;
        }
    }
    let top = py_round((cur.height - size) as f64 / 2.0) as usize;
    let left = py_round((cur.width - size) as f64 / 2.0) as usize;
    let mut data = Vec::with_capacity(size * size * c);
    for y in top..top + size {
        let off = (y * cur.width + left) * c;
        data.extend_from_slice(&cur.data[off..off + size * c]);
    }
    Image8 {
        width: size,
        height: size,
        channels: c,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(width: usize, height: usize, data: Vec<u8>) -> Image8 {
        Image8 {
            width,
            height,
            channels: 1,
            data,
        }
    }

    #[test]
    fn resize_size_follows_torchvision() {
        assert_eq!(resized_size(500, 375, 256), (341, 256));
        assert_eq!(resized_size(375, 500, 256), (256, 341));
        assert_eq!(resized_size(32, 32, 16), (16, 16));
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = gray(7, 5, vec![123; 35]);
        let out = resize_bilinear(&img, 3, 2);
        assert_eq!(out.data, vec![123; 6]);
        let up = resize_bilinear(&img, 13, 11);
        assert!(up.data.iter().all(|&v| v == 123));
    }

    #[test]
    fn halving_uses_the_widened_triangle_filter() {
        // Hand-computed from Pillow's formulas: shrinking 4 -> 2 widens the triangle to a
        // support of 2; output 0 (centre 1.0) weighs inputs 0,1,2 by .75,.75,.25, output 1
        // (centre 3.0) inputs 1,2,3 by .25,.75,.75, each renormalised by 1.75:
        // (75 + 50) / 1.75 = 71.4 -> 71 and (25 + 150 + 30) / 1.75 = 117.1 -> 117.
        let img = gray(4, 1, vec![0, 100, 200, 40]);
        let out = resize_bilinear(&img, 2, 1);
        assert_eq!(out.data, vec![71, 117]);
    }

    #[test]
    fn matches_pillow_bilinear() {
        // Reference values from Pillow 13: Image.fromarray(a, 'L').resize(size, BILINEAR)
        // with a[i][j] = (37 i + 11 j) % 256 on a 7x5 image.
        let data: Vec<u8> = (0..5)
            .flat_map(|i| (0..7).map(move |j| ((i * 37 + j * 11) % 256) as u8))
            .collect();
        let img = gray(7, 5, data);
        assert_eq!(
            resize_bilinear(&img, 3, 2).data,
            [46, 70, 94, 120, 144, 168]
        );
        let up: [u8; 88] = [
            0, 5, 12, 19, 26, 33, 40, 47, 54, 61, 66, 16, 21, 28, 35, 42, 49, 56, 63, 70, 77, 82,
            39, 44, 51, 58, 65, 72, 79, 86, 93, 100, 105, 62, 67, 74, 81, 88, 95, 102, 109, 116,
            123, 128, 86, 91, 98, 105, 112, 119, 126, 133, 140, 147, 152, 109, 114, 121, 128, 135,
            142, 149, 156, 163, 170, 175, 132, 137, 144, 151, 158, 165, 172, 179, 186, 193, 198,
            148, 153, 160, 167, 174, 181, 188, 195, 202, 209, 214,
        ];
        assert_eq!(resize_bilinear(&img, 11, 8).data, up);
    }

    #[test]
    fn center_crop_offsets_and_padding() {
        let img = gray(5, 4, (0..20).collect());
        let c = center_crop(&img, 2);
        // top = round(1.0) = 1, left = round(1.5) = 2 (ties to even)
        assert_eq!(c.data, vec![7, 8, 12, 13]);
        let p = center_crop(&gray(1, 1, vec![9]), 3);
        assert_eq!(p.data, vec![0, 0, 0, 0, 9, 0, 0, 0, 0]);
    }
}
