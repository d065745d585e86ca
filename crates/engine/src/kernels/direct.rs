//! Direct convolution with a register-blocked AVX-512 microkernel: no patch matrix,
//! no GEMM packing, and the epilogue (bias, residual, ReLU) applied in registers.
//!
//! What it computes: for one group, `y[n, m, oy, ox] = act(b[m] + r[n, m, oy, ox] +
//! Σ_{c,i,j} W[m,c,i,j] · x[n, c, oy·sh + i·dh − pt, ox·sw + j·dw − pl])`, reading zero outside
//! the image. At stride 1 with `ow ≤ w` (any "same" or unpadded convolution) it reads the
//! input in place: "wide" position `q = oy·w + ox` (the input's row pitch, so `q` is the output
//! index itself for a "same" convolution), and tap `(i, j)` of every position reads `x[c, q +
//! (i·dh − pt)·w + (j·dw − pl)]`: one flat run per tap over any number of output rows. Lanes
//! whose tap falls in the padding (off the image's top, bottom or a row end) are masked off
//! the load, so they add
//! zero and no padded copy is made; the masks depend only on the geometry and are worked out
//! once per call. Other strides (and wider pads) copy the input once into zero-padded phase
//! planes, on which they become stride 1 (see [`Plan`]), with wide positions at the phase
//! plane's pitch; wide positions that are not outputs are computed and never stored (masked
//! stores).
//!
//! Why it is fast: the microkernel keeps an `MB × PV` block of accumulators (`MB` output
//! channels × `PV` vectors of 16 positions, per [`Isa`]) in registers for the whole
//! reduction over channels and taps; each step loads `PV` input vectors and broadcasts `MB`
//! weights for `MB·PV` fused multiply-adds, and nothing is written until the block is done.
//! The input tile of a block of positions stays in L1 across the output-channel blocks, the
//! weights are packed (at load time, when they are constant) in the order the steps read them,
//! and on small planes a tile's vectors may come from different samples, so that an 8×8 plane
//! (4 vectors of 16) still fills whole tiles; planes that are no whole number of vectors (7×7:
//! 49 positions in 64 lanes) are stacked, the batch's planes end to end, so that their lanes
//! fill too (see [`Plan`]). im2col +
//! GEMM instead writes and re-reads a patch matrix 9× (3×3) the input's size and repacks it
//! inside the GEMM; for the 16–64 channel layers of CIFAR networks that traffic cost about as
//! much as the products.
//!
//! Where the CPU lacks AVX-512, [`available`] is false: with AVX2 + FMA the convolutions take
//! the channel-lanes and Winograd kernels (an AVX2 port of this kernel, 6 channels × 2 vectors
//! of 8 with masked loads, ran at 0.7–1.3× the GEMM routes on Zen 3 and below the
//! channel-lanes kernel on every layer, and was removed), elsewhere the GEMM routes (whose
//! `gemm` crate dispatches to NEON or SSE itself).

use super::im2col::Geometry;
use super::OutPtr;

/// The most vectors of wide positions per register tile of any instruction set (the tile
/// shape is `avx512::{MB, PV}`).
const PV_MAX: usize = 8;
/// The most output channels per register tile of any instruction set.
const MB_MAX: usize = 8;
const _: () = assert!(avx512::PV <= PV_MAX && avx512::PV1 <= PV_MAX && avx512::MB <= MB_MAX);

/// The instruction set the microkernel runs on; it fixes the register tile's shape (one so
/// far: a port to another adds a variant, its module and its tile constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// 16 lanes, tiles of 8 output channels × 3 vectors, mask registers for the padding.
    Avx512,
}

impl Isa {
    /// Lanes per vector.
    pub(crate) fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => avx512::L,
        }
    }

    /// Output channels per register tile.
    pub(crate) fn mb(self) -> usize {
        match self {
            Isa::Avx512 => avx512::MB,
        }
    }

    /// Vectors per register tile.
    pub(crate) fn pv(self) -> usize {
        match self {
            Isa::Avx512 => avx512::PV,
        }
    }

    /// Vectors per register tile of a layer with one output channel (the input gradient of
    /// a network's first convolution on grey images), whose tiles have one accumulator row.
    pub(crate) fn pv_single(self) -> usize {
        match self {
            Isa::Avx512 => avx512::PV1,
        }
    }

    /// Whether this CPU runs it.
    pub(crate) fn runs_here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => std::is_x86_feature_detected!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Every instruction set this CPU runs, best first (the tests run each).
    pub(crate) fn supported() -> Vec<Isa> {
        [Isa::Avx512]
            .into_iter()
            .filter(|i| i.runs_here())
            .collect()
    }
}

/// The instruction set the direct kernel runs on here (None: the CPU has none of them, and
/// the convolutions take the other kernels).
pub(crate) fn isa() -> Option<Isa> {
    static ISA: std::sync::OnceLock<Option<Isa>> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| Isa::supported().first().copied())
}

/// Whether this CPU runs the direct kernel.
pub(crate) fn available() -> bool {
    isa().is_some()
}

/// Whether it is the kernel to use (it handles any geometry) for `groups` groups of `mg` output
/// channels on `n` samples: the CPU has it, the weights are small enough to stay in cache
/// while every sample streams past them ([`MAX_WEIGHTS`], or [`MAX_WEIGHTS_STACKED`] where
/// the batch's planes are stacked, see [`stacks`]), and on small planes (64 positions or
/// fewer, counting every sample of a stacked batch) the layer has one group and one block's
/// weights fit in L1 across the tiles. Measured alternating both choices within one
/// process (`faultline bench` on ResNet-20, 2 threads, median of 30 pairs): its 8×8 layers (64
/// channels) on the direct kernel ran the whole network 9 % faster than on im2col + GEMM; with
/// 256 or 512 channels at 8×8 or 7×7 (unstacked), `kernel_speeds` measured it at 0.5–0.8×
/// im2col. Strided
/// small planes too, although their phase planes leave about half the lanes idle (ResNet-20's
/// 32 → 64 channel stride-2 layer, 8×8 out, per-node profile of forward passes under load, 2
/// threads: 0.034–0.037 ms at batch 1 and 0.22–0.28 ms at batch 8 against 0.053–0.060 and
/// 0.35–0.51 ms on im2col + GEMM run on the team; its neighbours' 8×8 stride-1 layers took
/// 0.026–0.028 and 0.19–0.26 ms).
///
/// Not 1×1 layers: at stride 1 the GEMM on the input itself needs no patch matrix, and at
/// stride 2 the phase planes copy four times the input that im2col's one subsampled copy does
/// (`imagenet_layers`, 8 samples, 2 threads, Zen 4: 256 → 512 channels, 56×56, stride 2, this
/// kernel at 0.73 [0.69, 0.76] of im2col).
pub(crate) fn applies(g: &Geometry, mg: usize, groups: usize, n: usize) -> bool {
    isa().is_some_and(|isa| {
        let stacked = groups == 1 && stacks(isa, g, n);
        let (max, plane) = if stacked {
            (MAX_WEIGHTS_STACKED, n * g.cols())
        } else {
            (MAX_WEIGHTS, g.cols())
        };
        !(g.kh == 1 && g.kw == 1)
            && mg * g.rows() <= max
            && (plane > super::rowshift::SMALL_PLANE
                || groups == 1 && g.rows() * isa.mb() * 4 <= 32 << 10)
    })
}

/// Largest `M·C·kh·kw` (per group) the direct kernel is chosen for: 256 → 256 channels 3×3
/// (2.25 MiB; larger weights are untested). Measured per layer on 8-sample chunks, 2 threads,
/// in GMAC/s, direct against the column-shift GEMM that would otherwise run: 77 vs 62 at 16
/// channels on 32×32, 117 vs 104 at 128 on 16×16, 114 vs 89 at 64 on 56×56, 98 vs 86 at 256
/// on 14×14 (sweeping weights block by block once they outgrow the input, see `block_major`).
pub(crate) const MAX_WEIGHTS: usize = 256 * 256 * 9;

/// Largest `M·C·kh·kw` (per group) the direct kernel is chosen for where the batch's planes
/// are stacked ([`stacks`]): 512 → 512 channels 3×3 (9 MiB), ResNet-18/50's layer4 at 224 px.
/// Stacked, every lane of a tile holds an output, and a block of `MB` output channels (its
/// `c·kh·kw·MB` weights, 144 KiB at 512 channels) sweeps the whole batch's positions before
/// the next block (see `block_major`), so the weights are read once per call. Measured on a
/// loaded 2-core Zen 4, 2 threads, 8 samples: `kernel_speeds 512x7` (7 rounds) 101.8 GMAC/s
/// stacked direct against 66.6 on im2col (which ran these layers before) and 50.3 on the
/// column-shift GEMM, direct / best GEMM 1.74 [0.92, 2.53]; `faultline bench --profile` on
/// ResNet-18, old and new builds alternated over 6 rounds: its three 512-channel 7×7 3×3
/// layers 15.2 [13.3, 21.7] → 9.7 [9.0, 11.2] ms forward and 15.3 [13.3, 22.1] → 10.6 [9.2,
/// 13.5] ms backward, its 256-channel 14×14 ones (the direct kernel before, unstacked) 10.0
/// [9.4, 17.3] → 9.6 [8.8, 12.1] ms forward, and the network's forward 44.6 [31.4, 46.3] →
/// 49.7 [47.7, 50.4] img/s.
pub(crate) const MAX_WEIGHTS_STACKED: usize = 512 * 512 * 9;

/// Whether the plan for `n` samples over `g` stacks their planes (see [`Plan::new`]): at
/// stride 1 in place with no more output rows than input rows (as for every pad up to the
/// kernel's extent), for more than one sample, where rounding each sample's wide positions
/// up to whole vectors leaves more than 1/32 of the lanes idle (7×7: 49 positions in 4
/// vectors of 16, 23 % idle; 14×14: 196 in 13, 6 %; never a plane of a multiple of 16
/// positions, such as every CIFAR layer's).
pub(crate) fn stacks(isa: Isa, g: &Geometry, n: usize) -> bool {
    let lanes = isa.lanes();
    let wide = g.oh * g.w;
    let idle = wide.div_ceil(lanes) * lanes - wide;
    n > 1 && stackable(g) && idle * 32 > wide.div_ceil(lanes) * lanes
}

/// Whether a plan over `g` can stack planes: in place, and with each sample's wide positions
/// (`oh` rows of `w`) inside its own plane's place in the stacked channel.
fn stackable(g: &Geometry) -> bool {
    g.sh == 1 && g.sw == 1 && g.ow <= g.w && g.oh <= g.h
}

/// Input channels per step of the reduction: a tile runs all taps over `CB` channels, then
/// the next `CB`, so that the input rows it reads (`CB` channels × a few rows) stay in L1
/// across the taps while each tap's lane masks stay in (AVX-512) mask registers over the
/// channels.
/// Where one channel's plane is a multiple of 4 KiB (32×32 in place), every channel's rows
/// fall in the same L1 sets, and 16 of them overflow its 12 ways: there the steps go over
/// halves of `CB` (`kernel_speeds`, direct / best GEMM, three runs each: 16 channels at
/// 32×32 1.30, 1.29, 1.40 with 8 against 1.16, 1.20, 1.16 with 16; 64 channels at 32×32 1.06,
/// 1.06, 1.10 against 1.01, 1.01, 1.16; at 56×56, where nothing aliases, 16 did better: 1.10,
/// 1.07, 1.11 against 1.00, 1.06, 1.01).
const CB: usize = 16;

/// The weights `w[mg × c × taps]` (`taps = kh·kw`) packed in the microkernel's reading order,
/// `[⌈mg/MB⌉][⌈c/CB⌉][taps][channels of the chunk][MB]` (`MB` = `isa.mb()`), zero-padded to a
/// multiple of `MB` output channels, so that one microkernel step reads `MB` adjacent values.
pub(crate) fn pack_weights(isa: Isa, mg: usize, c: usize, taps: usize, w: &[f32]) -> Vec<f32> {
    super::pack_blocks(w, (mg, c, taps), isa.mb(), CB)
}

/// What a convolution's geometry fixes for every sample: where the kernel reads (the input in
/// place, its samples' planes stacked, or its padded phase planes), the taps' offsets and lane
/// masks, where each vector's lanes are stored, and the sweep order. Made once per call and
/// run on the whole batch (in place, one group) or on each sample and group.
///
/// Stacked planes: in place, the wide positions of each sample are rounded up to whole
/// vectors, which on small planes leaves many lanes idle (a 7×7 plane: 49 positions in 64
/// lanes). A stacked plan copies the batch's planes of each channel end to end (`x[c × (n·h·w)]`,
/// one `n·h·w` channel stride), so that one flat run of wide positions `s·h·w + oy·w + ox`
/// covers every sample; a tap that would cross into the next or previous sample leaves the
/// image at its top or bottom row, where its lane mask stops it as it stops it at the image's
/// edges. Each output's sum runs the same steps in the same order as unstacked, so the results
/// are bitwise the same.
pub(crate) struct Plan {
    g: Geometry,
    mg: usize,
    isa: Isa,
    /// Stride 1 with `ow ≤ w`: the kernel reads the input itself, wide positions have the
    /// input's row pitch, and the lane masks stand in for the padding.
    in_place: bool,
    /// Samples whose planes are stacked (in place; 1: not stacked, each sample's wide
    /// positions start a vector).
    stack: usize,
    /// Phase-plane width, one phase plane, one channel's planes (padded route).
    wq: usize,
    phase: usize,
    plane: usize,
    /// One channel's stride in what the kernel reads, and the channels per step within a
    /// chunk of `CB` (see [`CB`]).
    cstride: usize,
    sub: usize,
    /// The padded input buffer's length: the channels' planes plus zero slack (padded route).
    len: usize,
    offsets: Vec<isize>,
    /// `masks[v·taps + t]`: the lanes of vector `v` whose tap `t` reads the input (not the
    /// padding); all lanes on the padded route, where the padding is real zeros.
    masks: Vec<u16>,
    segs: Segments,
    blocks: usize,
    /// Vectors of wide positions per sample.
    vectors: usize,
    block_major: bool,
}

impl Plan {
    /// The plan for `mg` output channels over geometry `g` for calls on `n` samples at once
    /// (1 for calls per sample), on this CPU's [`isa`] (which must exist); it stacks the
    /// samples' planes where [`stacks`] says so.
    pub(crate) fn new(g: &Geometry, mg: usize, n: usize) -> Plan {
        let isa = isa().expect("the direct kernel runs on this CPU");
        Plan::with_isa(g, mg, isa, Plan::stack_for(isa, g, n))
    }

    /// The samples a plan for calls on `n` samples stacks (1: none).
    fn stack_for(isa: Isa, g: &Geometry, n: usize) -> usize {
        if stacks(isa, g, n) {
            n
        } else {
            1
        }
    }

    /// The plan on instruction set `isa` (one of [`Isa::supported`]), with the planes of
    /// `stack` samples stacked (1: none; above 1 only in place, and then each call takes
    /// exactly `stack` samples).
    pub(crate) fn with_isa(g: &Geometry, mg: usize, isa: Isa, stack: usize) -> Plan {
        #[allow(non_snake_case)]
        let (L, MB) = (isa.lanes(), isa.mb());
        let (sh, sw) = (g.sh, g.sw);
        let (hp, wp) = (g.pt + g.h + g.pb, g.pl + g.w + g.pr);
        let taps = g.kh * g.kw;
        let in_place = sh == 1 && sw == 1 && g.ow <= g.w;
        assert!(stack >= 1 && (stack == 1 || stackable(g)));
        // Phase planes (padded route): a stride-(sh, sw) convolution reads padded rows `oy·sh +
        // i·dh`, which all lie in the phase plane of rows ≡ i·dh (mod sh) (likewise for
        // columns), at row `oy + ⌊i·dh / sh⌋` of that plane: so each tap is a stride-1 tap of
        // one phase plane, and the stride-1 kernel below runs unchanged.
        let (hq, wq) = (hp.div_ceil(sh), wp.div_ceil(sw));
        let phase = hq * wq;
        let plane = sh * sw * phase;
        let pitch = if in_place { g.w } else { wq };
        // Stacked, sample `s`'s wide positions start at `s·h·w` (its plane's place in the
        // stacked channel); the rows `oh..h` between samples (an unpadded convolution's) are
        // computed and never stored.
        let sample_wide = g.h * g.w;
        let wide = (stack - 1) * sample_wide + g.oh * pitch;
        // Wide positions per sample (unstacked, every wide position is sample 0's).
        let per_sample = if stack > 1 { sample_wide } else { wide };
        let vectors = wide.div_ceil(L);
        let tap = |t: usize| (t / g.kw * g.dh, t % g.kw * g.dw);
        let offsets: Vec<isize> = (0..taps)
            .map(|t| {
                let (ri, cj) = tap(t);
                if in_place {
                    // In place, tap (i, j) of wide position q = oy·w + ox reads input element
                    // q + (i·dh − pt)·w + (j·dw − pl): that of (oy + i·dh − pt, ox + j·dw − pl)
                    // wherever both lie inside the image, which is what its mask bit says.
                    (ri as isize - g.pt as isize) * g.w as isize + cj as isize - g.pl as isize
                } else {
                    (((ri % sh) * sw + cj % sw) * phase + (ri / sh) * wq + cj / sw) as isize
                }
            })
            .collect();
        let mut masks = vec![u16::MAX; vectors * taps];
        if in_place {
            // Per vector: which lanes' rows and columns stay inside the image for each kernel
            // row and column, then one AND per tap (cheap enough to redo on every call).
            // Stacked, a lane's row and column are those within its own sample.
            let (mut rows, mut cols) = (vec![0u16; g.kh], vec![0u16; g.kw]);
            for v in 0..vectors {
                rows.fill(0);
                cols.fill(0);
                for l in 0..L {
                    if v * L + l < wide {
                        let q = (v * L + l) % per_sample;
                        let (oy, ox) = (q / g.w, q % g.w);
                        for (i, r) in rows.iter_mut().enumerate() {
                            *r |= ((oy + i * g.dh).wrapping_sub(g.pt) < g.h) as u16 * (1 << l);
                        }
                        for (j, c) in cols.iter_mut().enumerate() {
                            *c |= ((ox + j * g.dw).wrapping_sub(g.pl) < g.w) as u16 * (1 << l);
                        }
                    }
                }
                for t in 0..taps {
                    masks[v * taps + t] = rows[t / g.kw] & cols[t % g.kw];
                }
            }
        }
        // Reads on the padded route: a tile reads its channel plane at `q + off` with `q <
        // wide + L` (its last vector may pass the final wide position) and `off ≤ (sh·sw −
        // 1)·Hq·Wq + ⌊(ekh − 1)/sh⌋·Wq + ⌊(ekw − 1)/sw⌋`; since `oh + ⌊(ekh − 1)/sh⌋ ≤ Hq`,
        // that is below `plane + L + ekw`. Zero slack past the last channel keeps those reads
        // inside the buffer (asserted here); the results at positions that are not outputs
        // are never stored. In place, every read lane is inside the image by its mask, and
        // masked lanes are not read.
        // Stacked, the stacked copy is the buffer (each channel's `stack` planes).
        let (len, cstride) = if in_place {
            (
                stack * g.c * sample_wide * (stack > 1) as usize,
                stack * sample_wide,
            )
        } else {
            let ekw = (g.kw - 1) * g.dw + 1;
            let len = g.c * plane + PV_MAX * L + ekw + wq;
            let last_read = g.c.saturating_sub(1) * plane
                + offsets.iter().max().copied().unwrap_or(0) as usize
                + vectors * L;
            assert!(
                last_read <= len,
                "direct convolution would read past its input"
            );
            (len, plane)
        };
        let blocks = mg.div_ceil(MB);
        Plan {
            g: *g,
            mg,
            isa,
            in_place,
            stack,
            wq,
            phase,
            plane,
            cstride,
            // From one sample's plane also when stacked, so that the sums run in the same order
            // stacked or not (and a plane that stacks holds no multiple of 16 positions, so
            // never one of 4 KiB).
            sub: if (if in_place { sample_wide } else { cstride } * 4).is_multiple_of(4096) {
                CB / 2
            } else {
                CB
            },
            len,
            offsets,
            masks,
            segs: Segments::new(
                (wide, pitch, L),
                (g.oh, g.ow),
                (per_sample, mg * g.oh * g.ow),
            ),
            blocks,
            vectors,
            // Which operand stays in cache: with more weights than input, one block of output
            // channels (its `c·kh·kw·MB` weights) sweeps every position before the next block
            // starts; otherwise one tile of positions (its input rows) meets every block.
            block_major: blocks * g.c * taps * MB > g.c * cstride,
        }
    }

    /// Whether this is the plan [`Plan::new`] makes for `mg` output channels over `g` on `n`
    /// samples.
    pub(crate) fn fits(&self, g: &Geometry, mg: usize, n: usize) -> bool {
        self.g == *g && self.mg == mg && self.stack == Plan::stack_for(self.isa, g, n)
    }

    /// Whether the kernel reads the input in place (then [`Plan::run`] takes several samples
    /// at once, and its register tiles may span them).
    pub(crate) fn in_place(&self) -> bool {
        self.in_place
    }

    /// `y[n × mg × oh·ow] = act(conv(x[n × c × h × w]) + bias + residual)` for one group:
    /// `bias` has `mg` values, `residual` the output's shape, and `act` is a ReLU when `relu`.
    /// `n` is 1 unless the plan reads in place, and the plan's stack where it stacks planes.
    /// Every element of `y` is written exactly once,
    /// so it may start uninitialised (the epilogue then costs no extra pass over memory).
    /// `packed` comes from [`pack_weights`]; `scratch` holds the padded input or the stacked
    /// planes; `parallel`
    /// splits the work over the threads (`crate::team::for_each`).
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
        assert!(self.isa.runs_here());
        #[allow(non_snake_case)]
        let (L, MB) = (self.isa.lanes(), self.isa.mb());
        let (g, mg) = (&self.g, self.mg);
        #[allow(non_snake_case)]
        let PV = if mg == 1 {
            self.isa.pv_single()
        } else {
            self.isa.pv()
        };
        let (c, taps) = (g.c, g.kh * g.kw);
        let (in_len, ohw) = (c * g.h * g.w, g.oh * g.ow);
        let n = x.len() / in_len.max(1);
        assert!(n >= 1 && x.len() == n * in_len && (n == 1 || self.in_place));
        assert!(self.stack == 1 || n == self.stack);
        assert_eq!(y.len(), n * mg * ohw);
        assert_eq!(packed.len(), self.blocks * c * taps * MB);
        assert!(bias.is_none_or(|b| b.len() == mg));
        assert!(residual.is_none_or(|r| r.len() == y.len()));
        let (sh, sw, wq, phase, plane) = (g.sh, g.sw, self.wq, self.phase, self.plane);
        let xp: &[f32] = if self.stack > 1 {
            // Each channel's planes end to end, sample after sample.
            let hw = g.h * g.w;
            scratch.resize(self.len, 0.0);
            for (s, xs) in x.chunks_exact(in_len).enumerate() {
                for (ci, src) in xs.chunks_exact(hw).enumerate() {
                    let at = ci * self.cstride + s * hw;
                    scratch[at..at + hw].copy_from_slice(src);
                }
            }
            scratch
        } else if self.in_place {
            x
        } else {
            scratch.resize(self.len, 0.0);
            // Only strides above 1 and pads wider than the kernel come here (rare enough that
            // zeroing the whole buffer first costs nothing that matters).
            scratch[..c * plane].fill(0.0);
            for ci in 0..c {
                let src = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
                let dst = &mut scratch[ci * plane..(ci + 1) * plane];
                for (iy, row) in src.chunks_exact(g.w).enumerate() {
                    let (a, r) = ((g.pt + iy) % sh, (g.pt + iy) / sh);
                    // Padded column `pl + ix` goes to phase `(pl + ix) mod sw`, column
                    // `(pl + ix) / sw`: per phase, a strided run of the row.
                    for ix0 in 0..sw.min(g.w) {
                        let (b, col) = ((g.pl + ix0) % sw, (g.pl + ix0) / sw);
                        let at = (a * sw + b) * phase + r * wq + col;
                        let run = row[ix0..].iter().step_by(sw);
                        for (d, &v) in dst[at..].iter_mut().zip(run) {
                            *d = v;
                        }
                    }
                }
            }
            scratch[c * plane..].fill(0.0);
            scratch
        };
        // Register tiles split a span of vectors evenly (1 to `PV` each). A span is one
        // sample's vectors, so that a sample's input and outputs stay in cache while its
        // tiles run, except on planes of fewer than `4·PV` vectors (8×8 at 16 lanes), whose
        // tiles run over the vectors of all samples in turn so as to fill whole tiles, and on
        // planes of under 128 vectors that are not a multiple of `PV` (16×16 at 16 lanes),
        // whose spans take `PV` samples:
        // the `PV − 1`-vector tiles measured about a quarter slower per vector.
        // Stacked, the whole batch is one run of vectors (the stacked plane's).
        let (vectors, samples) = (self.vectors, if self.stack > 1 { 1 } else { n });
        let span = if vectors < 4 * PV {
            samples
        } else if !vectors.is_multiple_of(PV) && vectors < 128 {
            PV
        } else {
            1
        };
        let (blocks, block_major, offsets) = (self.blocks, self.block_major, &self.offsets);
        // Tasks (a tile of one block) per full span; the last span may hold fewer samples.
        let full = (span * vectors).div_ceil(PV) * blocks;
        let spans = samples.div_ceil(span);
        let last = (samples - (spans - 1) * span) * vectors;
        let out = OutPtr(y.as_mut_ptr() as *mut f32);
        let out_len = mg * ohw;
        let run = |t: usize| {
            let (si, t) = (t / full, t % full);
            let all = if si + 1 == spans {
                last
            } else {
                span * vectors
            };
            let tiles = all.div_ceil(PV);
            let (ti, b) = if block_major {
                (t % tiles, t / tiles)
            } else {
                (t / blocks, t % blocks)
            };
            let first = si * span * vectors;
            let (v0, v1) = (first + ti * all / tiles, first + (ti + 1) * all / tiles);
            let mut bv = [0.0f32; MB_MAX];
            let m0 = b * MB;
            let mb = MB.min(mg - m0);
            if let Some(bias) = bias {
                bv[..mb].copy_from_slice(&bias[m0..m0 + mb]);
            }
            let mut epi = Epilogue {
                out: [std::ptr::null_mut(); PV_MAX],
                residual: [std::ptr::null(); PV_MAX],
                has_residual: residual.is_some(),
                ohw,
                channels: mb,
                bias: bv,
                relu,
                segs: &self.segs,
                vector: [0; PV_MAX],
            };
            let mut xs = [std::ptr::null(); PV_MAX];
            let mut ms = [std::ptr::null(); PV_MAX];
            for (p, gv) in (v0..v1).enumerate() {
                let (sample, v) = (gv / vectors, gv % vectors);
                let at = sample * out_len + m0 * ohw;
                epi.out[p] = out.get().wrapping_add(at);
                epi.residual[p] = residual.map_or(std::ptr::null(), |r| r[at..].as_ptr());
                epi.vector[p] = v;
                xs[p] = xp.as_ptr().wrapping_add(sample * in_len + v * L);
                ms[p] = self.masks[v * taps..].as_ptr();
            }
            let w = &packed[b * c * taps * MB..(b + 1) * c * taps * MB];
            // SAFETY: on the padded route the reads stay inside `xp` (slack above); in place,
            // only lanes whose mask bit is set are read, each inside its sample's image (see
            // `Plan::with_isa`); the weights inside `w`. The stores (masked, or whole vectors
            // where a run covers every lane) write only output
            // channels `m0..m0 + mb` at the outputs of vectors `v0..v1`, which no other tile
            // writes, and the residual is read at the same elements.
            let dims = (c, self.cstride, self.sub);
            unsafe {
                match self.isa {
                    Isa::Avx512 => {
                        avx512::block(v1 - v0, &xs, &ms, dims, offsets, w.as_ptr(), &epi)
                    }
                }
            };
        };
        let tasks = (spans - 1) * full + last.div_ceil(PV) * blocks;
        if parallel && tasks > 1 {
            crate::team::for_each(tasks, run);
        } else {
            (0..tasks).for_each(run);
        }
    }
}

/// Where the lanes of each vector of wide positions go: up to one run of lanes per output row
/// the vector covers, each a lane mask and the output index of lane 0 (`delta`, so lane `l` of
/// the run lands at `delta + l`; it is negative for a run that starts past lane 0 of the first
/// row). Stacked planes (see [`Plan`]): a vector may cover rows of two or more samples, and
/// `delta` then includes the sample's offset in the output. Depends only on the geometry, so
/// it is worked out once per call.
struct Segments {
    /// `(mask, delta)` runs, vector `v`'s at `runs[start[v]..start[v + 1]]`.
    runs: Vec<(u16, isize)>,
    start: Vec<usize>,
}

impl Segments {
    /// For `wide` positions of row pitch `wp` in vectors of `lanes`, `oh × ow` outputs per
    /// sample, samples `sample_wide` positions apart and `sample_out` apart in the output.
    fn new(
        (wide, wp, lanes): (usize, usize, usize),
        (oh, ow): (usize, usize),
        (sample_wide, sample_out): (usize, usize),
    ) -> Self {
        #[allow(non_snake_case)]
        let L = lanes;
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
                let (sample, at) = ((q + l) / sample_wide, (q + l) % sample_wide);
                let (r, col) = (at / wp, at % wp);
                if r >= oh {
                    // Rows between stacked samples.
                    l += sample_wide - at;
                    continue;
                }
                if col >= ow {
                    l += wp - col;
                    continue;
                }
                let len = (ow - col).min(L - l).min(wide - q - l);
                let mask = (((1u32 << len) - 1) << l) as u16;
                let delta = (sample * sample_out + r * ow + col) as isize - l as isize;
                // Runs that continue one another in the output (a plane as wide as its
                // pitch) share one store.
                let own = s.runs.len() > s.start[v];
                match s.runs.last_mut() {
                    Some(last) if own && last.1 == delta => last.0 |= mask,
                    _ => s.runs.push((mask, delta)),
                }
                l += len;
            }
        }
        s.start.push(s.runs.len());
        s
    }
}

/// What a tile does with its sums: `out[p][m·ohw + i] = act(sum + bias[m] + residual[p][m·ohw +
/// i])` for the tile's `channels` output channels, vector `p` at the indices its [`Segments`]
/// give (`out[p]` and `residual[p]` point at the block's first channel of vector `p`'s sample).
struct Epilogue<'a> {
    out: [*mut f32; PV_MAX],
    residual: [*const f32; PV_MAX],
    has_residual: bool,
    ohw: usize,
    channels: usize,
    bias: [f32; MB_MAX],
    relu: bool,
    segs: &'a Segments,
    /// Each vector's index within its sample, in [`Segments`].
    vector: [usize; PV_MAX],
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Epilogue, CB, PV_MAX};
    use std::arch::x86_64::*;

    /// `8 × 3` = 24 accumulators of the 32 registers, leaving room for the `PV` input vectors
    /// and a broadcast weight (6 × 4 and 4 × 6 measured within noise of 8 × 3 on ResNet-20;
    /// 4 × 7, which needs 36 registers, 30 % slower).
    pub(super) const MB: usize = 8;
    pub(super) const PV: usize = 3;
    pub(super) const L: usize = 16;
    /// Vectors per tile with one output channel: with one accumulator row, `PV` vectors are
    /// 3 chains of dependent fused multiply-adds, too few to hide their latency; 8 are enough
    /// (and 8 input vectors, 8 accumulators and the weight fit the registers).
    pub(super) const PV1: usize = 8;

    /// Dispatches to the microkernel instantiated for `nv` vectors (1 to `PV`, or to `PV1`
    /// with one output channel).
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn block(
        nv: usize,
        xs: &[*const f32; PV_MAX],
        ms: &[*const u16; PV_MAX],
        (c, cstride, sub): (usize, usize, usize),
        offsets: &[isize],
        w: *const f32,
        epi: &Epilogue,
    ) {
        debug_assert!((1..=PV).contains(&nv) || epi.channels == 1 && nv <= PV1);
        // A tile of fewer output channels than `MB` (a layer with fewer, such as the input
        // gradient of a network's first convolution: 1 or 3 channels) runs on a kernel with
        // only that many accumulator rows, not `MB` rows of which most multiply zero weights.
        // Each output's sum runs the same steps in the same order either way.
        macro_rules! rows {
            ($mk:expr) => {
                match nv {
                    1 => kernel::<$mk, 1>(xs, ms, c, cstride, sub, offsets, w, epi),
                    2 => kernel::<$mk, 2>(xs, ms, c, cstride, sub, offsets, w, epi),
                    _ => kernel::<$mk, PV>(xs, ms, c, cstride, sub, offsets, w, epi),
                }
            };
        }
        match epi.channels {
            0 | 1 => match nv {
                1 => kernel::<1, 1>(xs, ms, c, cstride, sub, offsets, w, epi),
                2 => kernel::<1, 2>(xs, ms, c, cstride, sub, offsets, w, epi),
                3 => kernel::<1, 3>(xs, ms, c, cstride, sub, offsets, w, epi),
                4 => kernel::<1, 4>(xs, ms, c, cstride, sub, offsets, w, epi),
                5 => kernel::<1, 5>(xs, ms, c, cstride, sub, offsets, w, epi),
                6 => kernel::<1, 6>(xs, ms, c, cstride, sub, offsets, w, epi),
                7 => kernel::<1, 7>(xs, ms, c, cstride, sub, offsets, w, epi),
                _ => kernel::<1, PV1>(xs, ms, c, cstride, sub, offsets, w, epi),
            },
            2 => rows!(2),
            3 | 4 => rows!(4),
            _ => rows!(MB),
        }
    }

    /// `acc[m][p] = Σ_{c, tap} xs[p][c·cstride + offset(tap) ..] · W[m, c, tap]` over the
    /// lanes of `ms[p][tap]` (the others add zero), then the epilogue. Chunks of `CB` channels
    /// (in steps of `sub`) outside, then taps, then the step's channels: a tap's `NV` masks
    /// stay in mask registers over the step. `NV` is a constant per instantiation so that the
    /// accumulators live in registers (indexed loops, not iterators: iterating by reference
    /// made LLVM keep the accumulators in memory, measured at half speed).
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel<const MK: usize, const NV: usize>(
        xs: &[*const f32; PV_MAX],
        ms: &[*const u16; PV_MAX],
        c: usize,
        cstride: usize,
        sub: usize,
        offsets: &[isize],
        w: *const f32,
        epi: &Epilogue,
    ) {
        debug_assert!(MK <= MB && epi.channels <= MK);
        let mut acc = [[_mm512_setzero_ps(); NV]; MK];
        let taps = offsets.len();
        for c0 in (0..c).step_by(CB) {
            let c1 = (c0 + CB).min(c);
            // This chunk's weights, `[taps][c1 − c0][MB]`.
            let wc = w.add(c0 * taps * MB);
            for s0 in (c0..c1).step_by(sub) {
                let s1 = (s0 + sub).min(c1);
                for (t, &off) in offsets.iter().enumerate() {
                    let mut k = [0u16; NV];
                    let mut xt = [std::ptr::null::<f32>(); NV];
                    for p in 0..NV {
                        k[p] = *ms[p].add(t);
                        xt[p] = xs[p].wrapping_offset(off);
                    }
                    let mut wp = wc.add((t * (c1 - c0) + s0 - c0) * MB);
                    for ci in s0..s1 {
                        let mut v = [_mm512_setzero_ps(); NV];
                        for p in 0..NV {
                            v[p] = _mm512_maskz_loadu_ps(k[p], xt[p].wrapping_add(ci * cstride));
                        }
                        for m in 0..MK {
                            let wv = _mm512_set1_ps(*wp.add(m));
                            for p in 0..NV {
                                acc[m][p] = _mm512_fmadd_ps(v[p], wv, acc[m][p]);
                            }
                        }
                        wp = wp.add(MB);
                    }
                }
            }
        }
        // The sums go through a stack tile: read back with run-time indices below, the
        // accumulators themselves would have to live in memory for the whole reduction.
        // (`MK·NV ≤ MB·PV` for every instantiation: `MB × PV`, or `1 × PV1`.)
        const { assert!(MK * NV <= MB * PV) };
        let mut tile = std::mem::MaybeUninit::<[f32; MB * PV * L]>::uninit();
        let t = tile.as_mut_ptr() as *mut f32;
        for m in 0..MK {
            for p in 0..NV {
                _mm512_storeu_ps(t.add((m * NV + p) * L), acc[m][p]);
            }
        }
        epilogue::<NV>(t, epi);
    }

    /// Applies the [`Epilogue`] to the block's sums `t[(m·NV + p)·L + lane]`.
    #[target_feature(enable = "avx512f")]
    unsafe fn epilogue<const NV: usize>(t: *const f32, epi: &Epilogue) {
        let zero = _mm512_setzero_ps();
        let segs = &epi.segs;
        for m in 0..epi.channels {
            let bias = _mm512_set1_ps(epi.bias[m]);
            for p in 0..NV {
                let out = epi.out[p].wrapping_add(m * epi.ohw);
                let res = epi.residual[p].wrapping_add(m * epi.ohw);
                let v = _mm512_add_ps(_mm512_loadu_ps(t.add((m * NV + p) * L)), bias);
                let v0 = epi.vector[p];
                for &(mask, delta) in &segs.runs[segs.start[v0]..segs.start[v0 + 1]] {
                    let mut t = v;
                    if epi.has_residual {
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

/// Elsewhere [`isa`] is None, so no plan is ever made and these are never called.
#[cfg(not(target_arch = "x86_64"))]
mod avx512 {
    pub(super) use super::unsupported::block;
    pub(super) const MB: usize = 8;
    pub(super) const PV: usize = 3;
    pub(super) const PV1: usize = 8;
    pub(super) const L: usize = 16;
}
#[cfg(not(target_arch = "x86_64"))]
mod unsupported {
    use super::{Epilogue, PV_MAX};
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn block(
        _: usize,
        _: &[*const f32; PV_MAX],
        _: &[*const u16; PV_MAX],
        _: (usize, usize, usize),
        _: &[isize],
        _: *const f32,
        _: &Epilogue,
    ) {
        unreachable!("the direct kernel is only chosen where `isa()` is Some")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(192))]
        /// The direct kernel against the definition of a convolution with its epilogue (f64
        /// sums), on shapes large enough to reach every block size: full and partial channel
        /// blocks and channel chunks, 1 to `PV` vectors per tile, planes from 1 to 40 wide,
        /// kernels up to 5×5 with strides, dilation and uneven pads, batches of 1 to 7 samples
        /// (in place, one call whose tiles span samples), steps of a whole or half channel
        /// chunk, and a parallel split. With `stack`, an in-place batch also runs on a plan
        /// forced to stack its planes (whatever lanes rounding would leave idle), which must
        /// give bitwise the unstacked plan's results.
        #[test]
        fn direct_matches_the_definition(
            c in 1usize..20, mg in 1usize..20, h in 1usize..24, w in 1usize..40,
            kh in 1usize..6, kw in 1usize..6, dh in 1usize..3, dw in 1usize..3,
            sh in 1usize..4, sw in 1usize..4,
            pt in 0usize..4, pl in 0usize..4, pb in 0usize..4, pr in 0usize..4,
            epilogue in 0usize..8, parallel: bool, seed in 0u64..1000, n in 1usize..8,
            half: bool, stack: bool,
        ) {
            let (ekh, ekw) = ((kh - 1) * dh + 1, (kw - 1) * dw + 1);
            if pt + h + pb < ekh || pl + w + pr < ekw {
                return Ok(());
            }
            let (oh, ow) = ((pt + h + pb - ekh) / sh + 1, (pl + w + pr - ekw) / sw + 1);
            let g = Geometry { c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, oh, ow };
            let mut rnd = crate::kernels::reference::uniform(seed);
            let (in_len, out_len) = (c * h * w, mg * oh * ow);
            let x: Vec<f32> = (0..n * in_len).map(|_| rnd()).collect();
            let wt: Vec<f32> = (0..mg * c * kh * kw).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..mg).map(|_| rnd()).collect();
            let r: Vec<f32> = (0..n * out_len).map(|_| rnd()).collect();
            let (use_b, use_r, relu) = (epilogue & 1 == 1, epilogue & 2 == 2, epilogue & 4 == 4);
            let (bias, res) = (use_b.then_some(&b[..]), use_r.then_some(&r[..]));
            let want = super::super::reference::conv(&g, n, mg, &x, &wt, bias, res, relu);
            // Every instruction set this CPU runs (none: nothing to check here).
            for isa in Isa::supported() {
                let packed = pack_weights(isa, mg, c, kh * kw, &wt);
                let run = |stacked: usize| {
                    // NaN until written: an output the kernel skipped fails the comparisons.
                    let mut y = vec![std::mem::MaybeUninit::new(f32::NAN); n * out_len];
                    let mut scratch = vec![f32::NAN; 7];
                    let mut plan = Plan::with_isa(&g, mg, isa, stacked);
                    if half {
                        // The steps of half a chunk that planes of a multiple of 4 KiB take.
                        plan.sub = CB / 2;
                    }
                    if plan.in_place() {
                        // The whole batch in one call: tiles may span samples.
                        plan.run(&packed, &x, &mut y, bias, res, relu, &mut scratch, parallel);
                    } else {
                        for s in 0..n {
                            let res = use_r.then_some(&r[s * out_len..(s + 1) * out_len]);
                            let (xs, ys) = (&x[s * in_len..(s + 1) * in_len], &mut y[s * out_len..(s + 1) * out_len]);
                            plan.run(&packed, xs, ys, bias, res, relu, &mut scratch, parallel);
                        }
                    }
                    // SAFETY: every element was initialised (to NaN) before the call.
                    y.iter().map(|v| unsafe { v.assume_init() }).collect::<Vec<f32>>()
                };
                let got = run(1);
                if stack && n > 1 && stackable(&g) {
                    let stacked = run(n);
                    for (i, (a, b)) in stacked.iter().zip(&got).enumerate() {
                        proptest::prop_assert!(
                            a.to_bits() == b.to_bits(),
                            "{isa:?}, output {i}: stacked {a} vs {b}"
                        );
                    }
                }
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    proptest::prop_assert!(
                        (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()) * (c * kh * kw) as f64,
                        "{isa:?}, output {i}: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// ResNet-18/50's layer4 convolution (512 → 512 channels, 3×3, 7×7 planes), weights only
    /// [`MAX_WEIGHTS_STACKED`] admits, on 1 to 3 samples (1: unstacked; 2 and 3 stacked, as
    /// [`applies`] and [`Plan::new`] choose them) against the definition, with bias, residual
    /// and ReLU; stacked also bitwise against the unstacked plan.
    #[test]
    fn large_weights_on_small_planes_match_the_definition() {
        let (c, mg, hw) = (512, 512, 7);
        let g = Geometry {
            c,
            h: hw,
            w: hw,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            pt: 1,
            pl: 1,
            pb: 1,
            pr: 1,
            oh: hw,
            ow: hw,
        };
        let Some(isa) = isa() else {
            return;
        };
        let mut rnd = crate::kernels::reference::uniform(7u64);
        let wt: Vec<f32> = (0..mg * c * 9).map(|_| rnd()).collect();
        let b: Vec<f32> = (0..mg).map(|_| rnd()).collect();
        let packed = pack_weights(isa, mg, c, 9, &wt);
        for n in 1..=3 {
            assert_eq!(applies(&g, mg, 1, n), n > 1);
            let x: Vec<f32> = (0..n * c * hw * hw).map(|_| rnd()).collect();
            let r: Vec<f32> = (0..n * mg * hw * hw).map(|_| rnd()).collect();
            let want = super::super::reference::conv(&g, n, mg, &x, &wt, Some(&b), Some(&r), true);
            let run = |plan: &Plan| {
                let mut y = vec![std::mem::MaybeUninit::new(f32::NAN); n * mg * hw * hw];
                let mut scratch = Vec::new();
                plan.run(
                    &packed,
                    &x,
                    &mut y,
                    Some(&b),
                    Some(&r),
                    true,
                    &mut scratch,
                    true,
                );
                // SAFETY: every element was initialised (to NaN) before the call.
                y.iter()
                    .map(|v| unsafe { v.assume_init() })
                    .collect::<Vec<f32>>()
            };
            let plan = Plan::new(&g, mg, n);
            assert_eq!(plan.stack, if n > 1 { n } else { 1 });
            let got = run(&plan);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()) * (c * 9) as f64,
                    "n = {n}, output {i}: {g} vs {w}"
                );
            }
            if n > 1 {
                let unstacked = run(&Plan::with_isa(&g, mg, isa, 1));
                assert!(
                    got.iter()
                        .zip(&unstacked)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "n = {n}: stacked and unstacked differ"
                );
            }
        }
    }
}
