//! Linear filters: SciPy's `gaussian_filter` (via scikit-image's `gaussian`) and OpenCV's `filter2D`.

use super::border::Border;
use super::simd::axpy;

/// SciPy's `_gaussian_kernel1d(sigma, 0, radius)` with `radius = int(truncate·σ + 0.5)`:
/// `w_i = exp(-i²/(2σ²)) / Σ_j exp(-j²/(2σ²))`, `i = -radius..=radius`.
pub fn gaussian_kernel1d(sigma: f64, truncate: f64) -> Vec<f64> {
    let radius = (truncate * sigma + 0.5) as isize;
    let sigma2 = sigma * sigma;
    let phi: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 / sigma2 * (x * x) as f64).exp())
        .collect();
    let sum: f64 = phi.iter().sum();
    phi.iter().map(|v| v / sum).collect()
}

/// SciPy `gaussian_filter(plane, sigma, mode, truncate)` on one `h × w` plane of `f64`, filtering
/// axis 0 then axis 1 as SciPy does. `sigma ≤ 1e-15` leaves the plane unchanged (SciPy skips it).
pub fn gaussian_filter(
    plane: &mut [f64],
    h: usize,
    w: usize,
    sigma: f64,
    mode: Border,
    truncate: f64,
) {
    if sigma <= 1e-15 {
        return;
    }
    let weights = gaussian_kernel1d(sigma, truncate);
    correlate_axis0(plane, h, w, &weights, mode);
    correlate_axis1(plane, h, w, &weights, mode);
}

/// Applies `gaussian_filter` to each channel of an HWC `f64` buffer (`channel_axis=-1`).
pub fn gaussian_filter_hwc(
    data: &mut [f64],
    h: usize,
    w: usize,
    channels: usize,
    sigma: f64,
    mode: Border,
) {
    if sigma <= 1e-15 {
        return;
    }
    if channels == 1 {
        gaussian_filter(data, h, w, sigma, mode, 4.0);
        return;
    }
    let mut planes = crate::image::split_planes(data, channels);
    for p in planes.iter_mut() {
        gaussian_filter(p, h, w, sigma, mode, 4.0);
    }
    data.copy_from_slice(&crate::image::merge_planes(&planes));
}

/// One output sample of SciPy's symmetric `correlate1d`: `x₀·w₀ + Σ_{j=-r}^{-1} (x_j + x_{-j})·w_j`,
/// in that order, so that sums round as in SciPy.
#[inline]
fn symmetric_dot(ext: &[f64], center: usize, weights: &[f64]) -> f64 {
    let r = weights.len() / 2;
    let mut acc = ext[center] * weights[r];
    for j in 1..=r {
        let jj = r - j + 1; // distance from centre, from r down to 1
        acc += (ext[center - jj] + ext[center + jj]) * weights[r - jj];
    }
    acc
}

/// Correlates every row (axis 1) with `weights` (odd length, symmetric).
pub fn correlate_axis1(plane: &mut [f64], h: usize, w: usize, weights: &[f64], mode: Border) {
    let r = weights.len() / 2;
    if r >= w && weights.len() > 64 {
        // out[i] = Σ_j M[i][j]·row[j], accumulated over j as axpy with the transposed matrix.
        let m = folded_matrix(w, weights, mode);
        let mut mt = vec![0.0; w * w];
        for i in 0..w {
            for j in 0..w {
                mt[j * w + i] = m[i * w + j];
            }
        }
        let mut out = vec![0.0; w];
        for y in 0..h {
            let row = &mut plane[y * w..(y + 1) * w];
            out.iter_mut().for_each(|v| *v = 0.0);
            for (j, &v) in row.iter().enumerate() {
                axpy(&mut out, v, &mt[j * w..(j + 1) * w]);
            }
            row.copy_from_slice(&out);
        }
        return;
    }
    if h < 4 || r == 0 {
        let mut ext = vec![0.0; w + 2 * r];
        for y in 0..h {
            let row = &mut plane[y * w..(y + 1) * w];
            for (k, e) in ext.iter_mut().enumerate() {
                *e = row[mode.index(k as isize - r as isize, w)];
            }
            for (x, v) in row.iter_mut().enumerate() {
                *v = symmetric_dot(&ext, x + r, weights);
            }
        }
        return;
    }
    // Transpose, filter along axis 0 (vectorised across columns), transpose back. Each output is
    // summed in the same order as `symmetric_dot`, so results are identical.
    let mut t = transpose(plane, h, w);
    correlate_axis0(&mut t, w, h, weights, mode);
    plane.copy_from_slice(&transpose(&t, w, h));
}

/// Transpose of an `h × w` row-major plane.
fn transpose(plane: &[f64], h: usize, w: usize) -> Vec<f64> {
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            out[x * h + y] = plane[y * w + x];
        }
    }
    out
}

/// Correlates every column (axis 0) with `weights` (odd length, symmetric).
pub fn correlate_axis0(plane: &mut [f64], h: usize, w: usize, weights: &[f64], mode: Border) {
    let r = weights.len() / 2;
    if r >= h && weights.len() > 64 {
        // Large kernels (elastic ImageNet, σ = 171 px): fold the kernel onto the h input rows once,
        // then out = M · plane, vectorised along rows.
        let m = folded_matrix(h, weights, mode);
        let mut out = vec![0.0; h * w];
        for i in 0..h {
            let orow = &mut out[i * w..(i + 1) * w];
            for j in 0..h {
                axpy(orow, m[i * h + j], &plane[j * w..(j + 1) * w]);
            }
        }
        plane.copy_from_slice(&out);
        return;
    }
    // Build a padded copy of the plane along axis 0, then filter row-wise in SciPy's order.
    let mut ext = vec![0.0; (h + 2 * r) * w];
    for k in 0..h + 2 * r {
        let src = mode.index(k as isize - r as isize, h);
        ext[k * w..(k + 1) * w].copy_from_slice(&plane[src * w..(src + 1) * w]);
    }
    let wc = weights[r];
    for y in 0..h {
        let out = &mut plane[y * w..(y + 1) * w];
        let c = y + r;
        for (x, o) in out.iter_mut().enumerate() {
            *o = ext[c * w + x] * wc;
        }
        for jj in (1..=r).rev() {
            let wj = weights[r - jj];
            let up = &ext[(c - jj) * w..(c - jj + 1) * w];
            let dn = &ext[(c + jj) * w..(c + jj + 1) * w];
            for x in 0..w {
                out[x] += (up[x] + dn[x]) * wj;
            }
        }
    }
}

/// `n × n` matrix `M[i][j] = Σ_{k : border(i+k-r) = j} w_k`, the kernel folded by the border mode.
fn folded_matrix(n: usize, weights: &[f64], mode: Border) -> Vec<f64> {
    let r = weights.len() / 2;
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        for (k, &wk) in weights.iter().enumerate() {
            let j = mode.index(i as isize + k as isize - r as isize, n);
            m[i * n + j] += wk;
        }
    }
    m
}

/// OpenCV `filter2D(plane, -1, kernel)` for `f64` data: correlation with a `kh × kw` kernel anchored at
/// its centre, `BORDER_REFLECT_101`.
pub fn filter2d_f64(
    plane: &[f64],
    h: usize,
    w: usize,
    kernel: &[f64],
    kh: usize,
    kw: usize,
) -> Vec<f64> {
    let (ry, rx) = (kh / 2, kw / 2);
    let pw = w + 2 * rx;
    let ph = h + 2 * ry;
    let mut padded = vec![0.0; ph * pw];
    for y in 0..ph {
        let sy = Border::Reflect101.index(y as isize - ry as isize, h);
        for x in 0..pw {
            let sx = Border::Reflect101.index(x as isize - rx as isize, w);
            padded[y * pw + x] = plane[sy * w + sx];
        }
    }
    let taps: Vec<(usize, f64)> = (0..kh * kw)
        .filter(|&i| kernel[i] != 0.0)
        .map(|i| ((i / kw) * pw + i % kw, kernel[i]))
        .collect();
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        let base = &padded[y * pw..];
        let orow = &mut out[y * w..(y + 1) * w];
        let mut x = 0;
        // Blocks of 16 outputs kept in registers over all taps (same per-output order of sums).
        while x + 16 <= w {
            let acc = conv_block16(base, x, &taps);
            orow[x..x + 16].copy_from_slice(&acc);
            x += 16;
        }
        for (xx, o) in orow.iter_mut().enumerate().skip(x) {
            let mut acc = 0.0;
            for &(off, k) in &taps {
                acc += k * base[off + xx];
            }
            *o = acc;
        }
    }
    out
}

#[inline(always)]
fn conv_block16_generic(base: &[f64], x: usize, taps: &[(usize, f64)]) -> [f64; 16] {
    let mut acc = [0.0f64; 16];
    for &(off, k) in taps {
        let src: &[f64; 16] = base[off + x..off + x + 16].try_into().unwrap();
        for i in 0..16 {
            acc[i] += k * src[i];
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn conv_block16_avx2(base: &[f64], x: usize, taps: &[(usize, f64)]) -> [f64; 16] {
    conv_block16_generic(base, x, taps)
}

#[inline]
fn conv_block16(base: &[f64], x: usize, taps: &[(usize, f64)]) -> [f64; 16] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 support was checked just above.
            return unsafe { conv_block16_avx2(base, x, taps) };
        }
    }
    conv_block16_generic(base, x, taps)
}

/// OpenCV `blur(src, (3, 3))` (normalised box filter, `BORDER_REFLECT_101`) on `f32` data.
pub fn box3_f32(plane: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0.0f32;
            for dy in -1..=1isize {
                let sy = Border::Reflect101.index(y as isize + dy, h);
                for dx in -1..=1isize {
                    let sx = Border::Reflect101.index(x as isize + dx, w);
                    s += plane[sy * w + sx];
                }
            }
            out[y * w + x] = s * (1.0 / 9.0);
        }
    }
    out
}

/// OpenCV `blur(src, (3, 3))` on `u8` data: the 3×3 mean rounded to nearest.
pub fn box3_u8(plane: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0u32;
            for dy in -1..=1isize {
                let sy = Border::Reflect101.index(y as isize + dy, h);
                for dx in -1..=1isize {
                    let sx = Border::Reflect101.index(x as isize + dx, w);
                    s += plane[sy * w + sx] as u32;
                }
            }
            out[y * w + x] = (s as f32 * (1.0 / 9.0)).round_ties_even() as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive correlation along axis 0: `Σ_k w_k · x[border(i + k − r)]`.
    fn naive_axis0(p: &[f64], h: usize, w: usize, wts: &[f64], mode: Border) -> Vec<f64> {
        let r = wts.len() / 2;
        let mut out = vec![0.0; h * w];
        for i in 0..h {
            for x in 0..w {
                out[i * w + x] = wts
                    .iter()
                    .enumerate()
                    .map(|(k, wk)| {
                        wk * p[mode.index(i as isize + k as isize - r as isize, h) * w + x]
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn gaussian_preserves_constants() {
        let mut p = vec![0.5; 7 * 9];
        gaussian_filter(&mut p, 7, 9, 1.3, Border::Nearest, 4.0);
        assert!(p.iter().all(|v| (v - 0.5).abs() < 1e-12));
    }

    #[test]
    fn large_kernel_fold_matches_naive_correlation() {
        let (h, w) = (20, 13);
        let a: Vec<f64> = (0..h * w).map(|i| ((i * 37) % 11) as f64).collect();
        for mode in [Border::Reflect, Border::Nearest, Border::Reflect101] {
            let wts = gaussian_kernel1d(30.0, 3.0); // 181 taps on 20 rows: folded path
            let mut b = a.clone();
            correlate_axis0(&mut b, h, w, &wts, mode);
            let n = naive_axis0(&a, h, w, &wts, mode);
            for (x, y) in b.iter().zip(&n) {
                assert!((x - y).abs() < 1e-9, "{mode:?}");
            }
        }
    }

    #[test]
    fn row_filter_via_transpose_equals_direct_symmetric_sum() {
        let (h, w) = (9, 17);
        let a: Vec<f64> = (0..h * w).map(|i| ((i * 53) % 29) as f64 / 7.0).collect();
        let wts = gaussian_kernel1d(1.7, 4.0);
        let mut fast = a.clone();
        correlate_axis1(&mut fast, h, w, &wts, Border::Nearest);
        let r = wts.len() / 2;
        for y in 0..h {
            let ext: Vec<f64> = (0..w + 2 * r)
                .map(|k| a[y * w + Border::Nearest.index(k as isize - r as isize, w)])
                .collect();
            for x in 0..w {
                // Bit-for-bit: the transposed path must sum in SciPy's order too.
                assert_eq!(fast[y * w + x], symmetric_dot(&ext, x + r, &wts));
            }
        }
    }

    #[test]
    fn filter2d_matches_naive() {
        let (h, w) = (11, 23);
        let a: Vec<f64> = (0..h * w).map(|i| ((i * 31) % 17) as f64).collect();
        let k: Vec<f64> = (0..25).map(|i| (i % 7) as f64 * 0.1).collect();
        let out = filter2d_f64(&a, h, w, &k, 5, 5);
        for y in 0..h {
            for x in 0..w {
                let mut s = 0.0;
                for ky in 0..5 {
                    for kx in 0..5 {
                        let sy = Border::Reflect101.index(y as isize + ky as isize - 2, h);
                        let sx = Border::Reflect101.index(x as isize + kx as isize - 2, w);
                        s += k[ky * 5 + kx] * a[sy * w + sx];
                    }
                }
                assert!((out[y * w + x] - s).abs() < 1e-9);
            }
        }
    }
}
