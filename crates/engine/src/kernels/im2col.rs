//! im2col / col2im for 2-D convolution: the input patch under every output position becomes a
//! column, so that a convolution is one matrix product `W[M×(C·kh·kw)] · col[(C·kh·kw)×(OH·OW)]`
//! and its input gradient is `col2im(Wᵀ · dY)`.

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
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.pt == 0 && self.pl == 0
            && self.oh == self.h && self.ow == self.w
    }
    /// Input row for output row `o` and kernel row `k`, if inside the image.
    #[inline]
    fn in_row(&self, o: usize, k: usize) -> Option<usize> {
        let r = (o * self.sh + k * self.dh) as isize - self.pt as isize;
        (r >= 0 && (r as usize) < self.h).then_some(r as usize)
    }
}

/// Fills `col` (rows × cols, row-major) from one image `x` (c × h × w).
pub(crate) fn im2col(g: &Geometry, x: &[f32], col: &mut [f32]) {
    let cols = g.cols();
    let mut row = 0;
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let dst = &mut col[row * cols..(row + 1) * cols];
                for oy in 0..g.oh {
                    let d = &mut dst[oy * g.ow..(oy + 1) * g.ow];
                    match g.in_row(oy, ki) {
                        None => d.fill(0.0),
                        Some(iy) => {
                            let src = &plane[iy * g.w..(iy + 1) * g.w];
                            let off = (kj * g.dw) as isize - g.pl as isize;
                            if g.sw == 1 {
                                // Contiguous run: copy the in-bounds span, zero the rest.
                                for (ox, v) in d.iter_mut().enumerate() {
                                    let ix = ox as isize + off;
                                    *v = if ix >= 0 && (ix as usize) < g.w { src[ix as usize] } else { 0.0 };
                                }
                            } else {
                                for (ox, v) in d.iter_mut().enumerate() {
                                    let ix = (ox * g.sw) as isize + off;
                                    *v = if ix >= 0 && (ix as usize) < g.w { src[ix as usize] } else { 0.0 };
                                }
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
pub(crate) fn col2im(g: &Geometry, col: &[f32], dx: &mut [f32]) {
    let cols = g.cols();
    let mut row = 0;
    for c in 0..g.c {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let src = &col[row * cols..(row + 1) * cols];
                for oy in 0..g.oh {
                    if let Some(iy) = g.in_row(oy, ki) {
                        let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                        let off = (kj * g.dw) as isize - g.pl as isize;
                        for ox in 0..g.ow {
                            let ix = (ox * g.sw) as isize + off;
                            if ix >= 0 && (ix as usize) < g.w {
                                dst[ix as usize] += src[oy * g.ow + ox];
                            }
                        }
                    }
                }
                row += 1;
            }
        }
    }
}
