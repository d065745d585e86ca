//! The OpenCV routines the reference calls: `GaussianBlur` (disk kernel anti-aliasing), `Canny`,
//! `distanceTransform`, `equalizeHist`, `filter2D` to 8 bits, `getAffineTransform` and `warpAffine`.

use super::border::Border;

/// `cv2.getGaussianKernel(n, sigma, CV_32F)`: weights rounded to `f32` before and after normalising.
pub fn gaussian_kernel_f32(n: usize, sigma: f64) -> Vec<f32> {
    let scale2x = -0.5 / (sigma * sigma);
    let raw: Vec<f32> = (0..n)
        .map(|i| {
            let x = i as f64 - (n as f64 - 1.0) * 0.5;
            (scale2x * x * x).exp() as f32
        })
        .collect();
    let sum: f64 = raw.iter().map(|&v| v as f64).sum();
    let inv = 1.0 / sum;
    raw.iter().map(|&v| (v as f64 * inv) as f32).collect()
}

/// `cv2.GaussianBlur(src, (k, k), sigma)` on an `f32` plane (`BORDER_REFLECT_101`), separable: rows
/// then columns, each accumulated in `f32`.
pub fn gaussian_blur_f32(plane: &[f32], h: usize, w: usize, k: usize, sigma: f64) -> Vec<f32> {
    let kern = gaussian_kernel_f32(k, sigma);
    let r = k / 2;
    let mut tmp = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0f32;
            for (i, &kv) in kern.iter().enumerate() {
                let sx = Border::Reflect101.index(x as isize + i as isize - r as isize, w);
                s += plane[y * w + sx] * kv;
            }
            tmp[y * w + x] = s;
        }
    }
    let mut out = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0f32;
            for (i, &kv) in kern.iter().enumerate() {
                let sy = Border::Reflect101.index(y as isize + i as isize - r as isize, h);
                s += tmp[sy * w + x] * kv;
            }
            out[y * w + x] = s;
        }
    }
    out
}

/// `cv2.Canny(img, low, high)` (aperture 3, L1 gradient): Sobel gradients with replicated borders,
/// non-maximum suppression along the quantised gradient direction, hysteresis with 8-connectivity.
/// Returns 255 on edges, 0 elsewhere.
pub fn canny(img: &[u8], h: usize, w: usize, low: i32, high: i32) -> Vec<u8> {
    let px = |y: isize, x: isize| -> i32 {
        img[Border::Nearest.index(y, h) * w + Border::Nearest.index(x, w)] as i32
    };
    let mut dx = vec![0i32; h * w];
    let mut dy = vec![0i32; h * w];
    let mut mag = vec![0i32; (h + 2) * (w + 2)];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let gx = (px(y - 1, x + 1) + 2 * px(y, x + 1) + px(y + 1, x + 1))
                - (px(y - 1, x - 1) + 2 * px(y, x - 1) + px(y + 1, x - 1));
            let gy = (px(y + 1, x - 1) + 2 * px(y + 1, x) + px(y + 1, x + 1))
                - (px(y - 1, x - 1) + 2 * px(y - 1, x) + px(y - 1, x + 1));
            let i = y as usize * w + x as usize;
            dx[i] = gx;
            dy[i] = gy;
            mag[(y as usize + 1) * (w + 2) + x as usize + 1] = gx.abs() + gy.abs();
        }
    }
    // 0: candidate (weak), 1: not an edge, 2: edge.
    let mut map = vec![1u8; h * w];
    let mut stack = Vec::new();
    const SHIFT: i64 = 15;
    let tg22 = (0.414_213_562_373_095_f64 * (1 << SHIFT) as f64 + 0.5) as i64;
    let mw = w + 2;
    for y in 0..h {
        for x in 0..w {
            let mi = (y + 1) * mw + x + 1;
            let m = mag[mi];
            if m <= low {
                continue;
            }
            let xs = dx[y * w + x] as i64;
            let ys = dy[y * w + x] as i64;
            let ax = xs.abs();
            let ay = ys.abs() << SHIFT;
            let tg22x = ax * tg22;
            let is_max = if ay < tg22x {
                m > mag[mi - 1] && m >= mag[mi + 1]
            } else {
                let tg67x = tg22x + (ax << (SHIFT + 1));
                if ay > tg67x {
                    m > mag[mi - mw] && m >= mag[mi + mw]
                } else {
                    let s: isize = if (xs ^ ys) < 0 { -1 } else { 1 };
                    m > mag[(mi as isize - mw as isize - s) as usize]
                        && m > mag[(mi as isize + mw as isize + s) as usize]
                }
            };
            if is_max {
                if m > high {
                    map[y * w + x] = 2;
                    stack.push((y, x));
                } else {
                    map[y * w + x] = 0;
                }
            }
        }
    }
    while let Some((y, x)) = stack.pop() {
        for dy in -1..=1isize {
            for dx in -1..=1isize {
                let (ny, nx) = (y as isize + dy, x as isize + dx);
                if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
                    continue;
                }
                let j = ny as usize * w + nx as usize;
                if map[j] == 0 {
                    map[j] = 2;
                    stack.push((ny as usize, nx as usize));
                }
            }
        }
    }
    map.iter().map(|&v| if v == 2 { 255 } else { 0 }).collect()
}

/// `cv2.distanceTransform(img, DIST_L2, 5)`: 5×5 chamfer distance to the nearest zero pixel with
/// weights a = 1, b = 1.4, c = 2.1969 (two raster passes, pixels outside the image are far away).
pub fn distance_transform_5x5(img: &[u8], h: usize, w: usize) -> Vec<f32> {
    const A: f32 = 1.0;
    const B: f32 = 1.4;
    const C: f32 = 2.1969;
    let far = 1e6f32;
    let mut d: Vec<f32> = img
        .iter()
        .map(|&v| if v == 0 { 0.0 } else { far })
        .collect();
    let fwd: [(isize, isize, f32); 8] = [
        (-2, -1, C),
        (-2, 1, C),
        (-1, -2, C),
        (-1, -1, B),
        (-1, 0, A),
        (-1, 1, B),
        (-1, 2, C),
        (0, -1, A),
    ];
    let get = |d: &[f32], y: isize, x: isize| -> f32 {
        if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
            far
        } else {
            d[y as usize * w + x as usize]
        }
    };
    for y in 0..h as isize {
        for x in 0..w as isize {
            let i = y as usize * w + x as usize;
            if d[i] == 0.0 {
                continue;
            }
            let mut best = d[i];
            for &(oy, ox, c) in &fwd {
                best = best.min(get(&d, y + oy, x + ox) + c);
            }
            d[i] = best;
        }
    }
    for y in (0..h as isize).rev() {
        for x in (0..w as isize).rev() {
            let i = y as usize * w + x as usize;
            if d[i] == 0.0 {
                continue;
            }
            let mut best = d[i];
            for &(oy, ox, c) in &fwd {
                best = best.min(get(&d, y - oy, x - ox) + c);
            }
            d[i] = best;
        }
    }
    d
}

/// `cv2.equalizeHist` on `u8` data.
pub fn equalize_hist(img: &[u8]) -> Vec<u8> {
    let mut hist = [0usize; 256];
    for &v in img {
        hist[v as usize] += 1;
    }
    let total = img.len();
    let mut lut = [0u8; 256];
    let mut i = 0;
    while i < 256 && hist[i] == 0 {
        i += 1;
    }
    if i == 256 {
        return img.to_vec();
    }
    if hist[i] == total {
        return vec![i as u8; total];
    }
    let scale = 255.0f32 / (total - hist[i]) as f32;
    let mut sum = 0usize;
    lut[i] = 0;
    for j in i + 1..256 {
        sum += hist[j];
        lut[j] = (sum as f32 * scale).round_ties_even().clamp(0.0, 255.0) as u8;
    }
    img.iter().map(|&v| lut[v as usize]).collect()
}

/// `cv2.filter2D(img, CV_8U, kernel3x3)` (correlation, `BORDER_REFLECT_101`, saturating rounding).
pub fn filter2d_u8_3x3(img: &[u8], h: usize, w: usize, k: &[f32; 9]) -> Vec<u8> {
    let mut out = vec![0u8; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0f32;
            for ky in 0..3 {
                let sy = Border::Reflect101.index(y as isize + ky as isize - 1, h);
                for kx in 0..3 {
                    let sx = Border::Reflect101.index(x as isize + kx as isize - 1, w);
                    s += img[sy * w + sx] as f32 * k[ky * 3 + kx];
                }
            }
            out[y * w + x] = s.round_ties_even().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// `cv2.getAffineTransform(src, dst)`: the 2×3 matrix `M` with `M·(x, y, 1)ᵀ = dst` for three points.
pub fn affine_from_points(src: &[[f64; 2]; 3], dst: &[[f64; 2]; 3]) -> Option<[f64; 6]> {
    // Solve the 6×6 system of getAffineTransform by Gaussian elimination with partial pivoting.
    let mut a = [[0.0f64; 7]; 6];
    for i in 0..3 {
        a[2 * i] = [src[i][0], src[i][1], 1.0, 0.0, 0.0, 0.0, dst[i][0]];
        a[2 * i + 1] = [0.0, 0.0, 0.0, src[i][0], src[i][1], 1.0, dst[i][1]];
    }
    for col in 0..6 {
        let piv = (col..6).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))?;
        if a[piv][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, piv);
        for r in 0..6 {
            if r != col {
                let f = a[r][col] / a[col][col];
                let pivot_row = a[col];
                for (v, p) in a[r].iter_mut().zip(pivot_row).skip(col) {
                    *v -= f * p;
                }
            }
        }
    }
    Some(std::array::from_fn(|i| a[i][6] / a[i][i]))
}

/// `cv2.warpAffine(src, M, (w, h), INTER_LINEAR, BORDER_REFLECT_101)` of an HWC `f32` image as
/// OpenCV 5 computes it for `f32` data: `dst(x, y) = src(M⁻¹·(x, y, 1))` with the inverse matrix and
/// the source coordinates in `f32` (no 1/32-pixel quantisation), and bilinear interpolation as two
/// horizontal lerps followed by a vertical one.
pub fn warp_affine_f32(src: &[f32], h: usize, w: usize, c: usize, m: &[f64; 6]) -> Vec<f32> {
    let det = m[0] * m[4] - m[1] * m[3];
    let d = if det != 0.0 { 1.0 / det } else { 0.0 };
    let a11 = m[4] * d;
    let a22 = m[0] * d;
    let a12 = -m[1] * d;
    let a21 = -m[3] * d;
    let b1 = -a11 * m[2] - a12 * m[5];
    let b2 = -a21 * m[2] - a22 * m[5];
    let inv = [a11, a12, b1, a21, a22, b2].map(|v| v as f32);
    let mut out = vec![0f32; h * w * c];
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f32, y as f32);
            let sx = inv[0] * xf + inv[1] * yf + inv[2];
            let sy = inv[3] * xf + inv[4] * yf + inv[5];
            let (ix, iy) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - ix, sy - iy);
            let x0 = Border::Reflect101.index(ix as isize, w);
            let x1 = Border::Reflect101.index(ix as isize + 1, w);
            let y0 = Border::Reflect101.index(iy as isize, h);
            let y1 = Border::Reflect101.index(iy as isize + 1, h);
            for ch in 0..c {
                let p = |yy: usize, xx: usize| src[(yy * w + xx) * c + ch];
                let top = p(y0, x0) + fx * (p(y0, x1) - p(y0, x0));
                let bot = p(y1, x0) + fx * (p(y1, x1) - p(y1, x0));
                out[(y * w + x) * c + ch] = top + fy * (bot - top);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_identity_and_warp() {
        let p = [[1.0, 2.0], [5.0, 2.0], [3.0, 7.0]];
        let m = affine_from_points(&p, &p).unwrap();
        for (a, b) in m.iter().zip([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]) {
            assert!((a - b).abs() < 1e-12);
        }
        let img: Vec<f32> = (0..30).map(|v| v as f32).collect();
        assert_eq!(warp_affine_f32(&img, 5, 6, 1, &m), img);
    }

    #[test]
    fn distance_and_canny_basics() {
        let mut img = vec![255u8; 7 * 7];
        img[3 * 7 + 3] = 0;
        let d = distance_transform_5x5(&img, 7, 7);
        assert_eq!(d[3 * 7 + 4], 1.0);
        assert!((d[4 * 7 + 4] - 1.4).abs() < 1e-6);
        assert!((d[5 * 7 + 4] - 2.1969).abs() < 1e-6);
        let mut step = vec![0u8; 10 * 10];
        for y in 0..10 {
            for x in 5..10 {
                step[y * 10 + x] = 200;
            }
        }
        let e = canny(&step, 10, 10, 50, 150);
        assert!(e.contains(&255));
        assert!(e
            .iter()
            .enumerate()
            .all(|(i, &v)| v == 0 || (4..=5).contains(&(i % 10))));
    }
}
