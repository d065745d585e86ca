//! Stride-1 convolution from a "column-shift" patch matrix: im2col with the kernel-row shifts
//! left out. Row `(c, j)` of the matrix holds input channel `c` shifted left by `j·dw − pl`
//! columns (zeros where that falls outside the image), on a grid of `Hp = pt + h + pb` rows of
//! `ow` columns. The patch of kernel row `i` for output position `p` then sits exactly
//! `i·dh·ow` elements further on in every row, so the convolution is `kh` products
//! `y[M × oh·ow] += W_i[M × C·kw] · shift(P, i·dh·ow)[C·kw × oh·ow]`, each reading the one
//! matrix at a constant offset (a strided view, no copy), with `W_i` the kernel row `i`
//! gathered once per call.
//!
//! Why it is fast: full im2col writes each input element `kh·kw` times (9 for 3×3), and for
//! the 16- and 32-channel layers of a CIFAR ResNet writing that matrix cost a large share of
//! the product itself; this matrix is `kh` times smaller, while each product keeps an inner
//! dimension of `C·kw` (48 for 16 channels), long enough for the GEMM to stay efficient.
//! (Going all the way — one product per tap on the padded input, inner dimension `C` —
//! measured slower: the products become too short.)

use super::im2col::{valid_cols, Geometry};
use faultline_matmul::{matmul, View};

/// Whether [`conv_rowshift`] handles `g`: stride 1, any kernel, dilation and padding.
pub(crate) fn fits(g: &Geometry) -> bool {
    g.sh == 1 && g.sw == 1
}

/// Whether it is the kernel to use: it fits, the kernel is more than one row high (otherwise
/// the matrix is im2col's), there are enough input channels per group that `C·kw` is a long
/// enough inner dimension for the GEMM, and the plane is not tiny (at 8×8 and below, full
/// im2col's single product with inner dimension `C·kh·kw` measured faster: 64 channels, 8×8,
/// 70–76 against 57–61 GMAC/s).
pub(crate) fn applies(g: &Geometry) -> bool {
    fits(g) && g.kh > 1 && g.c >= 8 && g.cols() > SMALL_PLANE
}

/// Output planes of at most this many positions (8×8) count as small for the kernel choice.
pub(crate) const SMALL_PLANE: usize = 64;

/// Gathers `w[mg × c × kh × kw]` into `kh` matrices `W_i[mg × (c·kw)]`, one after the other.
pub(crate) fn gather_kernel_rows(g: &Geometry, mg: usize, w: &[f32]) -> Vec<f32> {
    let (kh, kw, c) = (g.kh, g.kw, g.c);
    let mut out = vec![0.0f32; mg * c * kh * kw];
    for i in 0..kh {
        for m in 0..mg {
            for ci in 0..c {
                for j in 0..kw {
                    out[((i * mg + m) * c + ci) * kw + j] = w[((m * c + ci) * kh + i) * kw + j];
                }
            }
        }
    }
    out
}

/// `y[mg × oh·ow] += conv(x[c × h × w])` at stride 1 for one sample and group, with
/// `wr` from [`gather_kernel_rows`]. `scratch` holds the patch matrix.
pub(crate) fn conv_rowshift(
    g: &Geometry,
    mg: usize,
    wr: &[f32],
    x: &[f32],
    y: &mut [f32],
    scratch: &mut Vec<f32>,
    parallel: bool,
) {
    debug_assert!(g.sh == 1 && g.sw == 1);
    let hp = g.pt + g.h + g.pb;
    let len = hp * g.ow;
    let k = g.c * g.kw;
    scratch.resize(k * len, 0.0);
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for j in 0..g.kw {
            let dst = &mut scratch[(c * g.kw + j) * len..(c * g.kw + j + 1) * len];
            let off = (j * g.dw) as isize - g.pl as isize;
            let (lo, hi) = valid_cols(g, off);
            dst[..g.pt * g.ow].fill(0.0);
            dst[(g.pt + g.h) * g.ow..].fill(0.0);
            let body = &mut dst[g.pt * g.ow..(g.pt + g.h) * g.ow];
            if g.ow == g.w {
                // Same width: the image rows are the plane shifted by `off`, one block copy;
                // the elements that wrapped around a row edge sit in columns outside
                // `lo..hi` and are zeroed just after.
                let n = body.len() as isize;
                let (t0, t1) = ((-off).max(0), (n - off).min(n));
                if t0 < t1 {
                    let (t0, t1) = (t0 as usize, t1 as usize);
                    let s0 = (t0 as isize + off) as usize;
                    body[t0..t1].copy_from_slice(&plane[s0..s0 + (t1 - t0)]);
                }
                for t in body[..t0.clamp(0, n) as usize].iter_mut() {
                    *t = 0.0;
                }
                for t in body[t1.clamp(0, n) as usize..].iter_mut() {
                    *t = 0.0;
                }
                for ox in (0..lo).chain(hi..g.ow) {
                    for v in body[ox..].iter_mut().step_by(g.ow) {
                        *v = 0.0;
                    }
                }
            } else {
                for (r, d) in body.chunks_exact_mut(g.ow).enumerate() {
                    let src = &plane[r * g.w..(r + 1) * g.w];
                    d[..lo].fill(0.0);
                    d[hi.max(lo)..].fill(0.0);
                    if lo < hi {
                        let s = (lo as isize + off) as usize;
                        d[lo..hi].copy_from_slice(&src[s..s + (hi - lo)]);
                    }
                }
            }
        }
    }
    let cols = g.oh * g.ow;
    for i in 0..g.kh {
        matmul(
            mg,
            cols,
            k,
            y,
            cols,
            true,
            View::rows(&wr[i * mg * k..(i + 1) * mg * k], k),
            View {
                data: &scratch[i * g.dh * g.ow..],
                rs: len,
                cs: 1,
            },
            parallel,
        );
    }
}
