//! MaxPool, AveragePool and GlobalAveragePool over the two spatial dimensions. Max pooling
//! routes the gradient to the first maximal element of each window in row-major order, the
//! convention of PyTorch's CPU kernel (it matters on MNIST's flat background, where ties are
//! the norm).

use rayon::prelude::*;
use std::mem::MaybeUninit;

use super::conv::Window;
use super::{backward_replicated, impl_any, input_f32, Copies, Op};
use crate::error::{shape_err, Result};
use crate::kernels::im2col::Geometry;
use crate::tensor::Tensor;

/// Which reduction over each window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum.
    Max,
    /// Mean; `count_include_pad` counts padded positions in the divisor.
    Average {
        /// ONNX `count_include_pad`.
        count_include_pad: bool,
    },
}

/// A windowed pooling operator on `[N, C, H, W]` (or `[N, C, W]`).
#[derive(Debug, Clone)]
pub struct Pool {
    /// Max or average.
    pub kind: PoolKind,
    /// Window geometry (dilations apply to max pooling).
    pub window: Window,
    /// Max pooling only: the input is a ReLU's output that this pool alone reads, and the
    /// ReLU leaves its gradient as it comes (`FusedConv::grad_masked`), so the gradient is
    /// masked here, at the one place per window it goes (`x > 0`), instead of over the
    /// ReLU's whole output. Set by the load-time pass `mask_at_pool`.
    pub relu_input: bool,
}

fn planes(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize, bool)> {
    match *x.shape() {
        [n, c, h, w] => Ok((n * c, h, w, false)),
        [n, c, w] => Ok((n * c, 1, w, true)),
        ref s => Err(shape_err(
            op,
            format!("expects a 3-D or 4-D input, got {s:?}"),
        )),
    }
}

/// Window bounds along one axis: the input range [lo, hi) and the padded extent for the divisor.
#[inline]
fn span(
    o: usize,
    s: usize,
    p: usize,
    k: usize,
    d: usize,
    n: usize,
    pend: usize,
) -> (usize, usize, usize) {
    let start = (o * s) as isize - p as isize;
    let end_padded = (start + ((k - 1) * d + 1) as isize).min((n + pend) as isize);
    let padded = (end_padded - start) as usize;
    let lo = start.max(0) as usize;
    let hi = end_padded.min(n as isize).max(0) as usize;
    (lo, hi, padded)
}

/// The input positions one max-pool window reads along one axis: the first, how many, every
/// `d`-th after it (`start + j·d` for the `j < k` that land inside `[0, n)`, ascending) — the
/// same positions, in the same order, as filtering [`span`]'s range by the dilation, without a
/// division per element.
#[inline]
fn taps(o: usize, s: usize, p: usize, k: usize, d: usize, n: usize) -> (usize, usize, usize) {
    let start = (o * s) as isize - p as isize;
    let d = d.max(1);
    let lo = if start >= 0 {
        0
    } else {
        (-start as usize).div_ceil(d)
    };
    let mut hi = k;
    while hi > lo && start + ((hi - 1) * d) as isize >= n as isize {
        hi -= 1;
    }
    if hi <= lo {
        return (0, 0, d);
    }
    ((start + (lo * d) as isize) as usize, hi - lo, d)
}

/// Whether `g` is the common 2×2, stride-2, unpadded, undilated max pool whose windows all lie
/// inside the plane: [`max2x2`] and (on AVX-512) [`Pool::max2x2_grad`] run it without the
/// general loops.
fn is_max2x2(kind: PoolKind, g: &Geometry) -> bool {
    kind == PoolKind::Max
        && (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl) == (2, 2, 2, 2, 1, 1, 0, 0)
        && 2 * g.oh <= g.h
        && 2 * g.ow <= g.w
}

/// The 2×2 stride-2 max of one `w`-wide plane `p` into `y` (`oh × ow`), with the general
/// path's rule: a value replaces the running maximum (from −∞) when greater, so NaNs are
/// skipped and the first of equal values is kept.
fn max2x2(p: &[f32], w: usize, oh: usize, ow: usize, y: &mut [f32]) {
    for (oy, yr) in y.chunks_exact_mut(ow).take(oh).enumerate() {
        let r0 = &p[2 * oy * w..2 * oy * w + 2 * ow];
        let r1 = &p[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow];
        for ((v, a), b) in yr
            .iter_mut()
            .zip(r0.chunks_exact(2))
            .zip(r1.chunks_exact(2))
        {
            let mut m = f32::NEG_INFINITY;
            for x in [a[0], a[1], b[0], b[1]] {
                if x > m {
                    m = x;
                }
            }
            *v = m;
        }
    }
}

/// A window's taps along one axis: the first, how many, the step (see [`taps`]).
type Taps = (usize, usize, usize);

/// No input receives this output's gradient (an empty window), in [`Pool::max_sources`].
const NONE: u32 = u32::MAX;

/// One column tap of every window along a row: output `ox` in `lo..hi` reads column
/// `sw·ox + off`, which is element `ox + q` of phase `r` of the row (its columns `sw·k + r`).
/// Taps come in ascending column order, and the outputs outside `lo..hi` have this tap off the
/// plane.
struct ColTap {
    r: usize,
    q: isize,
    lo: usize,
    hi: usize,
    off: isize,
}

/// The column taps of geometry `g`'s windows (see [`ColTap`]).
fn col_taps(g: &Geometry) -> Vec<ColTap> {
    let s = g.sw.max(1) as isize;
    (0..g.kw)
        .filter_map(|j| {
            let off = (j * g.dw.max(1)) as isize - g.pl as isize;
            let last = g.w as isize - 1 - off;
            if last < 0 {
                return None;
            }
            let lo = ((-off).max(0) as usize).div_ceil(s as usize);
            let hi = ((last / s) as usize + 1).min(g.ow);
            (lo < hi).then_some(ColTap {
                r: off.rem_euclid(s) as usize,
                q: off.div_euclid(s),
                lo,
                hi,
                off,
            })
        })
        .collect()
}

/// Per-thread buffers of the separable max pool.
#[derive(Default)]
struct MaxScratch {
    /// The row split into its `sw` phases.
    phases: Vec<f32>,
    /// Each input row's maximum under each output column's window (`h × ow`).
    hv: Vec<f32>,
    /// The column of that maximum (`h × ow`), for the gradient's sources.
    hc: Vec<u32>,
    /// The running maximum of one output row.
    m: Vec<f32>,
}

/// All ones where `v > m`, else zero: a mask for [`pick`]. The max-pool loops select with
/// masks rather than `if`, which LLVM turns into branches there (that mispredict on about every
/// other tap of real activations, and stop the loop from vectorising).
#[inline(always)]
fn greater(v: f32, m: f32) -> u32 {
    0u32.wrapping_sub((v > m) as u32)
}

/// `v` where `k` is all ones, `m` where it is zero.
#[inline(always)]
fn pick(k: u32, v: f32, m: f32) -> f32 {
    f32::from_bits(v.to_bits() & k | m.to_bits() & !k)
}

/// Every input row's maximum under each output column's window into `sc.hv` (and its column
/// into `sc.hc` when `cols`): a value replaces the running maximum (from −∞) only when
/// greater, taps in ascending column order, so NaNs are skipped and the first of equal values
/// is kept. Tap by tap over a row split into its stride's phases, each tap reads a contiguous
/// run, so the loops vectorise.
fn row_maxima(p: &[f32], g: &Geometry, taps: &[ColTap], sc: &mut MaxScratch, cols: bool) {
    let (w, ow, s) = (g.w, g.ow, g.sw.max(1));
    let h = p.len() / w.max(1);
    let plen = w.div_ceil(s);
    sc.hv.clear();
    sc.hv.resize(h * ow, f32::NEG_INFINITY);
    if cols {
        sc.hc.clear();
        sc.hc.resize(h * ow, NONE);
    }
    sc.phases.resize(s * plen, f32::NEG_INFINITY);
    for (r, row) in p.chunks_exact(w).enumerate() {
        let ph: &[f32] = if s == 1 {
            row
        } else {
            let (even, odd) = sc.phases.split_at_mut(plen);
            if s == 2 {
                for ((e, o), c) in even.iter_mut().zip(odd.iter_mut()).zip(row.chunks_exact(2)) {
                    (*e, *o) = (c[0], c[1]);
                }
                if w % 2 == 1 {
                    even[plen - 1] = row[w - 1];
                }
            } else {
                for (j, ph) in sc.phases.chunks_exact_mut(plen).enumerate() {
                    for (v, x) in ph.iter_mut().zip(row[j..].iter().step_by(s)) {
                        *v = *x;
                    }
                }
            }
            &sc.phases
        };
        let hv = &mut sc.hv[r * ow..(r + 1) * ow];
        for t in taps {
            let start = t.r * plen + (t.lo as isize + t.q) as usize;
            let src = &ph[start..start + (t.hi - t.lo)];
            if cols {
                let hc = &mut sc.hc[r * ow..(r + 1) * ow];
                let c0 = (s * t.lo) as isize + t.off;
                for (i, ((m, c), &v)) in hv[t.lo..t.hi]
                    .iter_mut()
                    .zip(&mut hc[t.lo..t.hi])
                    .zip(src)
                    .enumerate()
                {
                    let k = greater(v, *m);
                    *m = pick(k, v, *m);
                    *c = (c0 as u32).wrapping_add((s * i) as u32) & k | *c & !k;
                }
            } else {
                for (m, &v) in hv[t.lo..t.hi].iter_mut().zip(src) {
                    *m = pick(greater(v, *m), v, *m);
                }
            }
        }
    }
}

/// The max pool of one `w`-wide plane `p` into `y`, windows given by their row taps,
/// separably: first every input row's maximum under each output column's window
/// ([`row_maxima`]), then, for each output row, the maximum of its window's rows of those, a
/// whole row at a time (which vectorises). A value replaces the running maximum (from −∞) only
/// when greater, in both passes, so NaNs are skipped and the value kept among equal ones (−0
/// before +0) is the first in row-major order, as a row-major scan of each window keeps. The
/// running maximum is never NaN, so the select needs no NaN test.
fn max_plane(
    p: &[f32],
    g: &Geometry,
    rows: &[Taps],
    taps: &[ColTap],
    y: &mut [f32],
    sc: &mut MaxScratch,
) {
    let ow = g.ow;
    row_maxima(p, g, taps, sc, false);
    for (yr, &(iy0, ny, dy)) in y.chunks_exact_mut(ow).zip(rows) {
        yr.fill(f32::NEG_INFINITY);
        for a in 0..ny {
            let hr = &sc.hv[(iy0 + a * dy) * ow..(iy0 + a * dy + 1) * ow];
            for (v, &x) in yr.iter_mut().zip(hr) {
                *v = pick(greater(x, *v), x, *v);
            }
        }
    }
}

impl Pool {
    /// The window taps of every output row and column (see [`taps`]).
    fn max_taps(g: &Geometry) -> (Vec<Taps>, Vec<Taps>) {
        let rows = (0..g.oh)
            .map(|oy| taps(oy, g.sh, g.pt, g.kh, g.dh, g.h))
            .collect();
        let cols = (0..g.ow)
            .map(|ox| taps(ox, g.sw, g.pl, g.kw, g.dw, g.w))
            .collect();
        (rows, cols)
    }
    /// Where max pooling sends each output's gradient: `src[o]` is the index in plane `p`
    /// of the first maximal element of output `o`'s window in row-major order (the first
    /// element, then each greater one), [`NONE`] for a window with no element. `fast` is
    /// [`is_max2x2`]; `rows`, `cols` and `taps` come from [`Pool::max_taps`] and [`col_taps`].
    ///
    /// Separably, as [`max_plane`]: each row's first maximum under each window (from −∞, NaNs
    /// skipped), then down the window's rows, a greater value replacing the running one. That
    /// finds the first maximum of the window's non-NaN values in row-major order, which is the
    /// definition's answer unless the window's first element is NaN (no later value is greater
    /// than it) or every non-NaN value is −∞ (none is greater than the first): then the first
    /// element, which is where the scan ends with [`NONE`] or where it starts NaN.
    #[allow(clippy::too_many_arguments)]
    fn max_sources(
        g: &Geometry,
        (rows, cols): (&[Taps], &[Taps]),
        taps: &[ColTap],
        fast: bool,
        p: &[f32],
        src: &mut [u32],
        sc: &mut MaxScratch,
    ) {
        if fast {
            for (oy, sr) in src.chunks_exact_mut(g.ow).take(g.oh).enumerate() {
                for (ox, s) in sr.iter_mut().enumerate() {
                    let (a, b) = (2 * oy * g.w + 2 * ox, (2 * oy + 1) * g.w + 2 * ox);
                    // The first tap, then each greater one: selects rather than branches,
                    // which mispredict on about every other tap of real activations.
                    let (mut best, mut m) = (a, p[a]);
                    for i in [a + 1, b, b + 1] {
                        let gt = p[i] > m;
                        m = if gt { p[i] } else { m };
                        best = if gt { i } else { best };
                    }
                    *s = best as u32;
                }
            }
            return;
        }
        let ow = g.ow;
        row_maxima(p, g, taps, sc, true);
        sc.m.resize(ow, 0.0);
        for (sr, &(iy0, ny, dy)) in src.chunks_exact_mut(ow).zip(rows) {
            sr.fill(NONE);
            sc.m.fill(f32::NEG_INFINITY);
            for a in 0..ny {
                let r = iy0 + a * dy;
                let (hv, hc) = (&sc.hv[r * ow..(r + 1) * ow], &sc.hc[r * ow..(r + 1) * ow]);
                let base = (r * g.w) as u32;
                for (((s, m), &v), &c) in sr.iter_mut().zip(&mut sc.m).zip(hv).zip(hc) {
                    let k = greater(v, *m);
                    *m = pick(k, v, *m);
                    *s = (base + c) & k | *s & !k;
                }
            }
            if ny == 0 {
                continue;
            }
            for (s, &(ix0, nx, _)) in sr.iter_mut().zip(cols) {
                let first = iy0 * g.w + ix0;
                if nx > 0 && (*s == NONE || p[first].is_nan()) {
                    *s = first as u32;
                }
            }
        }
    }
    /// The max-pooling gradient of `copies` copies of the batch `x` at once (`grad` copy-major):
    /// each window's maximum is found once, then every copy's gradient goes there.
    fn max_grad(&self, x: &Tensor, grad: &Tensor, copies: usize) -> Result<Tensor> {
        let (planes, g, _, _) = self.geo(x)?;
        #[cfg(target_arch = "x86_64")]
        if is_max2x2(self.kind, &g) && crate::kernels::direct::available() {
            // SAFETY: the CPU has AVX-512 (the direct kernel's check).
            return Ok(unsafe { self.max2x2_grad(x, grad, copies, planes, &g) });
        }
        let (hw, ohw) = ((g.h * g.w).max(1), (g.oh * g.ow).max(1));
        let (rows, cols) = Self::max_taps(&g);
        let fast = is_max2x2(self.kind, &g);
        let taps = col_taps(&g);
        let mut src = vec![NONE; planes * ohw];
        let xs = x.fs();
        crate::team::for_each_chunk_init(&mut src, ohw, MaxScratch::default, |sc, i, s| {
            let p = &xs[i * hw..(i + 1) * hw];
            Self::max_sources(&g, (&rows, &cols), &taps, fast, p, s, sc)
        });
        let mut shape = x.shape().to_vec();
        shape[0] *= copies;
        // Each plane is zeroed just before its gradient is added, while it sits in L1: a
        // zeroed allocation first would sweep the whole (9-seed, for FAB) gradient through
        // memory twice.
        let mut dx: Vec<MaybeUninit<f32>> = Vec::with_capacity(copies * x.len());
        dx.resize(copies * x.len(), MaybeUninit::uninit());
        let gs = grad.fs();
        let relu = self.relu_input;
        crate::team::for_each_chunk(&mut dx, hw, |i, d| {
            let gy = &gs[i * ohw..(i + 1) * ohw];
            let p = i % planes;
            let s = &src[p * ohw..(p + 1) * ohw];
            let xp = &xs[p * hw..(p + 1) * hw];
            d.fill(MaybeUninit::new(0.0));
            // SAFETY: every element of `d` was just initialised.
            let d = unsafe { &mut *(d as *mut [MaybeUninit<f32>] as *mut [f32]) };
            if relu {
                // As the ReLU's mask would: `dy · [x > 0]`.
                for (&at, &gv) in s.iter().zip(gy) {
                    if at != NONE {
                        d[at as usize] += gv * (xp[at as usize] > 0.0) as u8 as f32;
                    }
                }
                return;
            }
            for (&at, &gv) in s.iter().zip(gy) {
                if at != NONE {
                    d[at as usize] += gv;
                }
            }
        });
        // SAFETY: the planes cover `dx` (its length is a multiple of `hw`), and each was
        // initialised above.
        let dx = unsafe {
            let mut dx = std::mem::ManuallyDrop::new(dx);
            Vec::from_raw_parts(dx.as_mut_ptr() as *mut f32, dx.len(), dx.capacity())
        };
        Ok(Tensor::f32(shape, dx))
    }
    /// [`Pool::max_grad`] of the 2×2 stride-2 pool ([`is_max2x2`]) on AVX-512, every element
    /// of the gradient written once. Each window's source is found once per plane as a tap code
    /// (`0..4`, row-major in the window, by [`Pool::max_sources`]'s rule: the first tap, then
    /// each greater one), with bit 2 set where a ReLU before the pool kills it (`relu_input`
    /// and the input not positive); then each copy's plane is written row by row, 16 windows
    /// at a time: a window's value at its source, zeros at its other taps and where no window
    /// reaches. The value is `0 + dy·0` where killed and `0 + dy` elsewhere, the bits the
    /// general path's zeroing and adding give. (Zeroing every plane and scattering into it took
    /// 14–18 % of FAB on LeNet-5, `perf`; written once but a window at a time, in scalar code,
    /// it measured slower still.)
    ///
    /// # Safety
    /// The CPU must have AVX-512 (F).
    #[cfg(target_arch = "x86_64")]
    unsafe fn max2x2_grad(
        &self,
        x: &Tensor,
        grad: &Tensor,
        copies: usize,
        planes: usize,
        g: &Geometry,
    ) -> Tensor {
        use max2x2::{codes, write};
        let (w, oh, ow) = (g.w, g.oh, g.ow);
        let (hw, ohw) = (g.h * w, oh * ow);
        let xs = x.fs();
        let relu = self.relu_input;
        // 16 bytes of slack: the writes load a whole vector of codes at every window.
        let mut all = vec![0u8; planes * ohw + 16];
        if ohw > 0 {
            crate::team::for_each_chunk(&mut all[..planes * ohw], ohw, |i, cs| {
                // SAFETY: AVX-512 (the caller's contract); plane `i` of `xs` and its codes.
                unsafe { codes(&xs[i * hw..(i + 1) * hw], (w, oh, ow), relu, cs) }
            });
        }
        let mut shape = x.shape().to_vec();
        shape[0] *= copies;
        let mut dx: Vec<MaybeUninit<f32>> = Vec::with_capacity(copies * x.len());
        dx.resize(copies * x.len(), MaybeUninit::uninit());
        let gs = grad.fs();
        let all = &all;
        if hw > 0 {
            crate::team::for_each_chunk(&mut dx, hw, |i, d| {
                let gy = &gs[i * ohw..(i + 1) * ohw];
                // SAFETY: AVX-512; the plane's codes with at least 16 bytes after them.
                unsafe { write(gy, &all[(i % planes) * ohw..], (w, oh, ow), d) }
            });
        }
        // SAFETY: `write` wrote every element of every plane, and the planes cover `dx` (its
        // length is a multiple of `hw`).
        let dx = unsafe {
            let mut dx = std::mem::ManuallyDrop::new(dx);
            Vec::from_raw_parts(dx.as_mut_ptr() as *mut f32, dx.len(), dx.capacity())
        };
        Tensor::f32(shape, dx)
    }
    fn geo(&self, x: &Tensor) -> Result<(usize, Geometry, bool, [usize; 2])> {
        let (planes, h, w, one_d) = planes(self.name_(), x)?;
        let mut win = self.window.clone();
        if one_d {
            win.kernel = [1, win.kernel[1]];
        }
        let geo = win.geometry(self.name_(), 1, h, w)?;
        let pads_end = [geo.pb, geo.pr];
        Ok((planes, geo, one_d, pads_end))
    }
    fn name_(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "MaxPool",
            PoolKind::Average { .. } => "AveragePool",
        }
    }
    fn out_shape(x: &Tensor, g: &Geometry, one_d: bool) -> Vec<usize> {
        let s = x.shape();
        if one_d {
            vec![s[0], s[1], g.ow]
        } else {
            vec![s[0], s[1], g.oh, g.ow]
        }
    }
}

impl Op for Pool {
    fn name(&self) -> &'static str {
        self.name_()
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input_f32(self.name_(), inputs, 0)?;
        let (np, g, one_d, pend) = self.geo(x)?;
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let mut out = vec![0.0f32; np * ohw];
        let kind = self.kind;
        let (rows, _) = Self::max_taps(&g);
        let taps = col_taps(&g);
        let fast = is_max2x2(kind, &g);
        let xs = x.fs();
        crate::team::for_each_chunk_init(&mut out, ohw.max(1), MaxScratch::default, |sc, i, y| {
            // Plane `i` of the input (as a zip of both planes' chunks would pair them).
            let h1 = hw.max(1);
            if i * h1 >= xs.len() {
                return;
            }
            let p = &xs[i * h1..((i + 1) * h1).min(xs.len())];
            if fast {
                return max2x2(p, g.w, g.oh, g.ow, y);
            }
            if kind == PoolKind::Max {
                return max_plane(p, &g, &rows, &taps, y, sc);
            }
            for oy in 0..g.oh {
                let (y0, y1, py) = span(oy, g.sh, g.pt, g.kh, g.dh, g.h, pend[0]);
                for ox in 0..g.ow {
                    let (x0, x1, px) = span(ox, g.sw, g.pl, g.kw, g.dw, g.w, pend[1]);
                    let PoolKind::Average { count_include_pad } = kind else {
                        unreachable!("max pooling returned above")
                    };
                    let mut s = 0.0;
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            s += p[iy * g.w + ix];
                        }
                    }
                    let cnt = if count_include_pad {
                        py * px
                    } else {
                        (y1 - y0) * (x1 - x0)
                    };
                    y[oy * g.ow + ox] = s / cnt.max(1) as f32;
                }
            }
        });
        Ok(Tensor::f32(Self::out_shape(x, &g, one_d), out))
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        if !need[0] {
            return Ok(vec![None; need.len()]);
        }
        let x = input_f32(self.name_(), inputs, 0)?;
        let mut res = vec![None; need.len()];
        let PoolKind::Average { count_include_pad } = self.kind else {
            res[0] = Some(self.max_grad(x, grad, 1)?);
            return Ok(res);
        };
        let (_, g, _, pend) = self.geo(x)?;
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let mut dx = vec![0.0f32; x.len()];
        dx.par_chunks_mut(hw.max(1))
            .zip(grad.fs().par_chunks(ohw.max(1)))
            .for_each(|(d, gy)| {
                for oy in 0..g.oh {
                    let (y0, y1, py) = span(oy, g.sh, g.pt, g.kh, g.dh, g.h, pend[0]);
                    for ox in 0..g.ow {
                        let (x0, x1, px) = span(ox, g.sw, g.pl, g.kw, g.dw, g.w, pend[1]);
                        let gv = gy[oy * g.ow + ox];
                        let cnt = if count_include_pad {
                            py * px
                        } else {
                            (y1 - y0) * (x1 - x0)
                        };
                        let share = gv / cnt.max(1) as f32;
                        for iy in y0..y1 {
                            for ix in x0..x1 {
                                d[iy * g.w + ix] += share;
                            }
                        }
                    }
                }
            });
        res[0] = Some(Tensor::f32(x.shape().to_vec(), dx));
        Ok(res)
    }
    fn backward_copies(
        &self,
        inputs: &[Option<&Tensor>],
        output: &Tensor,
        grad: &Tensor,
        need: &[bool],
        c: Copies,
    ) -> Result<Vec<Option<Tensor>>> {
        if self.kind != PoolKind::Max || !need[0] || !c.batched(0) {
            return backward_replicated(self, inputs, output, grad, need, c);
        }
        let x = input_f32(self.name_(), inputs, 0)?;
        let mut res = vec![None; need.len()];
        res[0] = Some(self.max_grad(x, grad, c.copies)?);
        Ok(res)
    }
    impl_any!();
}

/// Mean over all spatial positions: `[N, C, …] → [N, C, 1, …]`.
#[derive(Debug, Clone, Default)]
pub struct GlobalAveragePool;

impl Op for GlobalAveragePool {
    fn name(&self) -> &'static str {
        "GlobalAveragePool"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input_f32("GlobalAveragePool", inputs, 0)?;
        let s = x.shape();
        if s.len() < 3 {
            return Err(shape_err(
                "GlobalAveragePool",
                format!("expects rank ≥ 3, got {s:?}"),
            ));
        }
        let inner: usize = s[2..].iter().product();
        let out: Vec<f32> = x
            .fs()
            .chunks(inner.max(1))
            .map(|c| c.iter().sum::<f32>() / inner as f32)
            .collect();
        let mut shape = s.to_vec();
        for d in shape.iter_mut().skip(2) {
            *d = 1;
        }
        Ok(Tensor::f32(shape, out))
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        if need[0] {
            let x = input_f32("GlobalAveragePool", inputs, 0)?;
            let inner: usize = x.shape()[2..].iter().product();
            let mut dx = Vec::with_capacity(x.len());
            for &g in grad.fs() {
                dx.extend(std::iter::repeat_n(g / inner as f32, inner));
            }
            res[0] = Some(Tensor::f32(x.shape().to_vec(), dx));
        }
        Ok(res)
    }
    impl_any!();
}

/// The AVX-512 loops of [`Pool::max2x2_grad`], 16 windows (32 columns) at a time, the last
/// vectors of a row masked.
#[cfg(target_arch = "x86_64")]
mod max2x2 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// The lanes below `n` (at most 16).
    fn lanes(n: usize) -> __mmask16 {
        ((1u32 << n.min(16)) - 1) as u16
    }

    /// The tap code of every window of plane `p` (`w` wide, `oh × ow` windows) into `cs`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn codes(
        p: &[f32],
        (w, oh, ow): (usize, usize, usize),
        relu: bool,
        cs: &mut [u8],
    ) {
        debug_assert!(p.len() >= 2 * oh * w && 2 * ow <= w && cs.len() == oh * ow);
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let zero = _mm512_setzero_ps();
        for oy in 0..oh {
            let (r0, r1) = (p.as_ptr().add(2 * oy * w), p.as_ptr().add((2 * oy + 1) * w));
            for ox in (0..ow).step_by(16) {
                let n = (ow - ox).min(16);
                let (lo, hi) = (lanes(2 * n), lanes((2 * n).saturating_sub(16)));
                let (a0, a1) = (
                    _mm512_maskz_loadu_ps(lo, r0.wrapping_add(2 * ox)),
                    _mm512_maskz_loadu_ps(hi, r0.wrapping_add(2 * ox + 16)),
                );
                let (b0, b1) = (
                    _mm512_maskz_loadu_ps(lo, r1.wrapping_add(2 * ox)),
                    _mm512_maskz_loadu_ps(hi, r1.wrapping_add(2 * ox + 16)),
                );
                let (t0, t1) = (
                    _mm512_permutex2var_ps(a0, even, a1),
                    _mm512_permutex2var_ps(a0, odd, a1),
                );
                let (t2, t3) = (
                    _mm512_permutex2var_ps(b0, even, b1),
                    _mm512_permutex2var_ps(b0, odd, b1),
                );
                let (mut m, mut code) = (t0, _mm512_setzero_si512());
                for (t, k) in [(t1, 1), (t2, 2), (t3, 3)] {
                    let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(t, m);
                    m = _mm512_mask_mov_ps(m, gt, t);
                    code = _mm512_mask_mov_epi32(code, gt, _mm512_set1_epi32(k));
                }
                if relu {
                    let killed = !_mm512_cmp_ps_mask::<_CMP_GT_OQ>(m, zero);
                    code = _mm512_mask_or_epi32(code, killed, code, _mm512_set1_epi32(4));
                }
                let mut bytes = [0u8; 16];
                _mm_storeu_si128(
                    bytes.as_mut_ptr() as *mut __m128i,
                    _mm512_cvtepi32_epi8(code),
                );
                cs[oy * ow + ox..oy * ow + ox + n].copy_from_slice(&bytes[..n]);
            }
        }
    }

    /// One copy's plane `d` (`w` wide) of the gradient from its windows' gradients `gy` and
    /// codes `cs` (which must extend at least 16 bytes past the plane's `oh·ow`).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn write(
        gy: &[f32],
        cs: &[u8],
        (w, oh, ow): (usize, usize, usize),
        d: &mut [MaybeUninit<f32>],
    ) {
        debug_assert!(gy.len() == oh * ow && cs.len() >= oh * ow + 16 && 2 * ow <= w);
        let zero = _mm512_setzero_ps();
        let (lo, hi) = (
            _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23),
            _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31),
        );
        let (three, four) = (_mm512_set1_epi32(3), _mm512_set1_epi32(4));
        for (r, dr) in d.chunks_exact_mut(w).enumerate() {
            let oy = r / 2;
            if oy >= oh {
                dr.fill(MaybeUninit::new(0.0));
                continue;
            }
            // The taps of this row of the windows: 0 and 1 on top, 2 and 3 below.
            let half = 2 * (r % 2) as i32;
            let (left, right) = (_mm512_set1_epi32(half), _mm512_set1_epi32(half + 1));
            let out = dr.as_mut_ptr() as *mut f32;
            for ox in (0..ow).step_by(16) {
                let n = (ow - ox).min(16);
                let at = oy * ow + ox;
                let gv = _mm512_maskz_loadu_ps(lanes(n), gy.as_ptr().add(at));
                let c =
                    _mm512_cvtepu8_epi32(_mm_loadu_si128(cs.as_ptr().add(at) as *const __m128i));
                let killed = _mm512_test_epi32_mask(c, four);
                let v = _mm512_add_ps(zero, _mm512_mask_mul_ps(gv, killed, gv, zero));
                let tap = _mm512_and_si512(c, three);
                let a = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(tap, left), v);
                let b = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(tap, right), v);
                let (m0, m1) = (lanes(2 * n), lanes((2 * n).saturating_sub(16)));
                _mm512_mask_storeu_ps(out.add(2 * ox), m0, _mm512_permutex2var_ps(a, lo, b));
                _mm512_mask_storeu_ps(
                    out.wrapping_add(2 * ox + 16),
                    m1,
                    _mm512_permutex2var_ps(a, hi, b),
                );
            }
            dr[2 * ow..].fill(MaybeUninit::new(0.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::AutoPad;

    /// Max pooling by its definition: every dilated tap of every window inside the plane, in
    /// row-major order; forward keeps a greater value (from −∞), backward routes to the first
    /// tap, then to each greater one.
    fn naive(x: &[f32], [n, h, w]: [usize; 3], win: &Window, gy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let g = win.geometry("MaxPool", 1, h, w).unwrap();
        let (mut y, mut dx) = (Vec::new(), vec![0.0f32; x.len()]);
        for p in 0..n {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let (mut m, mut best) = (f32::NEG_INFINITY, None);
                    let mut first = None;
                    for i in 0..g.kh {
                        for j in 0..g.kw {
                            let iy = (oy * g.sh + i * g.dh) as isize - g.pt as isize;
                            let ix = (ox * g.sw + j * g.dw) as isize - g.pl as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let at = p * h * w + iy as usize * w + ix as usize;
                            if x[at] > m {
                                m = x[at];
                            }
                            match (first, best) {
                                (None, _) => {
                                    first = Some(x[at]);
                                    best = Some(at);
                                }
                                (Some(_), Some(b)) if x[at] > x[b] => best = Some(at),
                                _ => {}
                            }
                        }
                    }
                    let o = y.len();
                    y.push(m);
                    if let Some(b) = best {
                        dx[b] += gy[o];
                    }
                }
            }
        }
        (y, dx)
    }

    #[test]
    fn max_pool_matches_its_definition_with_ties_and_nans() {
        let w = |k: [usize; 2], s: [usize; 2], d: [usize; 2], p: [usize; 4], ceil: bool| Window {
            kernel: k,
            strides: s,
            dilations: d,
            pads: p,
            auto_pad: AutoPad::NotSet,
            ceil_mode: ceil,
        };
        let cases = [
            w([2, 2], [2, 2], [1, 1], [0; 4], false), // the fast path, even plane
            w([2, 2], [2, 2], [1, 1], [0; 4], true),  // odd plane, ceil: general path
            w([3, 3], [2, 2], [1, 1], [1, 1, 1, 1], false),
            w([2, 3], [1, 2], [2, 1], [1, 0, 0, 2], true),
            w([3, 2], [3, 1], [1, 2], [0, 1, 2, 0], false),
            w([3, 3], [3, 3], [1, 1], [1, 1, 1, 1], true),
            w([3, 3], [2, 2], [2, 2], [2, 1, 0, 1], false),
            w([1, 3], [1, 3], [1, 1], [0, 2, 0, 2], true),
        ];
        for (c, win) in cases.iter().enumerate() {
            // (Rows of 20 and 33 windows reach the fast path's 16-window vectors and their tails.)
            for [h, wd] in [[6, 8], [7, 9], [4, 40], [5, 67]] {
                let (n, hw) = (3, h * wd);
                // Few distinct values (ties everywhere), some NaNs, −∞, signed zeros; the last
                // plane mostly NaN and −∞, so that some windows hold nothing else.
                let x: Vec<f32> = (0..n * hw)
                    .map(|i| match ((i * 7919 + c) % 11, i >= (n - 1) * hw) {
                        (0, _) | (4..=7, true) => f32::NAN,
                        (3, _) | (8.., true) => f32::NEG_INFINITY,
                        (1, _) => -0.0,
                        (2, _) => 0.0,
                        (v, _) => (v % 4) as f32 - 1.5,
                    })
                    .collect();
                let op = Pool {
                    kind: PoolKind::Max,
                    window: win.clone(),
                    relu_input: false,
                };
                let xt = Tensor::f32(vec![1, n, h, wd], x.clone());
                let y = op.forward(&[Some(&xt)]).unwrap();
                let gy: Vec<f32> = (0..y.len()).map(|i| (i % 5) as f32 - 2.0).collect();
                let (want_y, want_dx) = naive(&x, [n, h, wd], win, &gy);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(y.fs()), bits(&want_y), "case {c}, {h}x{wd}: forward");
                let gt = Tensor::f32(y.shape().to_vec(), gy);
                let dx = op.backward(&[Some(&xt)], &y, &gt, &[true]).unwrap()[0]
                    .take()
                    .unwrap();
                assert_eq!(
                    bits(dx.fs()),
                    bits(&want_dx),
                    "case {c}, {h}x{wd}: backward"
                );
                // Behind a ReLU (`mask_at_pool`): the gradient where the input is positive.
                let masked = Pool {
                    relu_input: true,
                    ..op
                };
                let dx = masked.backward(&[Some(&xt)], &y, &gt, &[true]).unwrap()[0]
                    .take()
                    .unwrap();
                let want: Vec<f32> = (want_dx.iter().zip(&x))
                    .map(|(&d, &v)| if v > 0.0 { d } else { 0.0 })
                    .collect();
                assert_eq!(bits(dx.fs()), bits(&want), "case {c}, {h}x{wd}: masked");
            }
        }
    }
}
