//! The input gradient of a convolution whose output gradient is mostly zeros.
//!
//! Behind max pooling (one position of each window gets the gradient) and a ReLU, most of a
//! convolution's output gradient `dY` is zero: under a quarter of LeNet-5's second layer's in
//! FAB. The dense routes (`Conv::input_grad`) multiply every zero; this one visits only the
//! non-zero (channel, position) pairs of each sample:
//!
//! `dX[c, oy·sh − pt + ky·dh, ox·sw − pl + kx·dw] += Σ_m dY[m, oy, ox] · W[m, c, ky, kx]`
//!
//! For each output position `p` it lists the channels `L` whose gradient is non-zero there and
//! forms one small product `B = G · Wr[L]` (`G`: the gradients at `p`, one row per copy; `Wr`:
//! the weights as rows `[m][ky][kx][c]`, so that a row holds everything one gradient value
//! reaches), then adds `B`'s blocks into a channels-last accumulator at the positions the taps
//! reach, and finally transposes that accumulator into `dX`.
//!
//! The copies of a sample (`Graph::backward_copies`: FAB's and DeepFool's per-class seeds)
//! share its activations, so they share the pattern: `L` is the union over the copies and the
//! product has one row per copy.
//!
//! Summation order, per input element: over the output positions in row-major order, and at
//! each position over the channels in increasing order. It does not depend on the batch, the
//! copies or the threads; the zeros it skips would add nothing.

use super::im2col::Geometry;
use super::{relu_mask_into, OutPtr};
use crate::error::Result;

/// A sample takes this route when its non-zero pairs cost less than this share of the dense
/// product (`pairs · row < MAX_SHARE · m · positions · taps · c`, `row` the padded weight row).
/// [U]: the route runs at about half the dense kernels' multiply-add rate (measured with
/// `benches/sparse_grad` on LeNet-5's second layer, AVX-512); the margin keeps it to where
/// it clearly wins.
pub(crate) const MAX_SHARE: f32 = 0.4;

/// The weights `w[m × c × taps]` as rows `[m][tap][c]`, each padded with zeros to whole 16-float
/// vectors.
#[derive(Debug)]
pub(crate) struct Rows {
    pub(crate) data: Vec<f32>,
    /// Floats per row (a multiple of 16, at least `taps · c`).
    pub(crate) row: usize,
}

impl Rows {
    /// A convolution's weights `w[m × c × taps]`.
    pub(crate) fn new(w: &[f32], m: usize, c: usize, taps: usize) -> Rows {
        let row = (taps * c).div_ceil(16) * 16;
        let mut data = vec![0.0; m * row];
        for mi in 0..m {
            for ci in 0..c {
                for t in 0..taps {
                    data[mi * row + t * c + ci] = w[(mi * c + ci) * taps + t];
                }
            }
        }
        Rows { data, row }
    }
}

/// How a batch's gradient is laid out: `copies` blocks of `n` samples of `m × positions`
/// values (copy-major, as `Graph::backward_copies` makes them).
#[derive(Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) n: usize,
    pub(crate) copies: usize,
    pub(crate) m: usize,
    pub(crate) positions: usize,
}

impl Layout {
    /// Where copy `s` of sample `i` starts.
    pub(crate) fn at(&self, s: usize, i: usize) -> usize {
        (s * self.n + i) * self.m * self.positions
    }
}

/// One sample's non-zero pattern over all its copies: for output position `p`, the channels
/// where some copy's gradient is non-zero, increasing, are `chans[p·m..p·m + count[p]]`.
pub(crate) struct Pattern {
    count: Vec<u32>,
    chans: Vec<u32>,
    m: usize,
}

impl Pattern {
    /// The pattern of sample `i` of `dy`, where `relu` (the sample's ReLU outputs, when the
    /// gradient still has to pass the ReLU) is positive; None when it has more than `most`
    /// non-zero pairs.
    pub(crate) fn of(
        dy: &[f32],
        l: Layout,
        i: usize,
        relu: Option<&[f32]>,
        most: usize,
    ) -> Option<Pattern> {
        let plane = l.m * l.positions;
        let mut flags = vec![0u8; plane];
        for s in 0..l.copies {
            for (f, &v) in flags.iter_mut().zip(&dy[l.at(s, i)..][..plane]) {
                *f |= (v != 0.0) as u8;
            }
        }
        if let Some(y) = relu {
            for (f, &y) in flags.iter_mut().zip(&y[i * plane..][..plane]) {
                *f &= (y > 0.0) as u8;
            }
        }
        if flags.iter().map(|&f| f as usize).sum::<usize>() > most {
            return None;
        }
        // Branch-free: every channel is written into its position's list, and the list grows
        // only where the flag is set (the next channel overwrites a rejected one).
        let mut count = vec![0u32; l.positions];
        let mut chans = vec![0u32; l.positions * l.m];
        for (co, row) in flags.chunks(l.positions).enumerate() {
            for (p, (n, &f)) in count.iter_mut().zip(row).enumerate() {
                chans[p * l.m + (*n as usize).min(l.m - 1)] = co as u32;
                *n += f as u32;
            }
        }
        Some(Pattern {
            count,
            chans,
            m: l.m,
        })
    }

    /// The channels with a gradient at position `p`.
    fn at(&self, p: usize) -> &[u32] {
        &self.chans[p * self.m..][..self.count[p] as usize]
    }

    /// Most non-zero pairs a sample may have to take this route (see [`MAX_SHARE`]), for a
    /// layer of `m` output and `c` input channels, `taps` kernel taps, `positions` output
    /// positions and weight rows of `row` floats.
    pub(crate) fn most((m, c, taps, positions): (usize, usize, usize, usize), row: usize) -> usize {
        (MAX_SHARE * (m * positions * taps * c) as f32 / row as f32) as usize
    }
}

/// Runs a layer's input gradient over a batch laid out as `l` (`in_len` input values per
/// sample and copy): each sample whose pattern ([`Pattern::of`], behind `relu` when given)
/// has at most `most` pairs on the sparse route, `sparse(i, its pattern, work, its output)`,
/// and the others in one call `dense(their gradients, their count)`, which gets the ReLU-masked
/// gradients of those samples (every copy, copy-major) and returns their input gradients in
/// the same order. None where no sample takes the sparse route. The choice is per sample, so
/// a sample's result does not depend on the rest of its batch.
pub(crate) fn run(
    dy: &[f32],
    l: Layout,
    relu: Option<&[f32]>,
    (most, in_len): (usize, usize),
    dense: impl FnOnce(Vec<f32>, usize) -> Result<Vec<f32>>,
    sparse: impl Fn(usize, &Pattern, &mut Work, &mut Dest) + Sync,
) -> Result<Option<Vec<f32>>> {
    let pats: Vec<Option<Pattern>> = (0..l.n)
        .map(|i| Pattern::of(dy, l, i, relu, most))
        .collect();
    if pats.iter().all(Option::is_none) {
        return Ok(None);
    }
    let (copies, out_len) = (l.copies, l.m * l.positions);
    let mut dx = vec![0f32; copies * l.n * in_len];
    let dense_ones: Vec<usize> = (0..l.n).filter(|&i| pats[i].is_none()).collect();
    if !dense_ones.is_empty() {
        let mut sub = Vec::with_capacity(copies * dense_ones.len() * out_len);
        for s in 0..copies {
            for &i in &dense_ones {
                let g = &dy[l.at(s, i)..][..out_len];
                match relu {
                    Some(y) => relu_mask_into(&mut sub, g, &y[i * out_len..][..out_len]),
                    None => sub.extend_from_slice(g),
                }
            }
        }
        let k = dense_ones.len();
        let part = dense(sub, k)?;
        for s in 0..copies {
            for (j, &i) in dense_ones.iter().enumerate() {
                let src = &part[(s * k + j) * in_len..][..in_len];
                dx[(s * l.n + i) * in_len..][..in_len].copy_from_slice(src);
            }
        }
    }
    let todo: Vec<(usize, &Pattern)> = pats
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
        .collect();
    let base = OutPtr(dx.as_mut_ptr());
    crate::team::for_each_init(todo.len(), Work::default, |work, j| {
        let (i, pat) = todo[j];
        let mut dest = Dest {
            base,
            n: l.n,
            i,
            len: in_len,
        };
        sparse(i, pat, work, &mut dest);
    });
    Ok(Some(dx))
}

/// Where a sparse task writes its sample's input gradients: one `len`-value block per copy
/// in a buffer of `copies × n` blocks (copy-major).
pub(crate) struct Dest {
    base: OutPtr,
    n: usize,
    i: usize,
    len: usize,
}

impl Dest {
    /// Copy `s`'s block.
    pub(crate) fn copy(&mut self, s: usize) -> &mut [f32] {
        // SAFETY: [`run`] gives each task its own sample `i`, so block `(s·n + i)` is written by
        // this task alone, and the buffer outlives the tasks; `s` is below the copies (the
        // callers loop over them).
        unsafe {
            std::slice::from_raw_parts_mut(
                self.base.get().add((s * self.n + self.i) * self.len),
                self.len,
            )
        }
    }
}

/// A thread's working buffers.
#[derive(Default)]
pub(crate) struct Work {
    acc: Vec<f32>,
    g: Vec<f32>,
    b: Vec<f32>,
}

/// A convolution's input gradient of sample `i` for every copy, into `dx` (`c × h × w` values
/// a copy).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sample(
    geo: &Geometry,
    l: Layout,
    rows: &Rows,
    dy: &[f32],
    pat: &Pattern,
    i: usize,
    work: &mut Work,
    dx: &mut Dest,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { x86::sample512(geo, l, rows, dy, pat, i, work, dx) };
        }
    }
    sample_with(geo, l, rows, dy, pat, i, work, dx)
}

/// [`sample`]'s body, compiled once more with AVX-512 enabled (its adds, fills and copies
/// vectorise on the widest registers).
///
/// The accumulator is the channels-last input plane of each copy, padded so that every tap
/// of every position lands inside it (padding taps add into a margin that is never read), so
/// a tap's place is the position's corner plus a per-layer offset. Where each weight row splits
/// into whole vectors per tap (`c` a multiple of the SIMD lanes), the product adds its vectors
/// straight into the accumulator at those places, with no buffer and no scatter pass between
/// them; elsewhere it fills `work.b` and each tap's `c` values are added from there. The sums
/// run in the same order either way.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn sample_with(
    geo: &Geometry,
    l: Layout,
    rows: &Rows,
    dy: &[f32],
    pat: &Pattern,
    i: usize,
    work: &mut Work,
    dx: &mut Dest,
) {
    let (c, row, copies) = (geo.c, rows.row, l.copies);
    let taps = geo.kh * geo.kw;
    let lanes = simd_lanes();
    let fused = lanes > 0 && c % lanes == 0 && row == taps * c;
    let hp = ((geo.oh.max(1) - 1) * geo.sh + (geo.kh - 1) * geo.dh + 1).max(geo.h + geo.pt);
    let wp = ((geo.ow.max(1) - 1) * geo.sw + (geo.kw - 1) * geo.dw + 1).max(geo.w + geo.pl);
    let plane = hp * wp * c;
    work.acc.clear();
    work.acc.resize(copies * plane, 0.0);
    work.b.resize(copies * row, 0.0);
    // Where tap `t`'s channel `ch` lands, from the position's corner.
    let at = |t: usize, ch: usize| ((t / geo.kw) * geo.dh * wp + (t % geo.kw) * geo.dw) * c + ch;
    let voff: Vec<usize> = match fused {
        true => (0..row / lanes)
            .map(|v| at(v * lanes / c, v * lanes % c))
            .collect(),
        false => Vec::new(),
    };
    let bases: Vec<&[f32]> = (0..copies)
        .map(|s| &dy[l.at(s, i)..][..l.m * l.positions])
        .collect();
    for p in 0..l.positions {
        let chans = pat.at(p);
        if chans.is_empty() {
            continue;
        }
        // G[k][s]: the gradient of copy s at channel chans[k].
        work.g.resize(chans.len() * copies, 0.0);
        for (gk, &co) in work.g.chunks_exact_mut(copies).zip(chans) {
            for (g, base) in gk.iter_mut().zip(&bases) {
                *g = base[co as usize * l.positions + p];
            }
        }
        let (oy, ox) = (p / geo.ow, p % geo.ow);
        let corner = (oy * geo.sh * wp + ox * geo.sw) * c;
        if fused {
            let out = Out {
                // SAFETY (of `add`): `corner` is inside the first copy's plane.
                base: unsafe { work.acc.as_mut_ptr().add(corner) },
                stride: plane,
                voff: voff.as_ptr(),
            };
            // SAFETY: `lanes` is not 0; `g` holds `chans.len() × copies` values and the
            // pattern's channels are the layer's; the farthest tap of the last position,
            // `(oh−1)·sh + (kh−1)·dh` rows and the like in columns from the corner, with the
            // last vector's `lanes` channels, is inside `hp × wp × c`, in each copy's plane.
            unsafe { accumulate(chans, &work.g, copies, rows, out) };
            continue;
        }
        product(chans, &work.g, copies, rows, &mut work.b);
        for t in 0..taps {
            let q = corner + at(t, 0);
            for s in 0..copies {
                let src = &work.b[s * row + t * c..][..c];
                let dst = &mut work.acc[s * plane + q..][..c];
                for (d, v) in dst.iter_mut().zip(src) {
                    *d += v;
                }
            }
        }
    }
    for s in 0..copies {
        let out = dx.copy(s);
        let acc = &work.acc[s * plane..(s + 1) * plane];
        // Channel by channel: the writes run in order, the reads stride through cache.
        for (ci, ch) in out.chunks_exact_mut(geo.h * geo.w).enumerate() {
            for (iy, orow) in ch.chunks_exact_mut(geo.w).enumerate() {
                let arow = &acc[((iy + geo.pt) * wp + geo.pl) * c..];
                for (o, a) in orow.iter_mut().zip(arow.chunks_exact(c)) {
                    *o = a[ci];
                }
            }
        }
    }
}

/// Whether the automatic choice considers this route for a layer of `c` input channels and
/// gradients of `copies` seeds per sample: only with SIMD
/// products, where each gradient value feeds whole vectors (`c ≥ 16`; `c = 1`, a grey image's
/// gradient, ran 5–20× slower than the direct kernel), and for several seeds per sample,
/// where the weights a value reads serve every seed (with one seed the route ran 0.7–0.8× the
/// direct kernel at 15–19 % non-zero, `benches/sparse_grad`).
pub(crate) fn applies(c: usize, copies: usize) -> bool {
    c >= 16 && copies >= 4 && available()
}

/// Whether the product runs on SIMD (AVX2 + FMA or AVX-512) here.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `b[s][..row] = Σ_k g[k][s] · Wr[chans[k]][..row]` for the `copies` rows, on the widest SIMD
/// the CPU has. Hand-written because the rows of `Wr` are gathered (`chans`), which a GEMM
/// library would first copy out; the tiles keep up to 24 vectors of `b` in registers.
fn product(chans: &[u32], g: &[f32], copies: usize, rows: &Rows, b: &mut [f32]) {
    debug_assert!(g.len() >= chans.len() * copies && b.len() >= copies * rows.row);
    debug_assert!(chans
        .iter()
        .all(|&c| (c as usize + 1) * rows.row <= rows.data.len()));
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F; every row read is inside `rows.data` (the channels
            // index its rows), every `g` read inside the `chans.len() × copies` values and every
            // write inside `b`'s `copies × row` values (the asserts above).
            return unsafe { x86::product512(chans, g, copies, rows, Out::store(b, rows.row)) };
        }
        if available() {
            // SAFETY: as above, with AVX2 and FMA.
            return unsafe { x86::product256(chans, g, copies, rows, Out::store(b, rows.row)) };
        }
    }
    for (s, out) in b.chunks_mut(rows.row).take(copies).enumerate() {
        out.fill(0.0);
        for (k, &co) in chans.iter().enumerate() {
            let w = &rows.data[co as usize * rows.row..][..rows.row];
            let gv = g[k * copies + s];
            for (o, &wv) in out.iter_mut().zip(w) {
                *o += gv * wv;
            }
        }
    }
}

/// Where the SIMD product puts row `s` (a copy), vector `v` (of the instruction set's
/// lanes): stored at `base + s·stride + lanes·v` when `voff` is null, else added into
/// `base + s·stride + voff[v]`.
#[derive(Clone, Copy)]
pub(crate) struct Out {
    base: *mut f32,
    stride: usize,
    voff: *const usize,
}

impl Out {
    /// Rows of `stride` values stored into `b`.
    fn store(b: &mut [f32], stride: usize) -> Out {
        Out {
            base: b.as_mut_ptr(),
            stride,
            voff: std::ptr::null(),
        }
    }
}

/// Lanes of the SIMD product here (16 with AVX-512, 8 with AVX2 + FMA), 0 without one.
fn simd_lanes() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return 16;
        }
    }
    if available() {
        8
    } else {
        0
    }
}

/// [`product`] added straight into the accumulator at the taps' places (`out.voff`), on the
/// SIMD product of [`simd_lanes`] lanes.
///
/// # Safety
/// [`simd_lanes`] is not 0; `g` holds `chans.len() × copies` values, the channels index rows
/// of `rows`, and every `out.base + s·out.stride + voff[v] + lane`, `s < copies`, `v <
/// rows.row / lanes`, lies in one writable buffer.
unsafe fn accumulate(chans: &[u32], g: &[f32], copies: usize, rows: &Rows, out: Out) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return x86::product512(chans, g, copies, rows, out);
        }
        x86::product256(chans, g, copies, rows, out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!(
        "no SIMD product on this architecture: {chans:?} {g:?} {copies} {rows:?} {:?}",
        out.stride
    )
}

/// The product's SIMD tiles: `MR` rows (copies) × `NR` vectors of `b`, the rows in balanced
/// blocks of at most 6, then the vectors left over one at a time.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{sample_with, Dest, Geometry, Layout, Out, Pattern, Rows, Work};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn sample512(
        geo: &Geometry,
        l: Layout,
        rows: &Rows,
        dy: &[f32],
        pat: &Pattern,
        i: usize,
        work: &mut Work,
        dx: &mut Dest,
    ) {
        sample_with(geo, l, rows, dy, pat, i, work, dx)
    }

    /// Runs `$tile` over the whole of `b`, `$lanes` floats a vector: the rows in balanced
    /// blocks of at most 6, the vectors in tiles of `NR` (then one at a time), `NR` set by the
    /// largest block (`$nr`: for blocks of at most 6, 5, 4, 3 and 2 rows). Column tiles are the
    /// outer loop, so that a tile's weights (every gathered row's slice) are read from memory
    /// once and from L1 for the other blocks of rows.
    macro_rules! blocked {
        ($tile:ident, $lanes:expr, $chans:ident, $g:ident, $copies:ident, $rows:ident, $b:ident,
         [$nr6:literal, $nr5:literal, $nr4:literal, $nr3:literal, $nr2:literal]) => {{
            let blocks = $copies.div_ceil(6);
            match $copies.div_ceil(blocks) {
                6 => blocked!(@cols $tile, $lanes, $chans, $g, $copies, $rows, $b, blocks, $nr6),
                5 => blocked!(@cols $tile, $lanes, $chans, $g, $copies, $rows, $b, blocks, $nr5),
                4 => blocked!(@cols $tile, $lanes, $chans, $g, $copies, $rows, $b, blocks, $nr4),
                3 => blocked!(@cols $tile, $lanes, $chans, $g, $copies, $rows, $b, blocks, $nr3),
                _ => blocked!(@cols $tile, $lanes, $chans, $g, $copies, $rows, $b, blocks, $nr2),
            }
        }};
        (@cols $tile:ident, $lanes:expr, $chans:ident, $g:ident, $copies:ident, $rows:ident,
         $out:ident, $blocks:ident, $nr:literal) => {{
            let vectors = $rows.row / $lanes;
            let w = $rows.data.as_ptr();
            let mut v = 0;
            while v < vectors {
                let full = v + $nr <= vectors;
                for q in 0..$blocks {
                    let (s0, s1) = (q * $copies / $blocks, (q + 1) * $copies / $blocks);
                    let g = $g.as_ptr().add(s0);
                    let out = Out {
                        base: $out.base.add(s0 * $out.stride),
                        ..$out
                    };
                    let at = (g, $copies, w, $rows.row, v * $lanes, out);
                    match (s1 - s0, full) {
                        (1, true) => $tile::<1, $nr>($chans, at),
                        (2, true) => $tile::<2, $nr>($chans, at),
                        (3, true) => $tile::<3, $nr>($chans, at),
                        (4, true) => $tile::<4, $nr>($chans, at),
                        (5, true) => $tile::<5, $nr>($chans, at),
                        (6, true) => $tile::<6, $nr>($chans, at),
                        (1, false) => $tile::<1, 1>($chans, at),
                        (2, false) => $tile::<2, 1>($chans, at),
                        (3, false) => $tile::<3, 1>($chans, at),
                        (4, false) => $tile::<4, 1>($chans, at),
                        (5, false) => $tile::<5, 1>($chans, at),
                        (6, false) => $tile::<6, 1>($chans, at),
                        _ => unreachable!("blocks of 1 to 6 rows"),
                    }
                }
                v += if full { $nr } else { 1 };
            }
        }};
    }

    /// Where a tile reads and writes: its rows' `g` (advanced to the first row), the copies
    /// (`g`'s row stride), the weight rows, their length, the tile's first column, and where
    /// its first row goes.
    type At = (*const f32, usize, *const f32, usize, usize, Out);

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product512(
        chans: &[u32],
        g: &[f32],
        copies: usize,
        rows: &Rows,
        out: Out,
    ) {
        blocked!(tile512, 16, chans, g, copies, rows, out, [4, 4, 5, 6, 8]);
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn product256(
        chans: &[u32],
        g: &[f32],
        copies: usize,
        rows: &Rows,
        out: Out,
    ) {
        blocked!(tile256, 8, chans, g, copies, rows, out, [2, 2, 2, 3, 4]);
    }

    /// One tile: `MR` rows × `NR` vectors of `b = g · W[chans]`, in registers over the
    /// gathered rows, for one instruction set (its vector type, lane count and intrinsics).
    macro_rules! tile {
        ($name:ident, $feature:literal, $lanes:literal, $zero:ident, $load:ident, $splat:ident,
         $fma:ident, $add:ident, $store:ident) => {
            #[target_feature(enable = $feature)]
            #[inline]
            unsafe fn $name<const MR: usize, const NR: usize>(chans: &[u32], at: At) {
                let (g, copies, w, row, col, out) = at;
                let mut acc = [[$zero(); NR]; MR];
                for (k, &co) in chans.iter().enumerate() {
                    let wr = w.add(co as usize * row + col);
                    let gk = g.add(k * copies);
                    let mut wv = [$zero(); NR];
                    for (v, x) in wv.iter_mut().enumerate() {
                        *x = $load(wr.add($lanes * v));
                    }
                    for (r, a) in acc.iter_mut().enumerate() {
                        let gv = $splat(*gk.add(r));
                        for (x, &y) in a.iter_mut().zip(&wv) {
                            *x = $fma(gv, y, *x);
                        }
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    let b = out.base.add(r * out.stride);
                    if out.voff.is_null() {
                        for (v, &x) in a.iter().enumerate() {
                            $store(b.add(col + $lanes * v), x);
                        }
                    } else {
                        let voff = out.voff.add(col / $lanes);
                        for (v, &x) in a.iter().enumerate() {
                            let p = b.add(*voff.add(v));
                            $store(p, $add($load(p), x));
                        }
                    }
                }
            }
        };
    }

    tile!(
        tile512,
        "avx512f",
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_storeu_ps
    );
    tile!(
        tile256,
        "avx2,fma",
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_storeu_ps
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every product this CPU can run (AVX-512, AVX2 + FMA, the portable loop) against the sum
    /// in f64, on every block of rows and tails of vectors.
    #[test]
    fn products_match_the_sum() {
        let mut rnd = crate::kernels::reference::uniform(7u64);
        for (m, c, taps) in [(5, 1, 9), (7, 16, 1), (9, 32, 9), (3, 3, 25)] {
            let w: Vec<f32> = (0..m * c * taps).map(|_| rnd()).collect();
            let rows = Rows::new(&w, m, c, taps);
            for copies in 1..=13 {
                let chans: Vec<u32> = (0..m as u32).filter(|k| k % 3 != 1).collect();
                let g: Vec<f32> = (0..chans.len() * copies).map(|_| rnd()).collect();
                let mut want = vec![0f64; copies * rows.row];
                for s in 0..copies {
                    for (k, &co) in chans.iter().enumerate() {
                        for j in 0..rows.row {
                            want[s * rows.row + j] += g[k * copies + s] as f64
                                * rows.data[co as usize * rows.row + j] as f64;
                        }
                    }
                }
                let mut runs: Vec<(&str, Vec<f32>)> = Vec::new();
                let mut b = vec![f32::NAN; copies * rows.row];
                product(&chans, &g, copies, &rows, &mut b);
                runs.push(("dispatched", b.clone()));
                #[cfg(target_arch = "x86_64")]
                {
                    if std::arch::is_x86_feature_detected!("avx512f") {
                        b.fill(f32::NAN);
                        // SAFETY: the CPU has AVX-512F; the sizes are those `product` checks.
                        unsafe {
                            x86::product512(&chans, &g, copies, &rows, Out::store(&mut b, rows.row))
                        };
                        runs.push(("AVX-512", b.clone()));
                    }
                    if available() {
                        b.fill(f32::NAN);
                        // SAFETY: the CPU has AVX2 and FMA; sizes as above.
                        unsafe {
                            x86::product256(&chans, &g, copies, &rows, Out::store(&mut b, rows.row))
                        };
                        runs.push(("AVX2", b.clone()));
                    }
                }
                for (name, got) in runs {
                    for (j, (&x, &y)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (x as f64 - y).abs() <= 1e-5 * (1.0 + y.abs()),
                            "{name}, {copies} copies, element {j}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }
}
