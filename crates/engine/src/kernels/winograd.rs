//! Winograd F(2×2, 3×3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016) on the channel-lanes microkernel (AVX2 + FMA).
//!
//! What it computes: the 3×3, stride-1, undilated convolution `y[m, oy, ox] = act(b[m] +
//! r[m, oy, ox] + Σ_{c,i,j} W[m,c,i,j] · x[c, oy + i − pt, ox + j − pl])`, in tiles of 2×2
//! outputs: `Y = Aᵀ [Σ_c (G g_mc Gᵀ) ⊙ (Bᵀ d_c B)] A`, where `d_c` is the tile's 4×4 input
//! patch of channel `c` and `g_mc` the 3×3 kernel, with
//!
//! ```text
//!      | 1  0 -1  0 |        |  1    0    0  |
//! Bᵀ = | 0  1  1  0 |    G = | 1/2  1/2  1/2 |    Aᵀ = | 1  1  1  0 |
//!      | 0 -1  1  0 |        | 1/2 -1/2  1/2 |         | 0  1 -1 -1 |
//!      | 0  1  0 -1 |        |  0    0    1  |
//! ```
//!
//! Why it is fast: the sum over channels becomes 16 independent matrix products, one per
//! point ξ of the 4×4 transformed tile, `M_ξ[m, tile] = Σ_c U_ξ[m, c] · V_ξ[c, tile]`: 16
//! multiply-adds per channel pair and 2×2 outputs where the direct convolution does 36, so
//! 2.25× fewer. Those products run on the channel-lanes microkernel (tiles as its positions,
//! one tap, the channels as its reduction), the weights `U = G g Gᵀ` are transformed once at
//! load time, the input transform `V = Bᵀ d B` is vectorised over 8 tiles of a row (two
//! loads and four shuffles split a padded row into its even and odd columns) and done once
//! per sample for every output channel, and the output transform `Aᵀ M A` runs on the
//! channels in the lanes, so that its 2×2 outputs land in the channel-lanes epilogue's buffer
//! and leave through its 8×8 transposes with bias, residual and ReLU. The transforms only add
//! and subtract; in f32 the results differ from the direct sum by a few units in the last
//! place of the largest term.

use super::channel_lanes::{self, avx2 as lanes, Epilogue, L};
use super::im2col::Geometry;
use super::OutPtr;

/// Points of the transformed 4×4 tile.
const XI: usize = 16;

/// Transformed input values per task (`16 × c × tiles`): whole tile rows, as many as fit in
/// 24 Ki values (96 KiB, in L2), at least one. `winograd_speeds` on 64 channels 16×16, against
/// the channel-lanes kernel: 1.10× at 6 Ki values (L1-sized, one tile row), 0.94× at 12 Ki,
/// 1.47–1.54× at 24 Ki, 1.36× at 48 Ki.
const TASK_VALUES: usize = 24 << 10;

/// Whether the kernel computes geometry `g`: 3×3, stride 1, no dilation, on a CPU with the
/// channel-lanes kernel.
pub(crate) fn fits(g: &Geometry) -> bool {
    channel_lanes::available() && computes([g.kh, g.kw], [g.sh, g.sw], [g.dh, g.dw])
}

/// The convolutions F(2×2, 3×3) computes: 3×3, stride 1, no dilation.
fn computes(kernel: [usize; 2], strides: [usize; 2], dilations: [usize; 2]) -> bool {
    kernel == [3, 3] && strides == [1, 1] && dilations == [1, 1]
}

/// Whether it is the kernel to use for geometry `g` (on a CPU where the channel-lanes
/// kernels come first): 32 to 256 input channels. Measured against the channel-lanes kernel
/// within one process (`winograd_speeds` in `benches/`, 8 samples, 2 threads, median of 15
/// alternations, Zen 3): 32 channels 16×16 1.21–1.24×, 32×32 1.41×; 64 channels 8×8
/// 1.19–1.27×, 16×16 1.47–1.54×, 32×32 1.38×, 56×56 1.36–1.41×; 128 channels 8×8 1.14×,
/// 28×28 1.32–1.40×; 256 channels 8×8 1.26×, 14×14 1.19×. But 16 channels 32×32 0.85–0.93×
/// (each product's reduction is only 16 long, and the transforms cost about what they save)
/// and 512 channels 7×7 0.74× (a group's transformed weights, `16·c` vectors, 512 KiB, no
/// longer stay in L2 across a task's tiles).
pub(crate) fn applies(g: &Geometry) -> bool {
    channel_lanes::available() && applies_to(g.c, [g.kh, g.kw], [g.sh, g.sw], [g.dh, g.dw])
}

/// [`applies`] from a convolution's attributes alone (at load time, to pack the weights).
pub(crate) fn applies_to(
    c: usize,
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
) -> bool {
    computes(kernel, strides, dilations) && (32..=256).contains(&c)
}

/// Whether it beats the direct AVX-512 kernel on geometry `g` (on a CPU that has both): 64 to
/// 128 input channels on planes of at least 28×28 outputs, the 3×3 layers of ImageNet-sized
/// ResNets' first two stages. Measured against the direct kernel within one process
/// (`winograd_speeds`, 8 samples, 2 threads, Zen 4, median [min, max] of 9 alternations): 64
/// channels 56×56 1.31 [1.16, 1.48], 128 channels 28×28 1.39 [1.10, 1.47], 64 channels 32×32
/// 0.97 [0.94, 1.01]; below 28×28 or outside 64–128 channels it lost or tied: 16 channels
/// 32×32 0.68, 32 channels 16×16 0.78, 128 channels 16×16 1.03, 256 channels 14×14 1.01,
/// 512 channels 7×7 0.53, 8×8 planes 0.57–0.80.
pub(crate) fn beats_direct(g: &Geometry) -> bool {
    fits(g) && beats_direct_at(g.c) && g.cols() >= 28 * 28
}

/// The channel part of [`beats_direct`], which is all that is known at load time.
pub(crate) fn beats_direct_at(c: usize) -> bool {
    (64..=128).contains(&c)
}

/// The weights `w[mg × c × 3 × 3]` transformed, `U = G g Gᵀ`, and packed as
/// `[⌈mg/(NB·L)⌉][16][c][NB·L]` (the channel-lanes tile shape of `mg`), zero-padded to whole
/// groups.
pub(crate) fn pack_weights(mg: usize, c: usize, w: &[f32]) -> Vec<f32> {
    let gl = channel_lanes::tile_shape(mg).0 * L;
    let groups = mg.div_ceil(gl);
    let mut out = vec![0.0f32; groups * XI * c * gl];
    const G: [[f32; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    for m in 0..mg {
        let (b, lane) = (m / gl, m % gl);
        for ci in 0..c {
            let g = &w[(m * c + ci) * 9..(m * c + ci + 1) * 9];
            // t = G·g (4×3), then U = t·Gᵀ (4×4).
            let mut t = [[0.0f32; 3]; 4];
            for (a, row) in t.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|i| G[a][i] * g[i * 3 + j]).sum();
                }
            }
            for a in 0..4 {
                for bb in 0..4 {
                    let u: f32 = (0..3).map(|j| t[a][j] * G[bb][j]).sum();
                    out[((b * XI + a * 4 + bb) * c + ci) * gl + lane] = u;
                }
            }
        }
    }
    out
}

/// What a geometry fixes for every sample: tiles, the padded planes, the tasks.
pub(crate) struct Plan {
    g: Geometry,
    mg: usize,
    nb: usize,
    np: usize,
    groups: usize,
    /// Tile rows and columns, the columns rounded up to whole vectors (the transformed
    /// input's row pitch, in tiles).
    ty: usize,
    tx: usize,
    txp: usize,
    /// The geometry of the padded planes (bottom and right pads grown so that the planes
    /// hold whole tiles), their row pitch and length.
    padded: Geometry,
    wp: usize,
    plane: usize,
    /// Tile rows per task.
    rows: usize,
}

impl Plan {
    /// The plan for `mg` output channels over geometry `g` (one that [`fits`]).
    pub(crate) fn new(g: &Geometry, mg: usize) -> Plan {
        let (nb, np) = channel_lanes::tile_shape(mg);
        let (ty, tx) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
        // Padded planes of 2·ty + 2 rows and 2·tx + 2 columns: the tiles' 4×4 patches.
        let mut padded = *g;
        padded.pb = 2 * ty + 2 - g.pt - g.h;
        padded.pr = 2 * tx + 2 - g.pl - g.w;
        let wp = 2 * tx + 2;
        Plan {
            g: *g,
            mg,
            nb,
            np,
            groups: mg.div_ceil(nb * L),
            ty,
            tx,
            txp: tx.next_multiple_of(L),
            padded,
            wp,
            plane: (2 * ty + 2) * wp,
            rows: (TASK_VALUES / (XI * g.c * tx.next_multiple_of(L))).clamp(1, ty),
        }
    }

    /// `y[mg × oh·ow] = act(conv(x[c × h × w]) + bias + residual)` for one sample and group,
    /// as [`channel_lanes::Plan::run`]: every element of `y` written once, `packed` from
    /// [`pack_weights`], `scratch` for the padded and transformed input, `parallel` to split
    /// the tasks over the threads (`crate::team`).
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
        assert!(fits(&self.g));
        let (g, mg, np, gl) = (&self.g, self.mg, self.np, self.nb * L);
        let (c, ohw) = (g.c, g.oh * g.ow);
        assert_eq!(x.len(), c * g.h * g.w);
        assert_eq!(y.len(), mg * ohw);
        assert_eq!(packed.len(), self.groups * XI * c * gl);
        assert!(bias.is_none_or(|b| b.len() == mg));
        assert!(residual.is_none_or(|r| r.len() == y.len()));
        // Scratch: the padded planes, + slack for the input transform's reads past a row's
        // end (whose lanes are not used).
        let slack = 2 * self.txp + 4 * L;
        scratch.resize(c * self.plane + slack, 0.0);
        // SAFETY: `x` holds `c` planes of `h × w`; `scratch` `c` padded planes + `L` or more.
        unsafe { lanes::pad(x, scratch, &self.padded, self.wp) };
        let planes: &[f32] = scratch;
        let out = OutPtr(y.as_mut_ptr() as *mut f32);
        let chunks = self.ty.div_ceil(self.rows);
        let zero = [0.0f32; 2 * L];
        // One task: tile rows `ty0..ty1`, every group of output channels. The input transform
        // `V[16][c][tiles]` of those rows (a few rows: a transform of the whole sample, 4× the
        // input's size, went out of L2 and took a third of the time), then per
        // group its 16 products into `m[16][tiles][gl]`, the output transform (with the bias)
        // into `buf[positions][gl]`, and the channel-lanes epilogue.
        let task = |s: &mut Buffers, task: usize| {
            let ty0 = task * self.rows;
            let ty1 = (ty0 + self.rows).min(self.ty);
            let tiles = (ty1 - ty0) * self.txp;
            s.v.resize(XI * c * tiles, 0.0);
            // SAFETY: the transform reads rows `2·ty0 ..= 2·ty1 + 1` of each padded plane and
            // up to `2·txp + 2` floats into a row (inside the planes or the slack), and
            // writes `v` at `[ξ][c][(t − ty0)·txp + x]` for `x < txp`.
            unsafe {
                avx2::input(
                    planes,
                    &mut s.v,
                    c,
                    (ty0, ty1, self.txp),
                    (self.wp, self.plane),
                )
            };
            s.bases.clear();
            for t in 0..ty1 - ty0 {
                s.bases.extend((0..self.tx).map(|x| t * self.txp + x));
            }
            let n = s.bases.len();
            let last = s.bases[n - 1];
            s.bases.resize(n.next_multiple_of(np), last);
            let span = s.bases.len() * gl;
            s.m.resize(XI * span, 0.0);
            let (r0, r1) = (2 * ty0 * g.ow, (2 * ty1 * g.ow).min(ohw));
            s.buf.resize((r1 - r0).next_multiple_of(L) * gl, 0.0);
            for b in 0..self.groups {
                let m0 = b * gl;
                let channels = gl.min(mg - m0);
                let w = &packed[b * XI * c * gl..(b + 1) * XI * c * gl];
                for xi in 0..XI {
                    for k in (0..n).step_by(np) {
                        // SAFETY: tile `bases[k + p]` reads `v[xi][ci][bases[k + p]]` for `ci
                        // < c` (inside `v`), the weights `w[xi][c][gl]`, and the sums go to
                        // `m[xi][k..k + np][gl]`.
                        unsafe {
                            lanes::tile(
                                self.nb,
                                s.v[xi * c * tiles..].as_ptr(),
                                &s.bases[k..k + np],
                                (c, tiles),
                                &[0],
                                w[xi * c * gl..].as_ptr(),
                                (zero.as_ptr(), 0),
                                s.m[xi * span + k * gl..].as_mut_ptr(),
                            )
                        };
                    }
                }
                let mut bv = [0.0f32; 2 * L];
                if let Some(bias) = bias {
                    bv[..channels].copy_from_slice(&bias[m0..m0 + channels]);
                }
                // SAFETY: tile `i` of the task reads `m[ξ][i][gl]` and writes the positions
                // of its 2×2 outputs inside the image, relative to `r0`, in `buf`.
                unsafe {
                    avx2::output(
                        &s.m,
                        span,
                        &mut s.buf,
                        (ty0, ty1, self.tx),
                        (g.oh, g.ow, r0),
                        (self.nb, &bv),
                    )
                };
                let at = m0 * ohw + r0;
                let epi = Epilogue {
                    out: out.get().wrapping_add(at),
                    residual: residual.map_or(std::ptr::null(), |r| r[at..].as_ptr()),
                    ohw,
                    channels,
                    positions: r1 - r0,
                    relu,
                };
                // SAFETY: the stores write output channels `m0..m0 + channels` at positions
                // `r0..r1` (tile rows `ty0..ty1`), which no other task writes; `buf` holds
                // the positions rounded up to whole vectors.
                unsafe { lanes::epilogue(s.buf.as_ptr(), gl, &epi) };
            }
        };
        if parallel && chunks > 1 {
            crate::team::for_each_init(chunks, Buffers::default, |s, t| task(s, t));
        } else {
            let mut s = Buffers::default();
            (0..chunks).for_each(|t| task(&mut s, t));
        }
    }
}

/// A task's working buffers: the transformed input, the products, the outputs before the
/// epilogue, the tiles' indices.
#[derive(Default)]
struct Buffers {
    v: Vec<f32>,
    m: Vec<f32>,
    buf: Vec<f32>,
    bases: Vec<usize>,
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::L;
    use std::arch::x86_64::*;

    /// Even and odd elements of `p[0..16]`: `(p[0], p[2], …, p[14])`, `(p[1], p[3], …)`.
    #[inline(always)]
    unsafe fn split(p: *const f32) -> (__m256, __m256) {
        let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(L)));
        // Within each 128-bit half: (a0 a2 b0 b2 | a4 a6 b4 b6); then 64-bit pieces 0 2 1 3.
        let e = _mm256_shuffle_ps::<0x88>(a, b);
        let o = _mm256_shuffle_ps::<0xDD>(a, b);
        let fix = |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(v)));
        (fix(e), fix(o))
    }

    /// `v[ξ][c][(t − ty0)·txp + x] = (Bᵀ d B)[ξ]` for every channel and tile of tile rows
    /// `ty0..ty1`, 8 tiles of a row at a time: each of a tile row's 4 padded rows is split
    /// into even and odd columns (`d0 d1 d2 d3` of tile `x` are columns `2x .. 2x + 3`),
    /// transformed along the row, then the 4 rows are combined.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)] // the transforms read clearest as matrix indices
    pub(super) unsafe fn input(
        planes: &[f32],
        v: &mut [f32],
        c: usize,
        (ty0, ty1, txp): (usize, usize, usize),
        (wp, plane): (usize, usize),
    ) {
        let tiles = (ty1 - ty0) * txp;
        let (p, o) = (planes.as_ptr(), v.as_mut_ptr());
        for ci in 0..c {
            for t in ty0..ty1 {
                for x0 in (0..txp).step_by(L) {
                    let mut r = [[_mm256_setzero_ps(); 4]; 4];
                    for (i, r) in r.iter_mut().enumerate() {
                        let row = p.add(ci * plane + (2 * t + i) * wp + 2 * x0);
                        let (d0, d1) = split(row);
                        let (d2, d3) = split(row.add(2));
                        *r = [
                            _mm256_sub_ps(d0, d2),
                            _mm256_add_ps(d1, d2),
                            _mm256_sub_ps(d2, d1),
                            _mm256_sub_ps(d1, d3),
                        ];
                    }
                    let at = ci * tiles + (t - ty0) * txp + x0;
                    for j in 0..4 {
                        let col = [
                            _mm256_sub_ps(r[0][j], r[2][j]),
                            _mm256_add_ps(r[1][j], r[2][j]),
                            _mm256_sub_ps(r[2][j], r[1][j]),
                            _mm256_sub_ps(r[1][j], r[3][j]),
                        ];
                        for (a, val) in col.into_iter().enumerate() {
                            _mm256_storeu_ps(o.add((a * 4 + j) * c * tiles + at), val);
                        }
                    }
                }
            }
        }
    }

    /// The output transform `Aᵀ M A` of every tile of tile rows `ty0..ty1` (`tx` per row),
    /// on `nb` blocks of 8 channels in the lanes, plus the bias `bv`: tile `i`'s products
    /// are `m[ξ·span + i·gl ..]`, and its outputs inside the `oh × ow` image go to
    /// `buf[(position − r0)·gl ..]`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)] // the transforms read clearest as matrix indices
    pub(super) unsafe fn output(
        m: &[f32],
        span: usize,
        buf: &mut [f32],
        (ty0, ty1, tx): (usize, usize, usize),
        (oh, ow, r0): (usize, usize, usize),
        (nb, bv): (usize, &[f32; 2 * L]),
    ) {
        let gl = nb * L;
        let (mp, bp) = (m.as_ptr(), buf.as_mut_ptr());
        for (i, (t, x)) in (ty0..ty1)
            .flat_map(|t| (0..tx).map(move |x| (t, x)))
            .enumerate()
        {
            for k in 0..nb {
                let ld = |xi: usize| _mm256_loadu_ps(mp.add(xi * span + i * gl + k * L));
                // Rows of Aᵀ over the 4 rows of M (per column), then over the columns.
                let mut s = [[_mm256_setzero_ps(); 4]; 2];
                for j in 0..4 {
                    let (a, b, c, d) = (ld(j), ld(4 + j), ld(8 + j), ld(12 + j));
                    s[0][j] = _mm256_add_ps(_mm256_add_ps(a, b), c);
                    s[1][j] = _mm256_sub_ps(_mm256_sub_ps(b, c), d);
                }
                let bias = _mm256_loadu_ps(bv.as_ptr().add(k * L));
                for (a, s) in s.iter().enumerate() {
                    let oy = 2 * t + a;
                    if oy >= oh {
                        continue;
                    }
                    let y0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s[0], s[1]), s[2]), bias);
                    let y1 = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s[1], s[2]), s[3]), bias);
                    let at = oy * ow + 2 * x - r0;
                    _mm256_storeu_ps(bp.add(at * gl + k * L), y0);
                    if 2 * x + 1 < ow {
                        _mm256_storeu_ps(bp.add((at + 1) * gl + k * L), y1);
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    use super::L;

    pub(super) unsafe fn input(
        _: &[f32],
        _: &mut [f32],
        _: usize,
        _: (usize, usize, usize),
        _: (usize, usize),
    ) {
        unreachable!("the Winograd kernel is only chosen where `fits`")
    }

    pub(super) unsafe fn output(
        _: &[f32],
        _: usize,
        _: &mut [f32],
        _: (usize, usize, usize),
        _: (usize, usize, usize),
        _: (usize, &[f32; 2 * L]),
    ) {
        unreachable!("the Winograd kernel is only chosen where `fits`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(192))]
        /// The kernel against the definition of a 3×3 stride-1 convolution with its epilogue
        /// (f64 sums): both channel-lanes tile shapes with full and partial channel groups,
        /// odd and even output sizes (partial tiles), planes from 1 to 40 wide (one or many
        /// vectors of tiles per row, one or many tasks), uneven pads, serial and parallel,
        /// and a dirty scratch buffer.
        #[test]
        fn winograd_matches_the_definition(
            c in 1usize..20, mg in 1usize..20, h in 1usize..24, w in 1usize..40,
            pt in 0usize..3, pl in 0usize..3, pb in 0usize..3, pr in 0usize..3,
            epilogue in 0usize..8, parallel: bool, seed in 0u64..1000,
        ) {
            let (kh, kw) = (3, 3);
            if !channel_lanes::available() || pt + h + pb < kh || pl + w + pr < kw {
                return Ok(());
            }
            let (oh, ow) = (pt + h + pb - 2, pl + w + pr - 2);
            let g = Geometry { c, h, w, kh, kw, sh: 1, sw: 1, dh: 1, dw: 1, pt, pl, pb, pr, oh, ow };
            let mut rnd = crate::kernels::reference::uniform(seed);
            let (in_len, out_len) = (c * h * w, mg * oh * ow);
            let x: Vec<f32> = (0..in_len).map(|_| rnd()).collect();
            let wt: Vec<f32> = (0..mg * c * 9).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..mg).map(|_| rnd()).collect();
            let r: Vec<f32> = (0..out_len).map(|_| rnd()).collect();
            let (use_b, use_r, relu) = (epilogue & 1 == 1, epilogue & 2 == 2, epilogue & 4 == 4);
            let (bias, res) = (use_b.then_some(&b[..]), use_r.then_some(&r[..]));
            let want = super::super::reference::conv(&g, 1, mg, &x, &wt, bias, res, relu);
            let packed = pack_weights(mg, c, &wt);
            // NaN until written: an output the kernel skipped fails the comparison below.
            let mut y = vec![std::mem::MaybeUninit::new(f32::NAN); out_len];
            let mut scratch = vec![f32::NAN; 40 * c * (h + 8) * (w + 48)];
            let plan = Plan::new(&g, mg);
            plan.run(&packed, &x, &mut y, bias, res, relu, &mut scratch, parallel);
            // SAFETY: every element was initialised (to NaN) before the call.
            let got: Vec<f32> = y.iter().map(|v| unsafe { v.assume_init() }).collect();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                proptest::prop_assert!(
                    (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()) * (c * 9) as f64,
                    "output {i}: {g} vs {w}"
                );
            }
        }
    }
}
