//! Direct convolution with the output channels in the vector lanes (AVX2 + FMA): the
//! layout ONNX Runtime's MLAS uses for its NCHWc convolutions, here on plain NCHW tensors.
//!
//! What it computes: for one group, `y[m, oy, ox] = act(b[m] + r[m, oy, ox] + Σ_{c,i,j}
//! W[m,c,i,j] · x[c, oy·sh + i·dh − pt, ox·sw + j·dw − pl])`, reading zero outside the image.
//! The input is first copied into zero-padded planes (one pass over it), so that every read
//! lands inside the buffer and nothing is masked.
//!
//! Why it is fast: a register tile is `NB` blocks of 8 output channels × `NP` output
//! positions: 2 × 6, or 1 × 8 for layers of 8 channels or fewer. Each step of the reduction
//! (one input channel, one tap) loads `NB` vectors of packed weights and broadcasts one input
//! value per position straight from memory (`vbroadcastss`, which takes any address), for
//! `NB·NP` fused multiply-adds (12 on the 2 × 6 tile). A position's address is its own base
//! pointer plus the tap's offset, so a tile's positions may sit anywhere: tiles run over the
//! flat output plane, across rows and at any stride, and only the plane's last tile has
//! spare positions. An AVX2 port of `direct.rs`, which puts positions in the lanes instead,
//! stayed near the GEMM's speed (its taps shifted by one column cross cache lines, and on
//! 32-wide rows two vectors in four needed masked loads) and was removed. Here the sums of a
//! run of positions gather in a small buffer, `[positions][channels]`, and are transposed 8 × 8 in
//! registers at the end, so that each channel's 8 positions take the residual and ReLU and
//! are stored as one vector.
//!
//! Tile shapes, from `kernel_speeds` (GMAC/s, 2 threads, a 2-core AMD EPYC, Zen 3): 1 × 8
//! (one weight vector, eight broadcasts a step) 36–45; 4 × 3 with LLVM's code 19–31 (it
//! holds the four weight vectors in registers and spills accumulators), 25–41 written in
//! assembly (twelve weight loads and three broadcasts a step saturate the load ports); 2 ×
//! 6, per output row, 27–58, lowest on 8×8 and 7×7 planes, where rows of 6-position tiles
//! wasted a third of the work: hence the flat plane.

use super::im2col::Geometry;
use super::OutPtr;

/// Output channels per block: the lanes of an AVX2 vector.
pub(crate) const L: usize = 8;

/// Input channels per pass over a run of positions: the tile's sums go back to the buffer
/// between passes, so that one pass's weights (`CB·taps·NB·L` values, 9 KiB for 3×3 at 2
/// blocks) and input rows stay in L1 across the run's tiles.
const CB: usize = 16;

/// Output positions per task: a multiple of every tile's positions and of the transposes' 8.
const RUN: usize = 96;

/// Whether this CPU runs the kernel (AVX2 and FMA).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OK.get_or_init(|| {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether it is the kernel to use for geometry `g` (on a CPU where it comes first): every
/// layer but the 1×1 stride-1 unpadded ones (a plain GEMM on the input itself).
/// `kernel_speeds` (weights packed once, 8 samples, 2 threads, Zen 3), against the better
/// GEMM route, two runs: 16 channels 32×32 1.26, 1.30; 64 channels 32×32 1.17, 1.18; 32
/// channels 16×16 1.37, 1.25; 64 channels 8×8 1.21, 1.23, 16×16 1.17, 1.15, 56×56 1.16, 1.17;
/// 128 channels 8×8 1.11, 1.12, 16×16 1.10, 1.09, 28×28 1.08, 1.10; 256 channels 8×8 0.99,
/// 1.03, 14×14 1.11, 1.13; 512 channels 7×7 1.05, 1.22. Grouped layers of `mg` < 8 channels
/// per group are left to GEMM too (see [`fills_lanes`]).
pub(crate) fn applies(g: &Geometry, mg: usize, groups: usize) -> bool {
    available() && !g.is_identity() && fills_lanes(mg, groups)
}

/// Whether `groups` groups of `mg` output channels fill the lanes well enough: one group, or
/// at least `L` channels per group (a depthwise layer would use one lane in 8; unmeasured).
pub(crate) fn fills_lanes(mg: usize, groups: usize) -> bool {
    groups == 1 || mg >= L
}

/// The register tile for `mg` output channels: `(NB, NP)`, `NB` blocks of `L` channels ×
/// `NP` positions.
pub(super) fn tile_shape(mg: usize) -> (usize, usize) {
    if mg > L {
        (2, 6)
    } else {
        (1, 8)
    }
}

/// The weights `w[mg × c × taps]` packed in the order the steps read them,
/// `[⌈mg/(NB·L)⌉][c][taps][NB·L]` for the tile shape of `mg`, zero-padded to a whole group of
/// `NB` blocks.
pub(crate) fn pack_weights(mg: usize, c: usize, taps: usize, w: &[f32]) -> Vec<f32> {
    super::pack_blocks(w, (mg, c, taps), tile_shape(mg).0 * L, 1)
}

/// What a geometry fixes for every sample: the tile shape, the padded planes' shape, where
/// each output position and each tap read.
pub(crate) struct Plan {
    g: Geometry,
    mg: usize,
    nb: usize,
    np: usize,
    /// Groups of `nb` blocks.
    groups: usize,
    /// Padded plane width (row pitch) and one plane's length.
    wp: usize,
    plane: usize,
    /// `base[r]`: where output position `r = oy·ow + ox` reads its tap (0, 0) in a padded
    /// plane, `(oy·sh)·wp + ox·sw`, for `r` up to the plane rounded up to whole tiles (spare
    /// positions repeat the last one's).
    base: Vec<usize>,
    /// Tap `t = i·kw + j` reads `(i·dh)·wp + j·dw` past the position's base.
    offsets: Vec<usize>,
}

impl Plan {
    /// The plan for `mg` output channels over geometry `g` (one the CPU runs: [`available`]).
    pub(crate) fn new(g: &Geometry, mg: usize) -> Plan {
        let (nb, np) = tile_shape(mg);
        let ohw = g.oh * g.ow;
        let hp = g.pt + g.h + g.pb;
        let wp = g.pl + g.w + g.pr;
        // Every read lies inside the padded plane: (oy·sh + i·dh, ox·sw + j·dw) with oy < oh,
        // ox < ow is inside it by the definition of oh and ow.
        let base = (0..ohw.next_multiple_of(np))
            .map(|r| {
                let r = r.min(ohw - 1);
                (r / g.ow) * g.sh * wp + (r % g.ow) * g.sw
            })
            .collect();
        let offsets = (0..g.kh * g.kw)
            .map(|t| (t / g.kw) * g.dh * wp + (t % g.kw) * g.dw)
            .collect();
        Plan {
            g: *g,
            mg,
            nb,
            np,
            groups: mg.div_ceil(nb * L),
            wp,
            plane: hp * wp,
            base,
            offsets,
        }
    }

    /// `y[mg × oh·ow] = act(conv(x[c × h × w]) + bias + residual)` for one sample and group:
    /// `bias` has `mg` values, `residual` the output's shape. Every element of `y` is written
    /// exactly once, so it may start uninitialised. `packed` comes from [`pack_weights`];
    /// `scratch` receives the padded input; `parallel` splits the work over the threads (`crate::team`).
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
        let (g, mg, np) = (&self.g, self.mg, self.np);
        let (c, taps, ohw) = (g.c, g.kh * g.kw, g.oh * g.ow);
        let gl = self.nb * L;
        assert_eq!(x.len(), c * g.h * g.w);
        assert_eq!(y.len(), mg * ohw);
        assert_eq!(packed.len(), self.groups * c * taps * gl);
        assert!(bias.is_none_or(|b| b.len() == mg));
        assert!(residual.is_none_or(|r| r.len() == y.len()));
        // The padded planes, written in one sequential pass (with vector stores: the two
        // small fills and one copy per row of `memset` and `memcpy` calls cost 5 % of
        // ResNet-20's time). `L` floats of slack take the last zero run's overrun.
        scratch.resize(c * self.plane + L, 0.0);
        // SAFETY: `x` holds `c` planes of `h × w` and `scratch` `c` padded planes + `L`.
        unsafe { avx2::pad(x, scratch, g, self.wp) };
        let xp: &[f32] = scratch;
        let out = OutPtr(y.as_mut_ptr() as *mut f32);
        // One task: a run of up to `RUN` output positions for one group of blocks. Its sums
        // build up in `buf[positions][gl]`, one pass of `CB` input channels at a time, and are
        // then transposed into the output with the epilogue.
        let runs = ohw.div_ceil(RUN);
        let task = |buf: &mut Vec<f32>, task: usize| {
            let (b, r0) = (task / runs, task % runs * RUN);
            let n = RUN.min(ohw - r0);
            let tiles = n.div_ceil(np);
            let m0 = b * gl;
            let channels = gl.min(mg - m0);
            buf.resize(RUN * gl, 0.0);
            // The first pass starts from the bias (zero-padded to the group), the others from
            // the buffer.
            let mut bv = [0.0f32; 2 * L];
            if let Some(bias) = bias {
                bv[..channels].copy_from_slice(&bias[m0..m0 + channels]);
            }
            let w = &packed[b * c * taps * gl..(b + 1) * c * taps * gl];
            for c0 in (0..c).step_by(CB) {
                let cn = CB.min(c - c0);
                for t in 0..tiles {
                    let r = r0 + t * np;
                    let sums = buf[t * np * gl..].as_mut_ptr();
                    let from = if c0 == 0 {
                        (bv.as_ptr(), 0)
                    } else {
                        (sums as *const f32, gl)
                    };
                    // SAFETY: every position's reads stay inside the padded planes (`base`
                    // and `offsets` index inside a plane, and the pass's `cn` planes follow
                    // `c0`), the weights inside `w`, the sums inside `buf` (`tiles·np`
                    // positions).
                    unsafe {
                        avx2::tile(
                            self.nb,
                            xp[c0 * self.plane..].as_ptr(),
                            &self.base[r..r + np],
                            (cn, self.plane),
                            &self.offsets,
                            w[c0 * taps * gl..].as_ptr(),
                            from,
                            sums,
                        )
                    };
                }
            }
            let at = m0 * ohw + r0;
            let epi = Epilogue {
                out: out.get().wrapping_add(at),
                residual: residual.map_or(std::ptr::null(), |r| r[at..].as_ptr()),
                ohw,
                channels,
                positions: n,
                relu,
            };
            // SAFETY: the stores write output channels `m0..m0 + channels` at positions
            // `r0..r0 + n`, which no other task writes, and the residual is read at the same
            // elements; the buffer holds `RUN`, a multiple of 8, positions.
            unsafe { avx2::epilogue(buf.as_ptr(), gl, &epi) };
        };
        let tasks = self.groups * runs;
        if parallel && tasks > 1 {
            crate::team::for_each_init(tasks, Vec::new, |buf, t| task(buf, t));
        } else {
            let mut buf = Vec::new();
            (0..tasks).for_each(|t| task(&mut buf, t));
        }
    }
}

/// Where a run's sums go: `out[m·ohw + p] = act(sum + residual[m·ohw + p])` for the group's
/// first `channels` channels and the run's `positions` positions.
pub(super) struct Epilogue {
    pub(super) out: *mut f32,
    pub(super) residual: *const f32,
    pub(super) ohw: usize,
    pub(super) channels: usize,
    pub(super) positions: usize,
    pub(super) relu: bool,
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::{Epilogue, Geometry, L};
    use std::arch::x86_64::*;

    /// Dispatches to the tile shape for `nb` blocks.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::kernels) unsafe fn tile(
        nb: usize,
        x: *const f32,
        base: &[usize],
        dims: (usize, usize),
        offsets: &[usize],
        w: *const f32,
        from: (*const f32, usize),
        sums: *mut f32,
    ) {
        match nb {
            2 => kernel::<2, 6>(x, base, dims, offsets, w, from, sums),
            _ => kernel::<1, 8>(x, base, dims, offsets, w, from, sums),
        }
    }

    /// One tile: `NB·NP` accumulators (`NB` blocks of 8 channels at `NP` positions), loaded
    /// from `from = (start, position stride)` (the buffer, or the bias at stride 0), summed
    /// over `c` channels (plane stride `plane`) and every tap, and stored to `sums[NP][NB·L]`.
    /// Position `p` reads `x[base[p] + offset]`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel<const NB: usize, const NP: usize>(
        x: *const f32,
        base: &[usize],
        (c, plane): (usize, usize),
        offsets: &[usize],
        w: *const f32,
        (start, stride): (*const f32, usize),
        sums: *mut f32,
    ) {
        let mut acc = [[_mm256_setzero_ps(); NB]; NP];
        let mut xs = [x; NP];
        for (p, (a, xp)) in acc.iter_mut().zip(&mut xs).enumerate() {
            *xp = x.add(base[p]);
            for (k, a) in a.iter_mut().enumerate() {
                *a = _mm256_loadu_ps(start.add(p * stride + k * L));
            }
        }
        let mut wp = w;
        for _ in 0..c {
            for &off in offsets {
                let mut wv = [_mm256_setzero_ps(); NB];
                for (k, v) in wv.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(wp.add(k * L));
                }
                for (a, xp) in acc.iter_mut().zip(&xs) {
                    let xv = _mm256_broadcast_ss(&*xp.add(off));
                    for (a, v) in a.iter_mut().zip(&wv) {
                        *a = _mm256_fmadd_ps(xv, *v, *a);
                    }
                }
                wp = wp.add(NB * L);
            }
            for xp in xs.iter_mut() {
                // (Wrapping: after the last channel it points past the planes, unread.)
                *xp = xp.wrapping_add(plane);
            }
        }
        for (p, a) in acc.iter().enumerate() {
            for (k, a) in a.iter().enumerate() {
                _mm256_storeu_ps(sums.add((p * NB + k) * L), *a);
            }
        }
    }

    /// `dst[c][hp][wp]` = `src[c][h][w]` with `pt`, `pl`, `pb`, `pr` zeros around it
    /// (`wp = pl + w + pr`), written in address order: zero runs store whole vectors past
    /// their end (into what is written next, or into `dst`'s `L` floats of slack); a row's
    /// last `w mod L` floats are copied one by one (`vmaskmovps` stores, even with an empty
    /// mask, took half of this function's time on Zen 3).
    #[target_feature(enable = "avx2,fma")]
    pub(in crate::kernels) unsafe fn pad(src: &[f32], dst: &mut [f32], g: &Geometry, wp: usize) {
        let zero = _mm256_setzero_ps();
        let mut o = dst.as_mut_ptr();
        let zeros = |o: *mut f32, n: usize| {
            for i in (0..n).step_by(L) {
                _mm256_storeu_ps(o.add(i), zero);
            }
            o.add(n)
        };
        for plane in src.chunks_exact(g.h * g.w) {
            o = zeros(o, g.pt * wp + g.pl);
            for (iy, row) in plane.chunks_exact(g.w).enumerate() {
                let full = g.w - g.w % L;
                for i in (0..full).step_by(L) {
                    _mm256_storeu_ps(o.add(i), _mm256_loadu_ps(row.as_ptr().add(i)));
                }
                for (i, &v) in row.iter().enumerate().skip(full) {
                    *o.add(i) = v;
                }
                let gap = if iy + 1 < g.h {
                    g.pr + g.pl
                } else {
                    g.pr + g.pb * wp
                };
                o = zeros(o.add(g.w), gap);
            }
        }
        debug_assert!(o as usize <= dst.as_ptr() as usize + 4 * (dst.len() - L));
    }

    /// A run's sums `buf[positions][gl]` into the output: per block of 8 channels and 8
    /// positions, an 8×8 transpose in registers, so that each channel's 8 positions get the
    /// residual and ReLU and are stored as one vector (a partial block lane by lane).
    pub(in crate::kernels) unsafe fn epilogue(buf: *const f32, gl: usize, epi: &Epilogue) {
        match (epi.residual.is_null(), epi.relu) {
            (true, false) => store::<false, false>(buf, gl, epi),
            (true, true) => store::<false, true>(buf, gl, epi),
            (false, false) => store::<true, false>(buf, gl, epi),
            (false, true) => store::<true, true>(buf, gl, epi),
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn store<const RES: bool, const RELU: bool>(buf: *const f32, gl: usize, epi: &Epilogue) {
        let zero = _mm256_setzero_ps();
        let finish = |v: __m256, at: usize| {
            let v = if RES {
                _mm256_add_ps(v, _mm256_loadu_ps(epi.residual.add(at)))
            } else {
                v
            };
            if RELU {
                _mm256_max_ps(v, zero)
            } else {
                v
            }
        };
        for m0 in (0..epi.channels).step_by(L) {
            for p0 in (0..epi.positions).step_by(L) {
                let r = |p: usize| _mm256_loadu_ps(buf.add((p0 + p) * gl + m0));
                let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
                let (r4, r5, r6, r7) = (r(4), r(5), r(6), r(7));
                let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
                let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
                let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
                let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
                let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let rows = [
                    _mm256_permute2f128_ps::<0x20>(s0, s4),
                    _mm256_permute2f128_ps::<0x20>(s1, s5),
                    _mm256_permute2f128_ps::<0x20>(s2, s6),
                    _mm256_permute2f128_ps::<0x20>(s3, s7),
                    _mm256_permute2f128_ps::<0x31>(s0, s4),
                    _mm256_permute2f128_ps::<0x31>(s1, s5),
                    _mm256_permute2f128_ps::<0x31>(s2, s6),
                    _mm256_permute2f128_ps::<0x31>(s3, s7),
                ];
                let at = m0 * epi.ohw + p0;
                let n = L.min(epi.positions - p0);
                if n == L && epi.channels - m0 >= L {
                    for (m, v) in rows.into_iter().enumerate() {
                        let at = at + m * epi.ohw;
                        _mm256_storeu_ps(epi.out.add(at), finish(v, at));
                    }
                    continue;
                }
                for (m, v) in rows.into_iter().enumerate().take(epi.channels - m0) {
                    let at = at + m * epi.ohw;
                    let mut t = [0.0f32; L];
                    let r = if RES {
                        std::slice::from_raw_parts(epi.residual.add(at), n)
                    } else {
                        &[]
                    };
                    _mm256_storeu_ps(t.as_mut_ptr(), v);
                    for (p, &s) in t.iter().enumerate().take(n) {
                        let s = if RES { s + r[p] } else { s };
                        *epi.out.add(at + p) = if RELU { s.max(0.0) } else { s };
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) mod avx2 {
    use super::Epilogue;

    #[allow(clippy::too_many_arguments)]
    pub(in crate::kernels) unsafe fn tile(
        _: usize,
        _: *const f32,
        _: &[usize],
        _: (usize, usize),
        _: &[usize],
        _: *const f32,
        _: (*const f32, usize),
        _: *mut f32,
    ) {
        unreachable!("the channel-lanes kernel is only chosen where `available()`")
    }

    pub(in crate::kernels) unsafe fn epilogue(_: *const f32, _: usize, _: &Epilogue) {
        unreachable!("the channel-lanes kernel is only chosen where `available()`")
    }

    pub(in crate::kernels) unsafe fn pad(_: &[f32], _: &mut [f32], _: &super::Geometry, _: usize) {
        unreachable!("the channel-lanes kernel is only chosen where `available()`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(192))]
        /// The kernel against the definition of a convolution with its epilogue (f64 sums):
        /// both tile shapes with full and partial channel groups, planes from 1 to 40 wide
        /// (runs of positions full and partial, tiles with spare positions), kernels up to 5×5
        /// with strides, dilation and uneven pads, serial and parallel, and a scratch buffer
        /// left dirty by a larger call.
        #[test]
        fn channel_lanes_matches_the_definition(
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
            let mut rnd = crate::kernels::reference::uniform(seed);
            let (in_len, out_len) = (c * h * w, mg * oh * ow);
            let x: Vec<f32> = (0..in_len).map(|_| rnd()).collect();
            let wt: Vec<f32> = (0..mg * c * kh * kw).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..mg).map(|_| rnd()).collect();
            let r: Vec<f32> = (0..out_len).map(|_| rnd()).collect();
            let (use_b, use_r, relu) = (epilogue & 1 == 1, epilogue & 2 == 2, epilogue & 4 == 4);
            let (bias, res) = (use_b.then_some(&b[..]), use_r.then_some(&r[..]));
            let want = super::super::reference::conv(&g, 1, mg, &x, &wt, bias, res, relu);
            let packed = pack_weights(mg, c, kh * kw, &wt);
            // NaN until written: an output the kernel skipped fails the comparison below.
            let mut y = vec![std::mem::MaybeUninit::new(f32::NAN); out_len];
            // A dirty scratch buffer: the padding must be written, not assumed zero.
            let mut scratch = vec![f32::NAN; 4 * (c * (h + 8) * (w + 48))];
            let plan = Plan::new(&g, mg);
            plan.run(&packed, &x, &mut y, bias, res, relu, &mut scratch, parallel);
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
