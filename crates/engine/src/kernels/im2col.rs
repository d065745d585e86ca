//! im2col / col2im for 2-D convolution: the input patch under every output position becomes a
//! column, so that a convolution is one matrix product `W[M×(C·kh·kw)] · col[(C·kh·kw)×(OH·OW)]`
//! and its input gradient is `col2im(Wᵀ · dY)`. Fast because no element is bounds-tested: the
//! in-image span of every patch row is computed once, and for stride-1 "same" convolutions
//! (most of a ResNet) each patch row is one block copy of the shifted input plane.

/// Geometry of one 2-D convolution or pooling window sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    /// Padding at the top and left (bottom/right padding only changes `oh`/`ow`).
    pub pt: usize,
    pub pl: usize,
    /// Padding at the bottom and right as resolved (pools need it for their divisor).
    pub pb: usize,
    pub pr: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    pub fn rows(&self) -> usize {
        self.c * self.kh * self.kw
    }
    pub fn cols(&self) -> usize {
        self.oh * self.ow
    }
    /// True when the patch matrix is the input itself (1×1 kernel, stride 1, no padding).
    pub fn is_identity(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pt == 0
            && self.pl == 0
            && self.oh == self.h
            && self.ow == self.w
    }
}

/// The output columns `ox` whose input column `ox·sw + off` lies inside `0..w`, as a range.
#[inline]
pub(crate) fn valid_cols(g: &Geometry, off: isize) -> (usize, usize) {
    // ox·sw + off ≥ 0  ⇔  ox ≥ ceil(−off / sw);  ox·sw + off < w  ⇔  ox < ceil((w − off) / sw)
    let sw = g.sw as isize;
    let lo = if off >= 0 { 0 } else { (-off + sw - 1) / sw };
    let hi = ((g.w as isize - off + sw - 1) / sw).clamp(0, g.ow as isize);
    (lo.min(hi) as usize, hi as usize)
}

/// The output rows `oy` whose input row `oy·sh + ki·dh − pt` lies inside `0..h`, as a range.
#[inline]
fn valid_rows(g: &Geometry, ki: usize) -> (usize, usize) {
    let off = (ki * g.dh) as isize - g.pt as isize;
    let sh = g.sh as isize;
    let lo = if off >= 0 { 0 } else { (-off + sh - 1) / sh };
    let hi = ((g.h as isize - off + sh - 1) / sh).clamp(0, g.oh as isize);
    (lo.min(hi) as usize, hi as usize)
}

/// Fills `col` (rows × cols, row-major) from one image `x` (c × h × w). The in-bounds span of
/// each output row is computed once, so the inner loop has no bounds tests (and is a plain
/// copy at stride 1): this loop is the single largest cost of a small-channel convolution.
pub(crate) fn im2col(g: &Geometry, x: &[f32], col: &mut [f32]) {
    im2col_at(g, x, col, g.cols());
}

/// [`im2col`] into rows `pitch` apart (`pitch ≥ cols`): several samples' patch matrices side by
/// side, each starting `cols` further into the first row.
pub(crate) fn im2col_at(g: &Geometry, x: &[f32], col: &mut [f32], pitch: usize) {
    let cols = g.cols();
    let mut row = 0;
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            let (oy_lo, oy_hi) = valid_rows(g, ki);
            for kj in 0..g.kw {
                let dst = &mut col[row * pitch..row * pitch + cols];
                let off = (kj * g.dw) as isize - g.pl as isize;
                let (lo, hi) = valid_cols(g, off);
                // Output rows whose kernel row falls in the top or bottom padding.
                dst[..oy_lo * g.ow].fill(0.0);
                dst[oy_hi * g.ow..].fill(0.0);
                if g.sh == 1 && g.sw == 1 && g.ow == g.w {
                    // "Same" convolution at stride 1: the valid rows of this patch row are the
                    // input plane shifted by a constant, so one block copy replaces a copy per
                    // output row. Elements that wrapped around a row edge (or fell off either
                    // end of the plane) all sit in padding columns, zeroed just after.
                    let shift = ((ki * g.dh) as isize - g.pt as isize) * g.w as isize + off;
                    let t0 = ((oy_lo * g.ow) as isize).max(-shift);
                    let t1 = ((oy_hi * g.ow) as isize).min((g.h * g.w) as isize - shift);
                    if t0 < t1 {
                        let (t0, t1) = (t0 as usize, t1 as usize);
                        let s0 = (t0 as isize + shift) as usize;
                        dst[t0..t1].copy_from_slice(&plane[s0..s0 + (t1 - t0)]);
                    }
                    // Column by column (a strided store loop, where a row-by-row one would
                    // become a memset call per row for one or two elements).
                    if oy_lo < oy_hi {
                        for ox in (0..lo).chain(hi..g.ow) {
                            for v in dst[oy_lo * g.ow + ox..oy_hi * g.ow]
                                .iter_mut()
                                .step_by(g.ow)
                            {
                                *v = 0.0;
                            }
                        }
                    }
                    row += 1;
                    continue;
                }
                for oy in oy_lo..oy_hi {
                    let d = &mut dst[oy * g.ow..(oy + 1) * g.ow];
                    let iy = oy * g.sh + ki * g.dh - g.pt;
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    // Padding is at most a few columns: set them one by one rather than
                    // through a memset call per row.
                    for v in d[..lo.min(hi)].iter_mut() {
                        *v = 0.0;
                    }
                    for v in d[hi..].iter_mut() {
                        *v = 0.0;
                    }
                    if lo < hi {
                        let start = (lo as isize * g.sw as isize + off) as usize;
                        if g.sw == 1 {
                            d[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
                        } else {
                            for (v, s) in
                                d[lo..hi].iter_mut().zip(src[start..].iter().step_by(g.sw))
                            {
                                *v = *s;
                            }
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// Adds every column of `col` back into the image `dx` (c × h × w): the adjoint of [`im2col`].
/// (The engine's input gradients take [`col2im_at`] or [`col2im_rows`].)
#[cfg(test)]
pub(crate) fn col2im(g: &Geometry, col: &[f32], dx: &mut [f32]) {
    col2im_at(g, col, dx, g.cols());
}

/// `col2im` from rows `pitch` apart (the adjoint of [`im2col_at`]).
pub(crate) fn col2im_at(g: &Geometry, col: &[f32], dx: &mut [f32], pitch: usize) {
    col2im_rows(g, col, dx, (0, g.oh), pitch);
}

/// `col2im` of output rows `oy0..oy1` only, from a band of the patch matrix that holds just
/// their columns (`(oy1 − oy0)·ow` per row, rows `pitch` apart): for an input gradient done
/// band by band, each band's product added in while it is still in cache. Each element of
/// `dx` gets its band's terms in the order `col2im` adds them (by patch row); a caller that
/// goes over the bands from the last output row to the first adds every element's terms in
/// `col2im`'s order too (for one input row, a later kernel row reads an earlier output row).
pub(crate) fn col2im_rows(
    g: &Geometry,
    col: &[f32],
    dx: &mut [f32],
    (oy0, oy1): (usize, usize),
    pitch: usize,
) {
    let cols = (oy1 - oy0) * g.ow;
    let mut row = 0;
    for c in 0..g.c {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let src = &col[row * pitch..row * pitch + cols];
                let off = (kj * g.dw) as isize - g.pl as isize;
                let (lo, hi) = valid_cols(g, off);
                if lo >= hi {
                    row += 1;
                    continue;
                }
                let start = (lo as isize * g.sw as isize + off) as usize;
                let (oy_lo, oy_hi) = valid_rows(g, ki);
                for oy in oy_lo.max(oy0)..oy_hi.min(oy1) {
                    let iy = oy * g.sh + ki * g.dh - g.pt;
                    let at = (oy - oy0) * g.ow;
                    let s = &src[at + lo..at + hi];
                    if g.sw == 1 {
                        // Stride 1 (most convolutions): a contiguous add the compiler vectorizes.
                        let dst = &mut plane[iy * g.w + start..iy * g.w + start + s.len()];
                        for (d, v) in dst.iter_mut().zip(s) {
                            *d += v;
                        }
                    } else {
                        let dst = &mut plane[iy * g.w + start..(iy + 1) * g.w];
                        for (d, v) in dst.iter_mut().step_by(g.sw).zip(s) {
                            *d += v;
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition: every patch element by index arithmetic, zeros outside.
    fn naive(g: &Geometry, x: &[f32]) -> Vec<f32> {
        let mut col = vec![0.0; g.rows() * g.cols()];
        for c in 0..g.c {
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    let r = (c * g.kh + ki) * g.kw + kj;
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            let iy = (oy * g.sh + ki * g.dh) as isize - g.pt as isize;
                            let ix = (ox * g.sw + kj * g.dw) as isize - g.pl as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                                col[r * g.cols() + oy * g.ow + ox] =
                                    x[(c * g.h + iy as usize) * g.w + ix as usize];
                            }
                        }
                    }
                }
            }
        }
        col
    }

    proptest::proptest! {
        /// im2col equals the definition, and col2im is its adjoint: ⟨im2col(x), y⟩ = ⟨x, col2im(y)⟩.
        #[test]
        fn im2col_matches_definition_and_col2im_is_its_adjoint(
            c in 1usize..3, h in 1usize..9, w in 1usize..9, kh in 1usize..4, kw in 1usize..4,
            sh in 1usize..3, sw in 1usize..4, dh in 1usize..3, dw in 1usize..3,
            pt in 0usize..3, pl in 0usize..3, pb in 0usize..3, pr in 0usize..3, seed in 0u64..1000,
            band in 1usize..4,
        ) {
            let (ekh, ekw) = (dh * (kh - 1) + 1, dw * (kw - 1) + 1);
            proptest::prop_assume!(h + pt + pb >= ekh && w + pl + pr >= ekw);
            let oh = (h + pt + pb - ekh) / sh + 1;
            let ow = (w + pl + pr - ekw) / sw + 1;
            let g = Geometry { c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, oh, ow };
            let mut rnd = crate::kernels::reference::uniform(seed);
            let x: Vec<f32> = (0..c * h * w).map(|_| rnd()).collect();
            let mut col = vec![f32::NAN; g.rows() * g.cols()];
            im2col(&g, &x, &mut col);
            proptest::prop_assert_eq!(&col, &naive(&g, &x));
            // Pitched, as the second of two samples side by side: the same rows, and the
            // first sample's columns untouched.
            let pitch = 2 * g.cols();
            let mut wide = vec![7.0f32; g.rows() * pitch];
            im2col_at(&g, &x, &mut wide[g.cols()..], pitch);
            for r in 0..g.rows() {
                proptest::prop_assert!(wide[r * pitch..r * pitch + g.cols()].iter().all(|&v| v == 7.0));
                proptest::prop_assert_eq!(&wide[r * pitch + g.cols()..(r + 1) * pitch], &col[r * g.cols()..(r + 1) * g.cols()]);
            }
            let y: Vec<f32> = (0..col.len()).map(|_| rnd()).collect();
            let mut back = vec![0.0; x.len()];
            col2im(&g, &y, &mut back);
            // Band by band (`band` output rows each), from the last band to the first, each
            // band's columns on their own: bitwise `col2im`.
            let mut banded = vec![0.0; x.len()];
            for oy0 in (0..g.oh).step_by(band).rev() {
                let oy1 = (oy0 + band).min(g.oh);
                let bc = (oy1 - oy0) * g.ow;
                let part: Vec<f32> = (0..g.rows())
                    .flat_map(|r| y[r * g.cols() + oy0 * g.ow..][..bc].iter().copied())
                    .collect();
                col2im_rows(&g, &part, &mut banded, (oy0, oy1), bc);
            }
            proptest::prop_assert!(banded.iter().zip(&back).all(|(a, b)| a.to_bits() == b.to_bits()));
            let mut wide_y = vec![1e6f32; g.rows() * pitch];
            for r in 0..g.rows() {
                wide_y[r * pitch + g.cols()..(r + 1) * pitch].copy_from_slice(&y[r * g.cols()..(r + 1) * g.cols()]);
            }
            let mut back_at = vec![0.0; x.len()];
            col2im_at(&g, &wide_y[g.cols()..], &mut back_at, pitch);
            proptest::prop_assert_eq!(&back_at, &back);
            let lhs: f64 = col.iter().zip(&y).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            proptest::prop_assert!((lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()));
        }
    }
}
