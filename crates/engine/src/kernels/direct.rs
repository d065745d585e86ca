//! Direct convolution with a register-blocked AVX-512 microkernel: no patch matrix,
//! no GEMM packing, and the epilogue (bias, residual, ReLU) applied in registers.
//!
//! What it computes: for one sample and group, `y[m, oy, ox] = act(b[m] + r[m, oy, ox] +
//! Σ_{c,i,j} W[m,c,i,j] · xp[c, oy + i·dh, ox + j·dw])`, where `xp` is the input copied once
//! into a zero-padded plane of width `Wp = pl + w + pr`. On that plane every output row starts
//! `Wp` elements after the previous one, so the output is computed "wide": position `q = oy·Wp +
//! ox` for all `ox < Wp`, and tap `(i, j)` of every position reads `xp[c, q + i·dh·Wp + j·dw]`
//! — one flat, contiguous run per tap over any number of output rows. Other strides become
//! stride 1 on phase planes (see [`Plan`]). The `Wp − ow` wide
//! positions per row that are not outputs are computed and never stored (masked stores), 6 % of
//! the work for a 32-wide CIFAR plane, 20 % at 8 wide.
//!
//! Why it is fast: the microkernel keeps an `MB × PV` block of accumulators (`MB` output
//! channels × `PV` vectors of 16 consecutive wide positions) in registers for the whole
//! reduction over channels and taps; each step loads `PV` input vectors and broadcasts `MB`
//! weights for `MB·PV` fused multiply-adds, and nothing is written until the block is done. The
//! input tile of a block of positions stays in L1 across the output-channel blocks, and the
//! weights are packed once per call so that each step's `MB` weights are adjacent. im2col +
//! GEMM instead writes and re-reads a patch matrix 9× (3×3) the input's size and repacks it
//! inside the GEMM; for the 16–64 channel layers of CIFAR networks that traffic cost about as
//! much as the products.
//!
//! Where the CPU lacks AVX-512, [`available`] is false and the convolution takes the GEMM
//! routes (whose `gemm` crate dispatches to AVX2 or NEON itself).

use rayon::prelude::*;

use super::im2col::Geometry;

/// Output channels per register block.
const MB: usize = 8;
/// Vectors of 16 wide positions per register block: `MB·PV` = 24 accumulators of the 32
/// AVX-512 registers, leaving room for the `PV` input vectors and a broadcast weight. (6 × 4
/// and 4 × 6 measured within noise of 8 × 3 on ResNet-20; 4 × 7, which needs 36 registers,
/// 30 % slower.)
const PV: usize = 3;
/// Lanes per vector.
const L: usize = 16;

/// Whether this CPU runs the direct kernel.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| std::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether it is the kernel to use (it handles any geometry): the CPU has it, the weights are
/// small enough to stay in cache while every sample streams past them, and the plane is not
/// tiny (at 8×8 a fifth of the wide positions are dropped and a plane is only five vectors:
/// im2col + GEMM measured 70–76 GMAC/s against the direct kernel's 60–64 for 64 channels).
pub(crate) fn applies(g: &Geometry, mg: usize) -> bool {
    available()
        && !g.is_identity()
        && mg * g.rows() <= MAX_WEIGHTS
        && g.cols() > super::rowshift::SMALL_PLANE
}

/// Largest `M·C·kh·kw` (per group) the direct kernel is chosen for: 256 → 256 channels 3×3
/// (2.25 MiB; larger weights are untested). Measured per layer on 8-sample chunks, 2 threads,
/// in GMAC/s, direct against the column-shift GEMM that would otherwise run: 77 vs 62 at 16
/// channels on 32×32, 117 vs 104 at 128 on 16×16, 114 vs 89 at 64 on 56×56, 98 vs 86 at 256
/// on 14×14 (sweeping weights block by block once they outgrow the input, see `block_major`).
pub(crate) const MAX_WEIGHTS: usize = 256 * 256 * 9;

/// The weights `w[mg × c × taps]` (`taps = kh·kw`) packed as `[⌈mg/MB⌉][c][taps][MB]`,
/// zero-padded to a multiple of `MB` output channels, so that one microkernel step reads `MB`
/// adjacent values.
pub(crate) fn pack_weights(mg: usize, c: usize, taps: usize, w: &[f32]) -> Vec<f32> {
    let blocks = mg.div_ceil(MB);
    let mut out = vec![0.0f32; blocks * c * taps * MB];
    for m in 0..mg {
        let (b, mm) = (m / MB, m % MB);
        for ci in 0..c {
            for t in 0..taps {
                out[((b * c + ci) * taps + t) * MB + mm] = w[(m * c + ci) * taps + t];
            }
        }
    }
    out
}

/// A raw output pointer shared by the threads of one call; each writes disjoint elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not its field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// What a convolution's geometry fixes for every sample: the phase-plane layout of the padded
/// input, the taps' offsets in it, where each vector's lanes are stored, and the sweep order.
/// Made once per call and run on each sample.
pub(crate) struct Plan {
    g: Geometry,
    mg: usize,
    /// Padded width, phase-plane width, one phase plane, one channel's planes, wide positions.
    wp: usize,
    wq: usize,
    phase: usize,
    plane: usize,
    wide: usize,
    /// The padded input buffer's length: the channels' planes plus zero slack.
    len: usize,
    offsets: Vec<usize>,
    segs: Segments,
    blocks: usize,
    tiles: usize,
    block_major: bool,
}

impl Plan {
    /// The plan for `mg` output channels over geometry `g`.
    pub(crate) fn new(g: &Geometry, mg: usize) -> Plan {
        let (sh, sw) = (g.sh, g.sw);
        let (hp, wp) = (g.pt + g.h + g.pb, g.pl + g.w + g.pr);
        // Phase planes: a stride-(sh, sw) convolution reads padded rows `oy·sh + i·dh`, which
        // all lie in the phase plane of rows ≡ i·dh (mod sh) (likewise for columns), at row
        // `oy + ⌊i·dh / sh⌋` of that plane: so each tap is a stride-1 tap of one phase plane,
        // and the stride-1 kernel below runs unchanged. At stride 1 there is one phase, the
        // padded plane itself.
        let (hq, wq) = (hp.div_ceil(sh), wp.div_ceil(sw));
        let phase = hq * wq;
        let plane = sh * sw * phase;
        let wide = g.oh * wq;
        let offsets: Vec<usize> = (0..g.kh)
            .flat_map(|i| {
                (0..g.kw).map(move |j| {
                    let (ri, cj) = (i * g.dh, j * g.dw);
                    ((ri % sh) * sw + cj % sw) * phase + (ri / sh) * wq + cj / sw
                })
            })
            .collect();
        // Reads: a block reads its channel plane at `q + off` with `q < wide + L` (its last
        // vector may pass the final wide position) and `off ≤ (sh·sw − 1)·Hq·Wq + ⌊(ekh −
        // 1)/sh⌋·Wq + ⌊(ekw − 1)/sw⌋`; since `oh + ⌊(ekh − 1)/sh⌋ ≤ Hq`, that is below `plane +
        // L + ekw`. Zero slack past the last channel keeps those reads inside the buffer
        // (asserted here); the results at positions that are not outputs are never stored.
        let ekw = (g.kw - 1) * g.dw + 1;
        let len = g.c * plane + PV * L + ekw + wq;
        let last_read = g.c.saturating_sub(1) * plane
            + offsets.iter().max().copied().unwrap_or(0)
            + wide.div_ceil(L) * L;
        assert!(
            last_read <= len,
            "direct convolution would read past its input"
        );
        let blocks = mg.div_ceil(MB);
        Plan {
            g: *g,
            mg,
            wp,
            wq,
            phase,
            plane,
            wide,
            len,
            offsets,
            segs: Segments::new(wide, wq, g.ow),
            blocks,
            tiles: wide.div_ceil(PV * L),
            // Which operand stays in cache: with more weights than input, one block of output
            // channels (its `c·kh·kw·MB` weights) sweeps every position before the next block
            // starts; otherwise one tile of positions (its input rows) meets every block.
            block_major: blocks * g.c * g.kh * g.kw * MB > g.c * plane,
        }
    }

    /// `y[mg × oh·ow] = act(conv(x[c × h × w]) + bias + residual)` for one sample and group:
    /// `bias` has `mg` values, `residual` the output's `mg·oh·ow`, and `act` is a ReLU when
    /// `relu`. Every element of `y` is written exactly once, so it may start uninitialised
    /// (the epilogue then costs no extra pass over memory). `packed` comes from
    /// [`pack_weights`]; `scratch` holds the padded input; `parallel` splits the work over
    /// rayon's threads (for batches smaller than the thread count).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        &self,
        packed: &[f32],
        x: &[f32],
        y: &mut [std::mem::MaybeUninit<f32>],
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        relu: bool,
        scratch: &mut Vec<f32>,
        parallel: bool,
    ) {
        assert!(available());
        let (g, mg) = (&self.g, self.mg);
        let (c, taps) = (g.c, g.kh * g.kw);
        assert_eq!(x.len(), c * g.h * g.w);
        assert_eq!(y.len(), mg * g.oh * g.ow);
        assert_eq!(packed.len(), self.blocks * c * taps * MB);
        assert!(bias.is_none_or(|b| b.len() == mg));
        assert!(residual.is_none_or(|r| r.len() == y.len()));
        let (sh, sw, wp, wq, phase, plane) = (g.sh, g.sw, self.wp, self.wq, self.phase, self.plane);
        scratch.resize(self.len, 0.0);
        if sh == 1 && sw == 1 {
            // Only the border is zeroed, the interior is copied row by row.
            let (top, bottom) = (g.pt * wp, (g.pt + g.h) * wp);
            for ci in 0..c {
                let src = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
                let dst = &mut scratch[ci * plane..(ci + 1) * plane];
                dst[..top + g.pl].fill(0.0);
                for (r, row) in src.chunks_exact(g.w).enumerate() {
                    let at = (g.pt + r) * wp + g.pl;
                    dst[at..at + g.w].copy_from_slice(row);
                    let next = (at + wp).min(plane);
                    dst[at + g.w..next].fill(0.0);
                }
                dst[bottom..].fill(0.0);
            }
        } else {
            scratch[..c * plane].fill(0.0);
            for ci in 0..c {
                let src = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
                let dst = &mut scratch[ci * plane..(ci + 1) * plane];
                for (iy, row) in src.chunks_exact(g.w).enumerate() {
                    let (a, r) = ((g.pt + iy) % sh, (g.pt + iy) / sh);
                    for (ix, &v) in row.iter().enumerate() {
                        let (b, col) = ((g.pl + ix) % sw, (g.pl + ix) / sw);
                        dst[(a * sw + b) * phase + r * wq + col] = v;
                    }
                }
            }
        }
        scratch[c * plane..].fill(0.0);
        let xp: &[f32] = scratch;
        let (blocks, tiles, wide) = (self.blocks, self.tiles, self.wide);
        let (block_major, offsets, segs) = (self.block_major, &self.offsets, &self.segs);
        let out = OutPtr(y.as_mut_ptr() as *mut f32);
        let run = |t: usize| {
            let (qi, b) = if block_major {
                (t % tiles, t / tiles)
            } else {
                (t / blocks, t % blocks)
            };
            let q0 = qi * PV * L;
            let nv = (wide - q0).div_ceil(L).min(PV);
            let mut bv = [0.0f32; MB];
            let m0 = b * MB;
            let mb = MB.min(mg - m0);
            if let Some(bias) = bias {
                bv[..mb].copy_from_slice(&bias[m0..m0 + mb]);
            }
            let ohw = g.oh * g.ow;
            let epi = Epilogue {
                out: out.get().wrapping_add(m0 * ohw),
                residual: residual.map_or(std::ptr::null(), |r| r[m0 * ohw..].as_ptr()),
                ohw,
                channels: mb,
                bias: bv,
                relu,
                segs,
                first: q0 / L,
            };
            let w = &packed[b * c * taps * MB..(b + 1) * c * taps * MB];
            // SAFETY: the reads stay inside `xp` (slack above) and `w`; the masked stores write
            // only output channels `m0..m0 + mb` at the outputs of positions `q0..q0 + nv·L`,
            // which no other block writes, and the residual is read at the same elements.
            unsafe {
                x86::block(
                    nv,
                    xp.as_ptr().add(q0),
                    c,
                    plane,
                    offsets,
                    w.as_ptr(),
                    &epi,
                )
            };
        };
        let n = tiles * blocks;
        if parallel && n > 1 {
            (0..n).into_par_iter().for_each(run);
        } else {
            (0..n).for_each(run);
        }
    }
}

/// Where the lanes of each vector of wide positions go: up to one run of lanes per output row
/// the vector covers, each a lane mask and the output index of lane 0 (`delta`, so lane `l` of
/// the run lands at `delta + l`; it is negative for a run that starts past lane 0 of the first
/// row). Depends only on the geometry, so it is worked out once per call.
struct Segments {
    /// `(mask, delta)` runs, vector `v`'s at `runs[start[v]..start[v + 1]]`.
    runs: Vec<(u16, isize)>,
    start: Vec<usize>,
}

impl Segments {
    fn new(wide: usize, wp: usize, ow: usize) -> Self {
        let nv = wide.div_ceil(L);
        let mut s = Segments {
            runs: Vec::with_capacity(2 * nv),
            start: Vec::with_capacity(nv + 1),
        };
        for v in 0..nv {
            s.start.push(s.runs.len());
            let q = v * L;
            let mut l = 0;
            while l < L && q + l < wide {
                let (r, col) = ((q + l) / wp, (q + l) % wp);
                if col >= ow {
                    l += wp - col;
                    continue;
                }
                let len = (ow - col).min(L - l).min(wide - q - l);
                let mask = (((1u32 << len) - 1) << l) as u16;
                s.runs.push((mask, (r * ow + col) as isize - l as isize));
                l += len;
            }
        }
        s.start.push(s.runs.len());
        s
    }
}

/// What a block does with its sums: `out[m·ohw + i] = act(sum + bias[m] + residual[m·ohw + i])`
/// for the block's `channels` output channels, at the indices its [`Segments`] give.
struct Epilogue<'a> {
    out: *mut f32,
    /// Null when there is no residual.
    residual: *const f32,
    ohw: usize,
    channels: usize,
    bias: [f32; MB],
    relu: bool,
    segs: &'a Segments,
    /// The index of the block's first vector in [`Segments`].
    first: usize,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Epilogue, L, MB, PV};
    use std::arch::x86_64::*;

    /// Dispatches to the microkernel instantiated for `nv` vectors (the last block of a plane
    /// may have fewer than `PV`).
    pub(super) unsafe fn block(
        nv: usize,
        x: *const f32,
        c: usize,
        plane: usize,
        offsets: &[usize],
        w: *const f32,
        epi: &Epilogue,
    ) {
        match nv {
            1 => kernel::<1>(x, c, plane, offsets, w, epi),
            2 => kernel::<2>(x, c, plane, offsets, w, epi),
            _ => kernel::<PV>(x, c, plane, offsets, w, epi),
        }
    }

    /// `acc[m][p] = Σ_{c, tap} x[c·plane + offset(tap) + p·L ..] · w[(c·taps + tap)·MB + m]`,
    /// then the epilogue. `NV` is a constant per instantiation so that the accumulators live
    /// in registers (indexed loops, not iterators: iterating by reference made LLVM keep the
    /// accumulators in memory, measured at half speed).
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const NV: usize>(
        x: *const f32,
        c: usize,
        plane: usize,
        offsets: &[usize],
        w: *const f32,
        epi: &Epilogue,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NV]; MB];
        let mut wp = w;
        for ci in 0..c {
            let xc = x.add(ci * plane);
            for &off in offsets {
                let xt = xc.add(off);
                let mut v = [_mm512_setzero_ps(); NV];
                for p in 0..NV {
                    v[p] = _mm512_loadu_ps(xt.add(p * L));
                }
                for m in 0..MB {
                    let wv = _mm512_set1_ps(*wp.add(m));
                    for p in 0..NV {
                        acc[m][p] = _mm512_fmadd_ps(v[p], wv, acc[m][p]);
                    }
                }
                wp = wp.add(MB);
            }
        }
        // The sums go through a stack tile: read back with run-time indices below, the
        // accumulators themselves would have to live in memory for the whole reduction.
        let mut tile = std::mem::MaybeUninit::<[f32; MB * PV * L]>::uninit();
        let t = tile.as_mut_ptr() as *mut f32;
        for m in 0..MB {
            for p in 0..NV {
                _mm512_storeu_ps(t.add((m * PV + p) * L), acc[m][p]);
            }
        }
        epilogue::<NV>(t, epi);
    }

    /// Applies the [`Epilogue`] to the block's sums `t[(m·PV + p)·L + lane]`.
    #[target_feature(enable = "avx512f")]
    unsafe fn epilogue<const NV: usize>(t: *const f32, epi: &Epilogue) {
        let zero = _mm512_setzero_ps();
        let segs = &epi.segs;
        for m in 0..epi.channels {
            let bias = _mm512_set1_ps(epi.bias[m]);
            let out = epi.out.wrapping_add(m * epi.ohw);
            let res = epi.residual.wrapping_add(m * epi.ohw);
            for p in 0..NV {
                let v = _mm512_add_ps(_mm512_loadu_ps(t.add((m * PV + p) * L)), bias);
                let v0 = epi.first + p;
                for &(mask, delta) in &segs.runs[segs.start[v0]..segs.start[v0 + 1]] {
                    let mut t = v;
                    if !epi.residual.is_null() {
                        let r = _mm512_maskz_loadu_ps(mask, res.wrapping_offset(delta));
                        t = _mm512_add_ps(t, r);
                    }
                    if epi.relu {
                        t = _mm512_max_ps(t, zero);
                    }
                    _mm512_mask_storeu_ps(out.wrapping_offset(delta), mask, t);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use super::Epilogue;
    pub(super) unsafe fn block(
        _: usize,
        _: *const f32,
        _: usize,
        _: usize,
        _: &[usize],
        _: *const f32,
        _: &Epilogue,
    ) {
        unreachable!("the direct kernel is only chosen where `available()`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The direct kernel against the definition of a convolution with its epilogue (f64
        /// sums), on shapes large enough to reach every block size: full and partial channel
        /// blocks, 1 to `PV` vectors per block, planes from 1 to 40 wide, kernels up to 5×5
        /// with strides, dilation and uneven pads, and a parallel split.
        #[test]
        fn direct_matches_the_definition(
            c in 1usize..20, mg in 1usize..20, h in 1usize..24, w in 1usize..40,
            kh in 1usize..6, kw in 1usize..6, dh in 1usize..3, dw in 1usize..3,
            sh in 1usize..4, sw in 1usize..4,
            pt in 0usize..4, pl in 0usize..4, pb in 0usize..4, pr in 0usize..4,
            epilogue in 0usize..8, parallel: bool, seed in 0u64..1000,
        ) {
            if !available() {
                return Ok(());
            }
            let (ekh, ekw) = ((kh - 1) * dh + 1, (kw - 1) * dw + 1);
            if pt + h + pb < ekh || pl + w + pr < ekw {
                return Ok(());
            }
            let (oh, ow) = ((pt + h + pb - ekh) / sh + 1, (pl + w + pr - ekw) / sw + 1);
            let g = Geometry { c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, oh, ow };
            let mut st = seed;
            let mut rnd = || {
                st = st.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((st >> 40) as f32) / 16777216.0 - 0.5
            };
            let x: Vec<f32> = (0..c * h * w).map(|_| rnd()).collect();
            let wt: Vec<f32> = (0..mg * c * kh * kw).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..mg).map(|_| rnd()).collect();
            let r: Vec<f32> = (0..mg * oh * ow).map(|_| rnd()).collect();
            let (use_b, use_r, relu) = (epilogue & 1 == 1, epilogue & 2 == 2, epilogue & 4 == 4);
            let mut want = vec![0f64; mg * oh * ow];
            for m in 0..mg {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0f64;
                        for ci in 0..c {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let iy = (oy * sh + i * dh) as isize - pt as isize;
                                    let ix = (ox * sw + j * dw) as isize - pl as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let xv = x[(ci * h + iy as usize) * w + ix as usize] as f64;
                                    acc += xv * wt[((m * c + ci) * kh + i) * kw + j] as f64;
                                }
                            }
                        }
                        let at = (m * oh + oy) * ow + ox;
                        if use_b { acc += b[m] as f64; }
                        if use_r { acc += r[at] as f64; }
                        want[at] = if relu { acc.max(0.0) } else { acc };
                    }
                }
            }
            let packed = pack_weights(mg, c, kh * kw, &wt);
            // NaN until written: an output the kernel skipped fails the comparison below.
            let mut y = vec![std::mem::MaybeUninit::new(f32::NAN); mg * oh * ow];
            let mut scratch = vec![f32::NAN; 7];
            Plan::new(&g, mg).run(
                &packed, &x, &mut y, use_b.then_some(&b[..]), use_r.then_some(&r[..]),
                relu, &mut scratch, parallel,
            );
            // SAFETY: every element was initialised (to NaN) before the call.
            let got: Vec<f32> = y.iter().map(|v| unsafe { v.assume_init() }).collect();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                proptest::prop_assert!(
                    (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()) * (c * kh * kw) as f64,
                    "output {i}: {g} vs {w}"
                );
            }
        }
    }
}
