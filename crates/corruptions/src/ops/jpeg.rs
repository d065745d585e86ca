//! The lossy part of a baseline JPEG round trip as Pillow performs it with libjpeg-turbo:
//! `img.save(buf, 'JPEG', quality=q)` then decoding `buf`.
//!
//! Entropy coding is lossless, so it is skipped: the image goes through exactly the integer steps of
//! libjpeg-turbo's encoder and decoder —
//! RGB→YCbCr (`jccolor.c`, 16-bit fixed point), 2×2 chroma averaging with alternating bias 1, 2
//! (`jcsample.c`, 4:2:0, Pillow's default for RGB), level shift and the accurate integer forward DCT
//! (`jfdctint.c`, "islow"), quantisation by reciprocal multiplication with the IJG tables scaled by
//! `jpeg_set_quality(q, force_baseline=TRUE)` (`jcdctmgr.c`, 16-bit `DCTELEM` as in SIMD builds),
//! dequantisation and the islow inverse DCT with its range-limit table (`jidctint.c`), "fancy"
//! triangular chroma upsampling (`jdsample.c`) and YCbCr→RGB (`jdcolor.c`). Grayscale images use one
//! luminance component, as Pillow does for mode `L`.

const CONST_BITS: i32 = 13;
const PASS1_BITS: i32 = 2;
const FIX_0_298631336: i32 = 2446;
const FIX_0_390180644: i32 = 3196;
const FIX_0_541196100: i32 = 4433;
const FIX_0_765366865: i32 = 6270;
const FIX_0_899976223: i32 = 7373;
const FIX_1_175875602: i32 = 9633;
const FIX_1_501321110: i32 = 12299;
const FIX_1_847759065: i32 = 15137;
const FIX_1_961570560: i32 = 16069;
const FIX_2_053119869: i32 = 16819;
const FIX_2_562915447: i32 = 20995;
const FIX_3_072711026: i32 = 25172;

/// IJG luminance quantisation table (natural order).
const STD_LUMINANCE: [u32; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/// IJG chrominance quantisation table (natural order).
const STD_CHROMINANCE: [u32; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// `jpeg_quality_scaling` + `jpeg_add_quant_table(force_baseline = TRUE)`.
fn quant_table(basic: &[u32; 64], quality: u8) -> [u32; 64] {
    let q = (quality as u32).clamp(1, 100);
    let scale = if q < 50 { 5000 / q } else { 200 - q * 2 };
    let mut t = [0u32; 64];
    for i in 0..64 {
        t[i] = ((basic[i] * scale + 50) / 100).clamp(1, 255);
    }
    t
}

/// libjpeg-turbo `compute_reciprocal` for 16-bit `DCTELEM`: `(reciprocal, correction, shift)` such that
/// `q = ((|x| + correction) · reciprocal) >> shift`.
fn reciprocal(divisor: u32) -> (u32, u32, u32) {
    if divisor == 1 {
        return (1, 0, 0);
    }
    let b = 31 - divisor.leading_zeros(); // flss(divisor) - 1
    let mut r = 16 + b;
    let mut fq = (1u64 << r) / divisor as u64;
    let fr = (1u64 << r) % divisor as u64;
    let mut c = divisor / 2;
    if fr == 0 {
        fq >>= 1;
        r -= 1;
    } else if fr <= (divisor / 2) as u64 {
        c += 1;
    } else {
        fq += 1;
    }
    (fq as u32, c, r)
}

#[inline]
fn descale(x: i32, n: i32) -> i32 {
    (x + (1 << (n - 1))) >> n
}

/// `jpeg_fdct_islow` on level-shifted samples, in place.
fn fdct_islow(data: &mut [i32; 64]) {
    for row in 0..8 {
        let d = &mut data[row * 8..row * 8 + 8];
        let tmp0 = d[0] + d[7];
        let tmp7 = d[0] - d[7];
        let tmp1 = d[1] + d[6];
        let tmp6 = d[1] - d[6];
        let tmp2 = d[2] + d[5];
        let tmp5 = d[2] - d[5];
        let tmp3 = d[3] + d[4];
        let tmp4 = d[3] - d[4];
        let tmp10 = tmp0 + tmp3;
        let tmp13 = tmp0 - tmp3;
        let tmp11 = tmp1 + tmp2;
        let tmp12 = tmp1 - tmp2;
        d[0] = (tmp10 + tmp11) << PASS1_BITS;
        d[4] = (tmp10 - tmp11) << PASS1_BITS;
        let z1 = (tmp12 + tmp13) * FIX_0_541196100;
        d[2] = descale(z1 + tmp13 * FIX_0_765366865, CONST_BITS - PASS1_BITS);
        d[6] = descale(z1 + tmp12 * (-FIX_1_847759065), CONST_BITS - PASS1_BITS);
        let (o7, o5, o3, o1) = odd_fdct(tmp4, tmp5, tmp6, tmp7);
        d[7] = descale(o7, CONST_BITS - PASS1_BITS);
        d[5] = descale(o5, CONST_BITS - PASS1_BITS);
        d[3] = descale(o3, CONST_BITS - PASS1_BITS);
        d[1] = descale(o1, CONST_BITS - PASS1_BITS);
    }
    for col in 0..8 {
        let g = |k: usize| data[k * 8 + col];
        let tmp0 = g(0) + g(7);
        let tmp7 = g(0) - g(7);
        let tmp1 = g(1) + g(6);
        let tmp6 = g(1) - g(6);
        let tmp2 = g(2) + g(5);
        let tmp5 = g(2) - g(5);
        let tmp3 = g(3) + g(4);
        let tmp4 = g(3) - g(4);
        let tmp10 = tmp0 + tmp3;
        let tmp13 = tmp0 - tmp3;
        let tmp11 = tmp1 + tmp2;
        let tmp12 = tmp1 - tmp2;
        data[col] = descale(tmp10 + tmp11, PASS1_BITS);
        data[32 + col] = descale(tmp10 - tmp11, PASS1_BITS);
        let z1 = (tmp12 + tmp13) * FIX_0_541196100;
        data[16 + col] = descale(z1 + tmp13 * FIX_0_765366865, CONST_BITS + PASS1_BITS);
        data[48 + col] = descale(z1 + tmp12 * (-FIX_1_847759065), CONST_BITS + PASS1_BITS);
        let (o7, o5, o3, o1) = odd_fdct(tmp4, tmp5, tmp6, tmp7);
        data[56 + col] = descale(o7, CONST_BITS + PASS1_BITS);
        data[40 + col] = descale(o5, CONST_BITS + PASS1_BITS);
        data[24 + col] = descale(o3, CONST_BITS + PASS1_BITS);
        data[8 + col] = descale(o1, CONST_BITS + PASS1_BITS);
    }
}

#[inline]
fn odd_fdct(tmp4: i32, tmp5: i32, tmp6: i32, tmp7: i32) -> (i32, i32, i32, i32) {
    let z1 = tmp4 + tmp7;
    let z2 = tmp5 + tmp6;
    let z3 = tmp4 + tmp6;
    let z4 = tmp5 + tmp7;
    let z5 = (z3 + z4) * FIX_1_175875602;
    let tmp4 = tmp4 * FIX_0_298631336;
    let tmp5 = tmp5 * FIX_2_053119869;
    let tmp6 = tmp6 * FIX_3_072711026;
    let tmp7 = tmp7 * FIX_1_501321110;
    let z1 = z1 * -FIX_0_899976223;
    let z2 = z2 * -FIX_2_562915447;
    let z3 = z3 * -FIX_1_961570560 + z5;
    let z4 = z4 * -FIX_0_390180644 + z5;
    (
        tmp4 + z1 + z3,
        tmp5 + z2 + z4,
        tmp6 + z2 + z3,
        tmp7 + z1 + z4,
    )
}

/// Post-IDCT range limit (`IDCT_range_limit` with `RANGE_MASK`): `v & 1023` indexes a table that
/// clamps `v + 128` to `0..=255` for `v ∈ [-512, 511]`.
#[inline]
fn range_limit(v: i32) -> u8 {
    let idx = v & 1023;
    if idx < 128 {
        (idx + 128) as u8
    } else if idx < 512 {
        255
    } else if idx < 896 {
        0
    } else {
        (idx - 896) as u8
    }
}

/// Even/odd butterfly shared by both passes of `jpeg_idct_islow`; returns the 8 pre-descale sums.
#[inline]
fn idct_1d(v: [i32; 8]) -> [i32; 8] {
    let z2 = v[2];
    let z3 = v[6];
    let z1 = (z2 + z3) * FIX_0_541196100;
    let tmp2 = z1 + z3 * -FIX_1_847759065;
    let tmp3 = z1 + z2 * FIX_0_765366865;
    let tmp0 = (v[0] + v[4]) << CONST_BITS;
    let tmp1 = (v[0] - v[4]) << CONST_BITS;
    let tmp10 = tmp0 + tmp3;
    let tmp13 = tmp0 - tmp3;
    let tmp11 = tmp1 + tmp2;
    let tmp12 = tmp1 - tmp2;
    let (t0, t1, t2, t3) = (v[7], v[5], v[3], v[1]);
    let z1 = t0 + t3;
    let z2 = t1 + t2;
    let z3 = t0 + t2;
    let z4 = t1 + t3;
    let z5 = (z3 + z4) * FIX_1_175875602;
    let t0 = t0 * FIX_0_298631336;
    let t1 = t1 * FIX_2_053119869;
    let t2 = t2 * FIX_3_072711026;
    let t3 = t3 * FIX_1_501321110;
    let z1 = z1 * -FIX_0_899976223;
    let z2 = z2 * -FIX_2_562915447;
    let z3 = z3 * -FIX_1_961570560 + z5;
    let z4 = z4 * -FIX_0_390180644 + z5;
    let t0 = t0 + z1 + z3;
    let t1 = t1 + z2 + z4;
    let t2 = t2 + z2 + z3;
    let t3 = t3 + z1 + z4;
    [
        tmp10 + t3,
        tmp11 + t2,
        tmp12 + t1,
        tmp13 + t0,
        tmp13 - t0,
        tmp12 - t1,
        tmp11 - t2,
        tmp10 - t3,
    ]
}

/// `jpeg_idct_islow` of dequantised coefficients into 8×8 samples.
fn idct_islow(coef: &[i32; 64], out: &mut [u8; 64]) {
    let mut ws = [0i32; 64];
    for col in 0..8 {
        let v: [i32; 8] = std::array::from_fn(|k| coef[k * 8 + col]);
        if v[1..].iter().all(|&a| a == 0) {
            let dc = v[0] << PASS1_BITS;
            for k in 0..8 {
                ws[k * 8 + col] = dc;
            }
            continue;
        }
        let r = idct_1d(v);
        for k in 0..8 {
            ws[k * 8 + col] = descale(r[k], CONST_BITS - PASS1_BITS);
        }
    }
    for row in 0..8 {
        let v: [i32; 8] = std::array::from_fn(|k| ws[row * 8 + k]);
        if v[1..].iter().all(|&a| a == 0) {
            let o = range_limit(descale(v[0], PASS1_BITS + 3));
            out[row * 8..row * 8 + 8].iter_mut().for_each(|p| *p = o);
            continue;
        }
        let r = idct_1d(v);
        for k in 0..8 {
            out[row * 8 + k] = range_limit(descale(r[k], CONST_BITS + PASS1_BITS + 3));
        }
    }
}

/// Encodes and decodes one component plane (`bw·8 × bh·8`, already padded), returning the decoded
/// plane of the same padded size.
fn roundtrip_plane(plane: &[u8], pw: usize, ph: usize, qt: &[u32; 64]) -> Vec<u8> {
    let recips: Vec<(u32, u32, u32)> = qt.iter().map(|&q| reciprocal(q << 3)).collect();
    let mut out = vec![0u8; pw * ph];
    let mut block = [0i32; 64];
    let mut samples = [0u8; 64];
    for by in (0..ph).step_by(8) {
        for bx in (0..pw).step_by(8) {
            for y in 0..8 {
                for x in 0..8 {
                    block[y * 8 + x] = plane[(by + y) * pw + bx + x] as i32 - 128;
                }
            }
            fdct_islow(&mut block);
            for i in 0..64 {
                let (recip, corr, shift) = recips[i];
                let t = block[i];
                let mag = (((t.unsigned_abs() + corr) as u64 * recip as u64) >> shift) as i32;
                let qv = if t < 0 { -mag } else { mag };
                block[i] = qv * qt[i] as i32;
            }
            idct_islow(&block, &mut samples);
            for y in 0..8 {
                out[(by + y) * pw + bx..(by + y) * pw + bx + 8]
                    .copy_from_slice(&samples[y * 8..y * 8 + 8]);
            }
        }
    }
    out
}

#[inline]
fn fix16(x: f64) -> i32 {
    (x * 65536.0 + 0.5) as i32
}

/// JPEG round trip of an HWC `u8` image with 1 (grayscale) or 3 (RGB, 4:2:0) channels.
pub fn jpeg_roundtrip(src: &[u8], h: usize, w: usize, c: usize, quality: u8) -> Vec<u8> {
    let lq = quant_table(&STD_LUMINANCE, quality);
    if c == 1 {
        let (pw, ph) = (w.div_ceil(8) * 8, h.div_ceil(8) * 8);
        let mut plane = vec![0u8; pw * ph];
        for y in 0..ph {
            for x in 0..pw {
                plane[y * pw + x] = src[y.min(h - 1) * w + x.min(w - 1)];
            }
        }
        let dec = roundtrip_plane(&plane, pw, ph, &lq);
        let mut out = vec![0u8; h * w];
        for y in 0..h {
            out[y * w..(y + 1) * w].copy_from_slice(&dec[y * pw..y * pw + w]);
        }
        return out;
    }
    let cq = quant_table(&STD_CHROMINANCE, quality);
    // Colour conversion on the image padded by edge replication (jcsample's expand_right_edge,
    // jcprepct's expand_bottom_edge).
    let (cw, chh) = (w.div_ceil(2), h.div_ceil(2)); // downsampled size
    let (cpw, cph) = (cw.div_ceil(8) * 8, chh.div_ceil(8) * 8);
    let (ypw, yph) = (w.div_ceil(8) * 8, h.div_ceil(8) * 8);
    let fw = (2 * cpw).max(ypw);
    let fh = (2 * chh).max(yph);
    let (r_y, g_y, b_y) = (fix16(0.299), fix16(0.587), fix16(0.114));
    let (r_cb, g_cb, b_cb) = (-fix16(0.16874), -fix16(0.33126), fix16(0.5));
    let (g_cr, b_cr) = (-fix16(0.41869), -fix16(0.08131));
    let cbcr_offset = 128 << 16;
    let half = 1 << 15;
    let mut yf = vec![0u8; fw * fh];
    let mut cbf = vec![0u8; fw * fh];
    let mut crf = vec![0u8; fw * fh];
    for y in 0..fh {
        for x in 0..fw {
            let p = (y.min(h - 1) * w + x.min(w - 1)) * 3;
            let (r, g, b) = (src[p] as i32, src[p + 1] as i32, src[p + 2] as i32);
            let i = y * fw + x;
            yf[i] = ((r_y * r + g_y * g + b_y * b + half) >> 16) as u8;
            cbf[i] = ((r_cb * r + g_cb * g + b_cb * b + cbcr_offset + half - 1) >> 16) as u8;
            crf[i] = ((b_cb * r + g_cr * g + b_cr * b + cbcr_offset + half - 1) >> 16) as u8;
        }
    }
    let mut yplane = vec![0u8; ypw * yph];
    for y in 0..yph {
        yplane[y * ypw..(y + 1) * ypw].copy_from_slice(&yf[y * fw..y * fw + ypw]);
    }
    let down = |full: &[u8]| -> Vec<u8> {
        let mut p = vec![0u8; cpw * cph];
        for y in 0..cph {
            let sy = y.min(chh - 1); // rows past the image repeat the last downsampled row
            for x in 0..cpw {
                let bias = if x % 2 == 0 { 1 } else { 2 };
                let a = full[2 * sy * fw + 2 * x] as u32 + full[2 * sy * fw + 2 * x + 1] as u32;
                let b = full[(2 * sy + 1) * fw + 2 * x] as u32
                    + full[(2 * sy + 1) * fw + 2 * x + 1] as u32;
                p[y * cpw + x] = ((a + b + bias) >> 2) as u8;
            }
        }
        p
    };
    let ydec = roundtrip_plane(&yplane, ypw, yph, &lq);
    let cbdec = roundtrip_plane(&down(&cbf), cpw, cph, &cq);
    let crdec = roundtrip_plane(&down(&crf), cpw, cph, &cq);
    let cbup = fancy_upsample_h2v2(&cbdec, cpw, cw, chh);
    let crup = fancy_upsample_h2v2(&crdec, cpw, cw, chh);
    let upw = 2 * cw;
    let mut out = vec![0u8; h * w * 3];
    let clamp = |v: i32| v.clamp(0, 255) as u8;
    for y in 0..h {
        for x in 0..w {
            let yy = ydec[y * ypw + x] as i32;
            let cb = cbup[y * upw + x] as i32 - 128;
            let cr = crup[y * upw + x] as i32 - 128;
            let r = yy + ((fix16(1.40200) * cr + half) >> 16);
            let g = yy + ((-fix16(0.34414) * cb + half + -fix16(0.71414) * cr) >> 16);
            let b = yy + ((fix16(1.77200) * cb + half) >> 16);
            let o = (y * w + x) * 3;
            out[o] = clamp(r);
            out[o + 1] = clamp(g);
            out[o + 2] = clamp(b);
        }
    }
    out
}

/// libjpeg `h2v2_fancy_upsample`: each output sample is `(9·nearest + 3·horizontal + 3·vertical +
/// 1·diagonal)/16` with libjpeg's alternating rounding; edges replicate. Output is `2cw × 2chh`.
fn fancy_upsample_h2v2(plane: &[u8], pw: usize, cw: usize, chh: usize) -> Vec<u8> {
    let ow = 2 * cw;
    let mut out = vec![0u8; ow * 2 * chh];
    let at = |y: usize, x: usize| plane[y * pw + x] as i32;
    let mut colsum = vec![0i32; cw];
    for inrow in 0..chh {
        for v in 0..2 {
            let other = if v == 0 {
                inrow.saturating_sub(1)
            } else {
                (inrow + 1).min(chh - 1)
            };
            for (x, cs) in colsum.iter_mut().enumerate() {
                *cs = at(inrow, x) * 3 + at(other, x);
            }
            let orow = &mut out[(2 * inrow + v) * ow..(2 * inrow + v + 1) * ow];
            if cw == 1 {
                orow[0] = ((colsum[0] * 4 + 8) >> 4) as u8;
                orow[1] = ((colsum[0] * 4 + 7) >> 4) as u8;
                continue;
            }
            orow[0] = ((colsum[0] * 4 + 8) >> 4) as u8;
            orow[1] = ((colsum[0] * 3 + colsum[1] + 7) >> 4) as u8;
            for x in 1..cw - 1 {
                orow[2 * x] = ((colsum[x] * 3 + colsum[x - 1] + 8) >> 4) as u8;
                orow[2 * x + 1] = ((colsum[x] * 3 + colsum[x + 1] + 7) >> 4) as u8;
            }
            let l = cw - 1;
            orow[2 * l] = ((colsum[l] * 3 + colsum[l - 1] + 8) >> 4) as u8;
            orow[2 * l + 1] = ((colsum[l] * 4 + 7) >> 4) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_tables() {
        let t = quant_table(&STD_LUMINANCE, 50);
        assert_eq!(t, STD_LUMINANCE);
        let t = quant_table(&STD_LUMINANCE, 80);
        assert_eq!(t[0], 6);
    }

    #[test]
    fn reciprocal_divides_with_rounding() {
        for d in [8u32, 24, 40, 48, 88, 792, 2040] {
            let (rc, c, s) = reciprocal(d);
            for x in 0..4000u32 {
                let q = (((x + c) as u64 * rc as u64) >> s) as u32;
                let exact = (x + d / 2) / d;
                assert!(
                    q == exact || q + 1 == exact || q == exact + 1,
                    "{d} {x} {q} {exact}"
                );
            }
        }
    }

    #[test]
    fn flat_image_survives() {
        let img = vec![100u8; 16 * 16 * 3];
        let out = jpeg_roundtrip(&img, 16, 16, 3, 75);
        assert!(out.iter().all(|&v| (v as i32 - 100).abs() <= 1));
        let g = vec![37u8; 9 * 11];
        let out = jpeg_roundtrip(&g, 9, 11, 1, 10);
        assert!(out.iter().all(|&v| (v as i32 - 37).abs() <= 1));
    }
}
