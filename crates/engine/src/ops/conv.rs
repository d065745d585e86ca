//! Conv (1-D and 2-D, groups, dilations, strides, pads, auto_pad) with an optional residual add
//! and ReLU epilogue (see `fused_conv`), on one of five kernels chosen per layer by measured
//! speed ([`Kernel::Auto`]). On CPUs with AVX2 but not AVX-512: Winograd F(2×2, 3×3)
//! (`kernels::winograd`) for 3×3 stride-1 undilated layers of 32 to 256 input channels, the
//! channel-lanes kernel of `kernels::channel_lanes` (output channels in the vector lanes) for
//! the others, but 1×1 stride-1 unpadded ones (a GEMM on the input itself) and grouped layers
//! of fewer than 8 channels per group. With AVX-512: the direct kernel of `kernels::direct`
//! (no patch matrix, epilogue in registers) for most layers, Winograd for 3×3 layers of 64 to
//! 128 channels on planes of 28×28 or more (`winograd::beats_direct`). Elsewhere: the column-shift
//! matrix of `kernels::rowshift` + one GEMM per kernel row, or im2col + one GEMM (large
//! weights, small planes with more than 64 channels 3×3, CPUs without AVX2). On the GEMM
//! routes the output starts as bias (+ residual) and the GEMM accumulates into it; planes of
//! 14×14 or fewer outputs put several samples side by side in one GEMM on the col2im gradient
//! (`batched_gemm`). The input
//! gradient at stride 1 is itself a convolution (of dY with the flipped, channel-swapped
//! kernel), so it runs on the same kernels as the forward pass; other strides use
//! col2im(Wᵀ·dY). Constant weights are packed and flipped once at load time ([`Prepared`]).
//! Samples run in parallel when the batch is at least the thread count, otherwise each kernel
//! splits its own work across threads; the direct kernel reading in place takes the whole
//! batch in one call and splits its register tiles over the threads itself.
//! Patch matrices and padded inputs live in a per-thread scratch buffer reused by every
//! convolution.

use std::borrow::Cow;
use std::sync::Arc;

use rayon::prelude::*;

use super::fused_conv::relu_mask;
use super::{backward_replicated, impl_any, input_f32, Copies, Op};
use crate::error::{shape_err, Result};
use crate::kernels::im2col::{col2im_at, col2im_rows, im2col, Geometry};
use crate::kernels::sparse_grad::{self, Layout, Pattern, Rows};
use crate::kernels::{channel_lanes, direct, rowshift, winograd, OutPtr};
use crate::tensor::Tensor;
use faultline_matmul::{matmul, matmul_into, View};

thread_local! {
    /// The patch matrix of the last convolution this thread ran: kept so that every
    /// convolution after the first reuses it instead of allocating and zeroing its own.
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer. The buffer is taken out while `f` runs, so a
/// re-entrant call (rayon work-stealing while this thread waits) just starts an empty one.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    let mut buf = SCRATCH.with(|s| s.take());
    let r = f(&mut buf);
    SCRATCH.with(|s| s.set(buf));
    r
}

/// Runs `f(sample, its output, scratch)` for each `len`-element sample of `out`, in parallel
/// when `parallel` (on the small-batch team when there is one, see `crate::team`).
fn each_sample<T: Send>(
    out: &mut [T],
    len: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T], &mut Vec<f32>) + Sync,
) {
    if parallel && len > 0 {
        crate::team::for_each_chunk(out, len, |s, y| with_scratch(|col| f(s, y, col)));
    } else {
        with_scratch(|col| {
            for (s, y) in out.chunks_mut(len).enumerate() {
                f(s, y, col);
            }
        });
    }
}

/// Output planes of at most this many positions (14×14) take several samples per GEMM on the
/// col2im input-gradient route ([`batched_gemm`]): per sample, its bands of a 7×7 plane are a
/// few columns wide (`imagenet_layers --grad`, 512 → 512 channels 3×3 stride 2, 8 samples, 2
/// threads: 76.1 and 49.7 GMAC/s batched against 44.4 and 54.1 per sample). [U]: thresholds
/// from ResNet-18/50 at 224 px, 2 threads.
///
/// The forward pass batched them too until 2026-12-03. It now runs one GEMM per sample on every
/// plane, split over the team where the batch is smaller than the thread count (by rows where
/// there are more output channels than positions, [`team_matmul`]): so a sample's outputs
/// there no longer depend on the batch size or on the thread count, and no product buffer is
/// copied out. `imagenet_layers`, 8 samples, 2 threads, Zen 4, alternated: 1024 → 256 channels
/// 1×1 on 14×14 75.6 and 78.7 GMAC/s batched against 92.7 and 97.3 per sample, 2048 → 512 on
/// 7×7 74.4 and 75.6 against 83.2 and 84.1, 512 → 512 3×3 stride 2 to 7×7 63.2 and 66.1
/// against 63.8 and 76.0; `faultline bench --profile` on ResNet-50, batch 8, two rounds
/// alternated: its 14×14 1×1 layers 37.9, 32.9 → 29.0, 23.9 ms (1024 → 256) and 48.4, 42.5 →
/// 37.6, 31.5 ms (256 → 1024), all convolutions' forward 479, 432 → 464, 402 ms.
const BATCHED_PLANE: usize = 196;
/// Bytes of one band of the patch matrix on the banded col2im route (see
/// [`Conv::input_grad_col2im`]): a quarter of a Zen 4 core's 1 MiB L2, 3 of the stem's 112
/// output rows. Bands of 128 KiB to 1 MiB measured alike (`imagenet_layers --grad`, stem,
/// banded / unbanded, medians of 9 rounds, two passes: 1.07 and 1.07 at 128 KiB, 1.08 and
/// 1.08 at 256 KiB, 1.12 and 1.00 at 512 KiB, 1.08 and 1.10 at 1 MiB).
const COL2IM_BAND: usize = 256 << 10;

/// Columns of one batched product: 8 samples of a 14×14 plane, 32 of a 7×7 one.
const BATCH_COLUMNS: usize = 1568;

/// `P_s = A[m × k] · B_s[k × cols]` for every sample `s < n`, several samples per GEMM: sample
/// `j` of a chunk fills columns `j·cols..(j+1)·cols` of one `k × (chunk·cols)` matrix (`fill(s,
/// its first column, row pitch)`), one product runs on all threads, and `emit(s, its first
/// column of P, row pitch)` takes each sample's part, the chunk's samples in parallel (as the
/// product, on the team when there is one).
fn batched_gemm(
    (n, cols, m, k): (usize, usize, usize, usize),
    a: View,
    fill: impl Fn(usize, &mut [f32], usize),
    emit: impl Fn(usize, &[f32], usize) + Sync,
) {
    let per = (BATCH_COLUMNS / cols).clamp(1, n);
    let mut prod = vec![0.0f32; m * per * cols];
    with_scratch(|b| {
        for s0 in (0..n).step_by(per) {
            let nc = per.min(n - s0);
            let pitch = nc * cols;
            b.resize(b.len().max(k * pitch), 0.0);
            for j in 0..nc {
                fill(s0 + j, &mut b[j * cols..k * pitch], pitch);
            }
            let b = View::rows(&b[..k * pitch], pitch);
            team_matmul(
                m,
                pitch,
                k,
                &mut prod[..m * pitch],
                pitch,
                false,
                a,
                b,
                true,
            );
            let prod = &prod[..m * pitch];
            crate::team::for_each(nc, |j| emit(s0 + j, &prod[j * cols..], pitch));
        }
    });
}

/// Output columns per task of [`team_matmul`]'s column blocks, at least.
const TEAM_COLUMNS: usize = 16;
/// Output rows per task of [`team_matmul`]'s row blocks, at least.
const TEAM_ROWS: usize = 32;

/// Sums longer than this, in products of at most 64 × 64 outputs, are blocked differently by
/// the gemm crate (0.19: `k.min(512)` there, `kernel_params` above), so a column block must
/// stay on the same side of that size as the whole product to sum in the same order.
const GEMM_SMALL: (usize, usize) = (512, 64);

/// [`matmul`] of a product that may be split over the threads (`parallel`). On the small-batch
/// team (`crate::team`) it runs as column blocks (row blocks where there are more rows than
/// columns), one task each, every task writing its block of `c` in place: the gemm crate's
/// own split goes through rayon, where the team's leader sleeps until the pool is done (a 32 →
/// 64 channel stride-2 layer on an 8×8 plane, ResNet-20's, then on this route, took 0.52 ms
/// per forward pass at batch 1 under load against 0.067 ms on the team). Each block sums
/// every output in the same order as the whole product (blocks keep the whole product's
/// sides of [`GEMM_SMALL`] and of the few-row kernel's rows), so the result does not depend
/// on the split. Elsewhere it is [`matmul`] itself.
///
/// Until 2026-12-03 each column block went into a buffer of the task's own and was then
/// copied into `c` (and, accumulating, copied out of it first): two more passes over the
/// output, 3.2 MB a layer for ResNet-50's 56×56 1×1 ones at batch 1; and column blocks of a
/// product with more rows than columns each read all of `a` (the weights: 4 MiB for a 512 →
/// 2048 1×1 layer on 7×7, three times over).
#[allow(clippy::too_many_arguments)]
fn team_matmul(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
    a: View,
    b: View,
    parallel: bool,
) {
    if !parallel || m == 0 || k == 0 || !crate::team::leading() {
        return matmul(m, n, k, c, c_rs, accumulate, a, b, parallel);
    }
    let (long, side) = GEMM_SMALL;
    let threads = rayon::current_num_threads();
    // More rows than columns (a small plane's many output channels, ResNet-50's 7×7 and 14×14
    // layers at batch 1): blocks of rows, each task reading only its rows of `a` (the
    // weights), where column blocks would each read all of it. The blocks keep the whole
    // product's sides of `GEMM_SMALL` and of `skinny::MAX_ROWS` (the kernel `matmul` picks,
    // which sums in its own order).
    let few = faultline_matmul::skinny::MAX_ROWS;
    let least = if m > few { few + 1 } else { TEAM_ROWS };
    let mut row_tasks = (2 * threads).min(m / least);
    if k > long && n <= side && m > side {
        row_tasks = row_tasks.min(m / (side + 1));
    }
    let by_rows = m > n && row_tasks >= 2;
    let tasks = if by_rows {
        row_tasks
    } else if k > long && m <= side && n > side {
        // Widths stay above `side` with the edges rounded down to whole cache lines.
        (2 * threads).min(n / TEAM_COLUMNS).min(n / (side + 17))
    } else {
        (2 * threads).min(n / TEAM_COLUMNS)
    };
    if tasks < 2 {
        // Serially on the leader: rayon would put it to sleep.
        return matmul(m, n, k, c, c_rs, accumulate, a, b, false);
    }
    assert!(
        (m - 1) * c_rs + n <= c.len() && c_rs >= n,
        "matmul output view out of bounds"
    );
    let out = OutPtr(c.as_mut_ptr());
    // Column block edges on whole cache lines (16 floats), so that no two tasks write one line.
    let edge = |t: usize| {
        if t == tasks {
            n
        } else {
            t * n / tasks / 16 * 16
        }
    };
    crate::team::for_each(tasks, |t| {
        let ((i0, i1), (j0, j1)) = if by_rows {
            ((t * m / tasks, (t + 1) * m / tasks), (0, n))
        } else {
            ((0, m), (edge(t), edge(t + 1)))
        };
        // SAFETY: rows `i0..i1`, columns `j0..j1` of `c` lie inside it (asserted above) and
        // belong to this task alone; nothing else reads or writes `c` during the loop, and it
        // is a buffer of its own (exclusively borrowed), apart from `a` and `b`.
        unsafe {
            matmul_into(
                i1 - i0,
                j1 - j0,
                k,
                out.get().add(i0 * c_rs + j0),
                c_rs,
                accumulate,
                a.at(i0, 0),
                b.at(0, j0),
            )
        };
    });
}

/// ONNX `auto_pad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoPad {
    /// Use the explicit `pads`.
    #[default]
    NotSet,
    /// Output size ceil(in / stride), extra padding at the end.
    SameUpper,
    /// Output size ceil(in / stride), extra padding at the start.
    SameLower,
    /// No padding.
    Valid,
}

/// A sliding-window sweep over the two spatial dimensions, shared by Conv and the pools.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Strides (default 1).
    pub strides: [usize; 2],
    /// Dilations (default 1).
    pub dilations: [usize; 2],
    /// Explicit pads: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Automatic padding rule.
    pub auto_pad: AutoPad,
    /// Pools only: round the output size up.
    pub ceil_mode: bool,
}

impl Window {
    /// Resolves the sweep over a `c × h × w` input into a geometry.
    pub(crate) fn geometry(
        &self,
        op: &'static str,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<Geometry> {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.strides;
        let [dh, dw] = self.dilations;
        if sh == 0 || sw == 0 || dh == 0 || dw == 0 || kh == 0 || kw == 0 {
            return Err(shape_err(
                op,
                "kernel, strides and dilations must be positive",
            ));
        }
        let (ekh, ekw) = (dh * (kh - 1) + 1, dw * (kw - 1) + 1);
        let [mut pt, mut pl, mut pb, mut pr] = self.pads;
        match self.auto_pad {
            AutoPad::NotSet => {}
            AutoPad::Valid => [pt, pl, pb, pr] = [0; 4],
            AutoPad::SameUpper | AutoPad::SameLower => {
                let total = |n: usize, s: usize, ek: usize| {
                    ((n.div_ceil(s) - 1) * s + ek).saturating_sub(n)
                };
                let (th, tw) = (total(h, sh, ekh), total(w, sw, ekw));
                let upper = self.auto_pad == AutoPad::SameUpper;
                let (small_h, small_w) = (th / 2, tw / 2);
                (pt, pb) = if upper {
                    (small_h, th - small_h)
                } else {
                    (th - small_h, small_h)
                };
                (pl, pr) = if upper {
                    (small_w, tw - small_w)
                } else {
                    (tw - small_w, small_w)
                };
            }
        }
        let out = |n: usize, begin: usize, total: usize, ek: usize, s: usize| -> Option<usize> {
            let span = (n + total).checked_sub(ek)?;
            Some(if self.ceil_mode {
                let o = span.div_ceil(s) + 1;
                // The last window must start inside the input or the leading padding
                // (the rule PyTorch and ONNX Runtime apply).
                if o > 1 && (o - 1) * s >= n + begin {
                    o - 1
                } else {
                    o
                }
            } else {
                span / s + 1
            })
        };
        let oh = out(h, pt, pt + pb, ekh, sh);
        let ow = out(w, pl, pl + pr, ekw, sw);
        match (oh, ow) {
            (Some(oh), Some(ow)) if oh > 0 && ow > 0 => Ok(Geometry {
                c,
                h,
                w,
                kh,
                kw,
                sh,
                sw,
                dh,
                dw,
                pt,
                pl,
                pb,
                pr,
                oh,
                ow,
            }),
            _ => Err(shape_err(
                op,
                format!("kernel {kh}x{kw} (dilation {dh}x{dw}) does not fit input {h}x{w} with pads {:?}", [pt, pl, pb, pr]),
            )),
        }
    }
}

/// The packed weights `prepared` at load time, or else packed now by `pack`, per group of
/// `ws` (split into `groups` equal parts).
fn packed_or<'a>(
    prepared: Option<&'a [Vec<f32>]>,
    groups: usize,
    ws: &[f32],
    pack: impl Fn(&[f32]) -> Vec<f32>,
) -> Cow<'a, [Vec<f32>]> {
    match prepared {
        Some(p) => Cow::Borrowed(p),
        None => ws.chunks(ws.len() / groups).map(pack).collect(),
    }
}

/// Whether the channel-lanes and Winograd kernels come before the others: where the CPU has
/// AVX2 + FMA but not the direct kernel's AVX-512 (where it has, the direct kernel's 16-lane
/// tiles measured faster than GEMM on most layers; these two have not been measured there).
fn lanes_first() -> bool {
    !direct::available() && channel_lanes::available()
}

/// Which kernel computes a convolution's products (the proptests run each one explicitly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// The fastest that applies: where the channel-lanes kernels come first, Winograd where
    /// [`winograd::applies`], else the channel-lanes kernel where [`channel_lanes::applies`];
    /// else the direct kernel where [`direct::applies`], else the
    /// column-shift matrix where [`rowshift::applies`], else im2col (or the input itself for
    /// an unpadded stride-1 1×1 kernel).
    Auto,
    /// The direct SIMD kernel wherever the CPU has it.
    Direct,
    /// The channel-lanes kernel wherever the CPU has AVX2 + FMA.
    ChannelLanes,
    /// Winograd F(2×2, 3×3) wherever [`winograd::fits`], else as [`Kernel::ChannelLanes`].
    Winograd,
    /// Full im2col + one GEMM per sample and group.
    Im2col,
    /// The column-shift matrix + one GEMM per kernel row, wherever [`rowshift::fits`].
    RowShift,
    /// Input gradients only: the sparse route ([`sparse_grad`]) for every sample of an
    /// ungrouped convolution, however dense its gradient (forward passes: as `Auto`).
    Sparse,
}

/// 2-D convolution `y[n,m] = b[m] + Σ_c W[m,c] ⋆ x[n,c]` (1-D inputs are treated as height 1).
#[derive(Debug, Clone)]
pub struct Conv {
    /// Window geometry.
    pub window: Window,
    /// Number of groups (input and output channels split evenly).
    pub group: usize,
    /// The weights rearranged at load time, when they are a graph constant.
    pub(crate) prepared: Option<Arc<Prepared>>,
}

/// A convolution's weights rearranged once, at load time (the `prepare_weights` pass), instead
/// of on every call: at batch 1 on WideResNet-16-4 the per-call packing and flipping took 16 %
/// of the time.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The shape of the weights this was made from and the group count; a call with other
    /// weights or groups ignores it.
    shape: Vec<usize>,
    group: usize,
    /// The direct kernel's packing, per group (None where the kernel does not run).
    direct: Option<Vec<Vec<f32>>>,
    /// The channel-lanes kernel's packing, per group, where it will run (see
    /// [`Conv::lanes_route`]).
    lanes: Option<Vec<Vec<f32>>>,
    /// The Winograd kernel's transformed weights, per group, where it will run.
    winograd: Option<Vec<Vec<f32>>>,
    /// The input-gradient convolution's weights (flipped, channel axes swapped), prepared too.
    transposed: Option<(Tensor, Arc<Prepared>)>,
    /// The direct kernel's plan for the last geometry it ran on.
    plan: PlanCache,
}

/// The direct kernel's [`direct::Plan`] for one geometry (and, where it stacks the batch's
/// planes, one batch size), made on first use and kept: a model runs each layer on one
/// geometry, and working out the plan's lane masks on every call took 4 % of a batch-1
/// ResNet-20 pass (`perf`, 2 threads).
#[derive(Default)]
struct PlanCache(std::sync::Mutex<Option<Arc<direct::Plan>>>);

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlanCache")
    }
}

impl PlanCache {
    /// The plan for `mg` output channels over `geo`, for calls on `n` samples at once.
    fn get(&self, geo: &Geometry, mg: usize, n: usize) -> Arc<direct::Plan> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(p) if p.fits(geo, mg, n) => Arc::clone(p),
            _ => {
                let p = Arc::new(direct::Plan::new(geo, mg, n));
                *slot = Some(Arc::clone(&p));
                p
            }
        }
    }
}

impl Conv {
    /// A convolution over `window` with `group` groups.
    pub fn new(window: Window, group: usize) -> Self {
        Conv {
            window,
            group,
            prepared: None,
        }
    }

    /// This convolution with its constant weights `w` prepared.
    pub(crate) fn with_prepared(&self, w: &Tensor) -> Result<Conv> {
        let wt = self.transposed_weights(w)?;
        let inner = Prepared {
            shape: wt.shape().to_vec(),
            // The input-gradient convolution is built with the resolved group count.
            group: self.group.max(1),
            direct: self.pack_direct(&wt),
            lanes: self.pack_lanes(&wt),
            winograd: self.pack_winograd(&wt),
            transposed: None,
            plan: PlanCache::default(),
        };
        let prepared = Prepared {
            shape: w.shape().to_vec(),
            group: self.group,
            direct: self.pack_direct(w),
            lanes: self.pack_lanes(w),
            winograd: self.pack_winograd(w),
            transposed: Some((wt, Arc::new(inner))),
            plan: PlanCache::default(),
        };
        Ok(Conv {
            prepared: Some(Arc::new(prepared)),
            ..self.clone()
        })
    }

    /// The preparation, if it was made from weights of `w`'s shape.
    fn prepared_for(&self, w: &Tensor) -> Option<&Prepared> {
        self.prepared
            .as_deref()
            .filter(|p| p.shape == w.shape() && p.group == self.group)
    }

    /// The direct kernel's packing of `w[M × C/g × kh × kw]` per group, where the kernel runs
    /// and the weights are small enough (and the kernel more than 1×1) for it to be chosen:
    /// up to [`direct::MAX_WEIGHTS`], or [`direct::MAX_WEIGHTS_STACKED`] for an ungrouped
    /// stride-1 convolution, whose batches may stack their planes (the batch size, which
    /// decides, is not known yet).
    fn pack_direct(&self, w: &Tensor) -> Option<Vec<Vec<f32>>> {
        let s = w.shape();
        let g = self.group.max(1);
        let isa = direct::isa()?;
        if s.len() < 3 || !s[0].is_multiple_of(g) {
            return None;
        }
        let (mg, c, taps) = (s[0] / g, s[1], s[2..].iter().product::<usize>());
        let per = mg * c * taps;
        // 1×1 layers never take it (see `direct::applies`).
        let may_stack = g == 1 && self.window.strides == [1, 1];
        let max = if may_stack {
            direct::MAX_WEIGHTS_STACKED
        } else {
            direct::MAX_WEIGHTS
        };
        (taps > 1 && per > 0 && per <= max).then(|| {
            w.fs()
                .chunks(per)
                .map(|wg| direct::pack_weights(isa, mg, c, taps, wg))
                .collect()
        })
    }

    /// Whether, with weights of shape `s`, [`Kernel::Auto`] takes Winograd (`Some(true)`) or
    /// the channel-lanes kernel (`Some(false)`) on a CPU where they come first, as far as the
    /// attributes tell (None: neither, or not known before the input's shape).
    fn lanes_route(&self, s: &[usize]) -> Option<bool> {
        let g = self.group.max(1);
        if !lanes_first() || s.len() < 3 || !s[0].is_multiple_of(g) || s.contains(&0) {
            return None;
        }
        let (mg, c) = (s[0] / g, s[1]);
        let kernel = if s.len() == 4 {
            [s[2], s[3]]
        } else {
            [1, s[2]]
        };
        let win = &self.window;
        if winograd::applies_to(c, kernel, win.strides, win.dilations) {
            return Some(true);
        }
        let unpadded = win.pads == [0; 4]
            && matches!(
                win.auto_pad,
                AutoPad::NotSet | AutoPad::Valid | AutoPad::SameUpper
            );
        let identity = kernel == [1, 1] && win.strides == [1, 1] && unpadded;
        (!identity && channel_lanes::fills_lanes(mg, g)).then_some(false)
    }

    /// The channel-lanes kernel's packing of `w[M × C/g × kh × kw]` per group, where that
    /// kernel will run.
    fn pack_lanes(&self, w: &Tensor) -> Option<Vec<Vec<f32>>> {
        let s = w.shape();
        (!self.lanes_route(s)?).then(|| {
            let (mg, c) = (s[0] / self.group.max(1), s[1]);
            let taps = s[2..].iter().product::<usize>();
            w.fs()
                .chunks(mg * c * taps)
                .map(|wg| channel_lanes::pack_weights(mg, c, taps, wg))
                .collect()
        })
    }

    /// The Winograd kernel's transformed weights of `w[M × C/g × 3 × 3]` per group, where that
    /// kernel will run.
    fn pack_winograd(&self, w: &Tensor) -> Option<Vec<Vec<f32>>> {
        let s = w.shape();
        let g = self.group.max(1);
        let win = &self.window;
        // On AVX-512 CPUs, where the plane size (unknown until the first call) may make
        // Winograd the faster kernel (see `winograd::beats_direct`).
        let over_direct = direct::available()
            && s.len() == 4
            && s[0].is_multiple_of(g)
            && winograd::applies_to(s[1], [s[2], s[3]], win.strides, win.dilations)
            && winograd::beats_direct_at(s[1]);
        (self.lanes_route(s) == Some(true) || over_direct).then(|| {
            let (mg, c) = (s[0] / g, s[1]);
            w.fs()
                .chunks(mg * c * 9)
                .map(|wg| winograd::pack_weights(mg, c, wg))
                .collect()
        })
    }

    /// `W'[g·cg + c, m, i, j] = W[g·mg + m, c, kh−1−i, kw−1−j]`: the weights of the
    /// convolution that computes the stride-1 input gradient.
    fn transposed_weights(&self, w: &Tensor) -> Result<Tensor> {
        let s = w.shape();
        let g = self.group.max(1);
        if !(s.len() == 3 || s.len() == 4) || !s[0].is_multiple_of(g) {
            return Err(shape_err("Conv", format!("weight {s:?} for group={g}")));
        }
        let (mg, cg) = (s[0] / g, s[1]);
        let (kh, kw) = if s.len() == 3 {
            (1, s[2])
        } else {
            (s[2], s[3])
        };
        let ws = w.fs();
        let mut wt = vec![0.0f32; ws.len()];
        for gi in 0..g {
            for m in 0..mg {
                for c in 0..cg {
                    let src = ((gi * mg + m) * cg + c) * kh * kw;
                    let dst = ((gi * cg + c) * mg + m) * kh * kw;
                    for i in 0..kh {
                        for j in 0..kw {
                            wt[dst + (kh - 1 - i) * kw + (kw - 1 - j)] = ws[src + i * kw + j];
                        }
                    }
                }
            }
        }
        let mut shape = s.to_vec();
        shape[0] = g * cg;
        shape[1] = mg;
        Ok(Tensor::f32(shape, wt))
    }
}

struct Dims {
    n: usize,
    m: usize,
    cg: usize,
    mg: usize,
    geo: Geometry,
    out_shape: Vec<usize>,
}

impl Conv {
    fn dims(&self, x: &Tensor, w: &Tensor) -> Result<Dims> {
        self.dims_of(x.shape(), w)
    }

    fn dims_of(&self, xs: &[usize], w: &Tensor) -> Result<Dims> {
        let ws = w.shape();
        let one_d = xs.len() == 3;
        if !(xs.len() == 4 || one_d) || ws.len() != xs.len() {
            return Err(shape_err(
                "Conv",
                format!("only 1-D and 2-D convolutions are supported: input {xs:?}, weight {ws:?}"),
            ));
        }
        let (n, c, h, wd) = if one_d {
            (xs[0], xs[1], 1, xs[2])
        } else {
            (xs[0], xs[1], xs[2], xs[3])
        };
        let (m, cg, kh, kw) = if one_d {
            (ws[0], ws[1], 1, ws[2])
        } else {
            (ws[0], ws[1], ws[2], ws[3])
        };
        let g = self.group.max(1);
        if [n, c, h, wd, m, cg, kh, kw].contains(&0) {
            return Err(shape_err(
                "Conv",
                format!("empty input {xs:?} or weight {ws:?}"),
            ));
        }
        if c % g != 0 || m % g != 0 || c / g != cg {
            return Err(shape_err(
                "Conv",
                format!("input {xs:?} and weight {ws:?} do not agree with group={g}"),
            ));
        }
        let mut win = self.window.clone();
        // ONNX's Conv has no ceil_mode (pools do): an output window must fit its padded input.
        win.ceil_mode = false;
        if one_d {
            win.kernel = [1, kw];
        } else {
            win.kernel = [kh, kw];
        }
        let geo = win.geometry("Conv", cg, h, wd)?;
        let out_shape = if one_d {
            vec![n, m, geo.ow]
        } else {
            vec![n, m, geo.oh, geo.ow]
        };
        Ok(Dims {
            n,
            m,
            cg,
            mg: m / g,
            geo,
            out_shape,
        })
    }
}

impl Conv {
    /// The dimensions of a backward pass with output gradient `grad`, the group count and the
    /// per-sample input and output lengths; an error when `grad` does not fit the output.
    fn backward_dims(
        &self,
        x_shape: &[usize],
        w: &Tensor,
        grad: &[f32],
    ) -> Result<(Dims, usize, usize, usize)> {
        let d = self.dims_of(x_shape, w)?;
        let (geo, g) = (d.geo, self.group.max(1));
        let (in_len, out_len) = (g * d.cg * geo.h * geo.w, d.m * geo.cols());
        if grad.len() != d.n * out_len {
            return Err(shape_err(
                "Conv",
                format!(
                    "gradient of {} values for output {:?}",
                    grad.len(),
                    d.out_shape
                ),
            ));
        }
        Ok((d, g, in_len, out_len))
    }

    /// The output shape for input `x` and weight `w`.
    pub(crate) fn output_shape(&self, x: &Tensor, w: &Tensor) -> Result<Vec<usize>> {
        Ok(self.dims(x, w)?.out_shape)
    }

    /// `y = act(conv(x, W) + b + r)`: the convolution with its epilogue applied per sample
    /// while the sample's output is still in cache. `residual` must have the output's shape.
    pub(crate) fn forward_fused(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
        relu: bool,
    ) -> Result<Tensor> {
        self.forward_raw(x.shape(), x.fs(), w, bias, residual, relu, Kernel::Auto)
    }

    /// [`Conv::forward_fused`] with a chosen kernel (for the tests and `bench_support`).
    pub(crate) fn forward_with(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
        relu: bool,
        kernel: Kernel,
    ) -> Result<Tensor> {
        self.forward_raw(x.shape(), x.fs(), w, bias, residual, relu, kernel)
    }

    /// [`Conv::forward_fused`] on an input given as its shape and elements.
    #[allow(clippy::too_many_arguments)]
    fn forward_raw(
        &self,
        x_shape: &[usize],
        xs: &[f32],
        w: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
        relu: bool,
        kernel: Kernel,
    ) -> Result<Tensor> {
        let kernel = match kernel {
            Kernel::Sparse => Kernel::Auto,
            k => k,
        };
        let d = self.dims_of(x_shape, w)?;
        let bias = match bias {
            Some(b) if b.len() == d.m && b.is_f32() => Some(b.fs()),
            Some(b) => {
                return Err(shape_err(
                    "Conv",
                    format!(
                        "{} bias {:?} for {} output channels",
                        b.dtype(),
                        b.shape(),
                        d.m
                    ),
                ))
            }
            None => None,
        };
        let (geo, g) = (d.geo, self.group.max(1));
        let (in_len, out_len) = (g * d.cg * geo.h * geo.w, d.m * geo.cols());
        if let Some(r) = residual {
            if r.shape() != d.out_shape.as_slice() {
                return Err(shape_err(
                    "Conv",
                    format!("residual {:?} for output {:?}", r.shape(), d.out_shape),
                ));
            }
        }
        let residual = residual.map(|r| r.fs());
        debug_assert_eq!(xs.len(), d.n * in_len);
        let k = geo.rows();
        let par_samples = d.n >= rayon::current_num_threads();
        let ws = w.fs();
        let use_winograd = match kernel {
            Kernel::Auto => {
                lanes_first() && winograd::applies(&geo)
                    || direct::available() && winograd::beats_direct(&geo)
            }
            Kernel::Winograd => winograd::fits(&geo),
            _ => false,
        };
        let use_lanes = !use_winograd
            && match kernel {
                Kernel::Auto => lanes_first() && channel_lanes::applies(&geo, d.mg, g),
                Kernel::ChannelLanes | Kernel::Winograd => channel_lanes::available(),
                _ => false,
            };
        let use_direct = !use_winograd
            && !use_lanes
            && match kernel {
                Kernel::Auto => direct::applies(&geo, d.mg, g, d.n),
                Kernel::Direct => direct::available(),
                _ => false,
            };
        // The SIMD kernels write every output once, epilogue included, into `out`'s spare
        // capacity: `per_sample(run)` calls `run(group, x, y, bias, residual, scratch)` for
        // each sample and group.
        let prepared = self.prepared_for(w);
        let mut out: Vec<f32> = Vec::with_capacity(d.n * out_len);
        let gl = d.mg * geo.cols();
        type Run<'a> = dyn Fn(
                usize,
                &[f32],
                &mut [std::mem::MaybeUninit<f32>],
                Option<&[f32]>,
                Option<&[f32]>,
                &mut Vec<f32>,
            ) + Sync
            + 'a;
        let per_sample = |spare: &mut [std::mem::MaybeUninit<f32>], run: &Run| {
            let one = |s: usize, yi: &mut [std::mem::MaybeUninit<f32>], col: &mut Vec<f32>| {
                let xi = &xs[s * in_len..(s + 1) * in_len];
                for (gi, yg) in yi.chunks_mut(gl).enumerate() {
                    let xg = &xi[gi * d.cg * geo.h * geo.w..(gi + 1) * d.cg * geo.h * geo.w];
                    let bg = bias.map(|b| &b[gi * d.mg..(gi + 1) * d.mg]);
                    let at = s * out_len + gi * gl;
                    let rg = residual.map(|r| &r[at..at + gl]);
                    run(gi, xg, yg, bg, rg, col);
                }
            };
            each_sample(spare, out_len, par_samples, one);
        };
        let taps = geo.kh * geo.kw;
        let spare = &mut out.spare_capacity_mut()[..d.n * out_len];
        if use_winograd {
            let packed = packed_or(prepared.and_then(|p| p.winograd.as_deref()), g, ws, |wg| {
                winograd::pack_weights(d.mg, d.cg, wg)
            });
            let plan = winograd::Plan::new(&geo, d.mg);
            per_sample(spare, &|gi, x, y, b, r, col| {
                plan.run(&packed[gi], x, y, b, r, relu, col, !par_samples)
            });
        } else if use_lanes {
            let packed = packed_or(prepared.and_then(|p| p.lanes.as_deref()), g, ws, |wg| {
                channel_lanes::pack_weights(d.mg, d.cg, taps, wg)
            });
            let plan = channel_lanes::Plan::new(&geo, d.mg);
            per_sample(spare, &|gi, x, y, b, r, col| {
                plan.run(&packed[gi], x, y, b, r, relu, col, !par_samples)
            });
        } else if use_direct {
            let isa = direct::isa().expect("direct kernel chosen");
            let packed = packed_or(prepared.and_then(|p| p.direct.as_deref()), g, ws, |wg| {
                direct::pack_weights(isa, d.mg, d.cg, taps, wg)
            });
            // Calls take the whole batch where the kernel reads in place, else one sample.
            let batch = if g == 1 { d.n } else { 1 };
            let plan = match prepared {
                Some(p) => p.plan.get(&geo, d.mg, batch),
                None => Arc::new(direct::Plan::new(&geo, d.mg, batch)),
            };
            if g == 1 && plan.in_place() {
                // One call for the whole batch (scratch only for stacked planes; in place
                // nothing else is copied): register tiles may span samples, and the kernel
                // splits its tiles over the threads itself.
                let parallel = rayon::current_num_threads() > 1;
                with_scratch(|scratch| {
                    plan.run(
                        &packed[0], xs, spare, bias, residual, relu, scratch, parallel,
                    )
                });
            } else {
                per_sample(spare, &|gi, x, y, b, r, col| {
                    plan.run(&packed[gi], x, y, b, r, relu, col, !par_samples)
                });
            }
        }
        if use_winograd || use_lanes || use_direct {
            // SAFETY: the kernel's `Plan::run` wrote every element of every sample's output.
            unsafe { out.set_len(d.n * out_len) };
            return Ok(Tensor::f32(d.out_shape, out));
        }
        // Stride-1 kernels more than one row high: the column-shift patch matrix (a third of
        // im2col's for 3×3) with the kernel rows gathered once here.
        let use_rows = match kernel {
            Kernel::Auto => rowshift::applies(&geo),
            Kernel::RowShift => rowshift::fits(&geo),
            _ => false,
        };
        let rows: Option<Vec<Vec<f32>>> = use_rows.then(|| {
            (0..g)
                .map(|gi| {
                    rowshift::gather_kernel_rows(
                        &geo,
                        d.mg,
                        &ws[gi * d.mg * k..(gi + 1) * d.mg * k],
                    )
                })
                .collect()
        });
        let cols = geo.cols();
        let spare = &mut out.spare_capacity_mut()[..d.n * out_len];
        // Every output is `act(start + product)`, where `start` is bias + residual (or what
        // there is of them, or zeros): written just before the product by the thread that runs
        // it (a serial pass over the whole batch's output first left the other threads idle:
        // 2.5 MB a sample at ResNet-50's 56×56 layers).
        // Output row `mi` of sample `s` initialised to its start, returned for the product to
        // be added.
        let start_row = |s: usize, mi: usize, yr: &'_ mut [std::mem::MaybeUninit<f32>]| {
            let bv = bias.map_or(0.0, |b| b[mi]);
            match residual.map(|r| &r[s * out_len + mi * cols..s * out_len + (mi + 1) * cols]) {
                Some(r) if bias.is_some() => {
                    for (y, r) in yr.iter_mut().zip(r) {
                        y.write(r + bv);
                    }
                }
                Some(r) => {
                    for (y, r) in yr.iter_mut().zip(r) {
                        y.write(*r);
                    }
                }
                None => {
                    for y in yr.iter_mut() {
                        y.write(bv);
                    }
                }
            }
            // SAFETY: every element of the row was written just above.
            unsafe { &mut *(yr as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) }
        };
        let one = |s: usize, yu: &mut [std::mem::MaybeUninit<f32>], col: &mut Vec<f32>| {
            for (mi, yr) in yu.chunks_exact_mut(cols).enumerate() {
                start_row(s, mi, yr);
            }
            // SAFETY: every row of the sample's output was initialised just above.
            let yi = unsafe { &mut *(yu as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
            let xi = &xs[s * in_len..(s + 1) * in_len];
            for gi in 0..g {
                let xg = &xi[gi * d.cg * geo.h * geo.w..(gi + 1) * d.cg * geo.h * geo.w];
                if let Some(rows) = &rows {
                    let yg = &mut yi[gi * d.mg * geo.cols()..(gi + 1) * d.mg * geo.cols()];
                    rowshift::conv_rowshift(&geo, d.mg, &rows[gi], xg, yg, col, !par_samples);
                    continue;
                }
                let patches: &[f32] = if geo.is_identity() {
                    xg
                } else {
                    col.resize(k * geo.cols(), 0.0);
                    im2col(&geo, xg, col);
                    col
                };
                let yg = &mut yi[gi * d.mg * geo.cols()..(gi + 1) * d.mg * geo.cols()];
                let wg = &ws[gi * d.mg * k..(gi + 1) * d.mg * k];
                team_matmul(
                    d.mg,
                    geo.cols(),
                    k,
                    yg,
                    geo.cols(),
                    true,
                    View::rows(wg, k),
                    View::rows(patches, geo.cols()),
                    !par_samples,
                );
            }
            if relu {
                for y in yi.iter_mut() {
                    *y = y.max(0.0);
                }
            }
        };
        each_sample(spare, out_len, par_samples, one);
        // SAFETY: `one` wrote every element of every sample's output.
        unsafe { out.set_len(d.n * out_len) };
        Ok(Tensor::f32(d.out_shape, out))
    }

    /// `dx = convᵀ(dy)`: the input gradient. At stride 1 it is itself a convolution, of `dy`
    /// with the kernel flipped and its channel axes swapped, padded by `(kernel extent − 1 −
    /// pad)`: im2col + a GEMM whose inner dimension is `M·kh·kw`, like the forward pass, which
    /// is much faster than the col2im route's GEMM with inner dimension `M` followed by a
    /// scatter-add. Other strides (and pads wider than the kernel) take the col2im route.
    /// `x_shape` is the input's shape (its values are not needed).
    /// `grad` may hold `copies` copies of the batch (copy-major, see `Op::backward_copies`);
    /// the copies of a sample share its sparsity pattern.
    pub(crate) fn input_grad(
        &self,
        x_shape: &[usize],
        w: &Tensor,
        grad: &[f32],
        copies: usize,
    ) -> Result<Tensor> {
        self.input_grad_with(x_shape, w, grad, copies, None, Kernel::Auto)
    }

    /// [`Conv::input_grad`] on a chosen kernel, for the gradient `grad · [relu > 0]` when
    /// `relu` holds the output of a ReLU after this convolution (one copy of the batch).
    /// Samples whose output gradient is mostly zeros (behind max pooling) take the sparse
    /// route ([`sparse_grad`]), which reads the ReLU's mask as it goes; the others the dense
    /// ones.
    pub(crate) fn input_grad_with(
        &self,
        x_shape: &[usize],
        w: &Tensor,
        grad: &[f32],
        copies: usize,
        relu: Option<&[f32]>,
        kernel: Kernel,
    ) -> Result<Tensor> {
        let d = self.dims_of(x_shape, w)?;
        if let Some(dx) = self.input_grad_sparse(x_shape, w, grad, &d, (copies, relu), kernel)? {
            return Ok(dx);
        }
        match relu {
            Some(y) => {
                let masked = relu_mask(grad, y);
                self.input_grad_dense(x_shape, w, &masked, &d, kernel)
            }
            None => self.input_grad_dense(x_shape, w, grad, &d, kernel),
        }
    }

    /// The dense routes of [`Conv::input_grad`].
    fn input_grad_dense(
        &self,
        x_shape: &[usize],
        w: &Tensor,
        grad: &[f32],
        d: &Dims,
        kernel: Kernel,
    ) -> Result<Tensor> {
        let geo = d.geo;
        let (ekh, ekw) = (geo.dh * (geo.kh - 1) + 1, geo.dw * (geo.kw - 1) + 1);
        let transposable = geo.sh == 1
            && geo.sw == 1
            && !geo.is_identity()
            && geo.pt.max(geo.pb) < ekh
            && geo.pl.max(geo.pr) < ekw
            && grad.len() == d.n * d.m * geo.cols();
        // A gradient of at most 3 channels (a grey or colour image's) from 32 or more: the
        // convolution would have 1–3 output channels, too few rows for the direct kernel's
        // register tiles, while Wᵀ·dY has an inner dimension of `m` (`sparse_grad` bench,
        // direct / this route, 8 samples, median [min, max] of 5 rounds, loaded machine: 1→32
        // 3×3 on 28×28 1.17 [1.06, 1.75] with 1 seed and 1.38 [1.30, 1.44] with 9; 3→64 on
        // 32×32 1.19 [1.10, 1.22] and 1.01 [0.94, 1.40]; but 1→16 0.93 / 1.11, 1→6 5×5 0.88 /
        // 0.89 and 3→16 0.78 / 0.79).
        let few_from_many = kernel == Kernel::Auto && geo.c <= 3 && d.mg >= 32;
        if transposable && !few_from_many {
            return self.input_grad_as_conv(x_shape, w, grad, d, kernel);
        }
        // Explicitly chosen, im2col stays unbanded (the tests compare the two).
        self.input_grad_col2im(x_shape, w, grad, kernel != Kernel::Im2col)
    }

    /// The input gradient with the samples whose gradient is sparse enough
    /// ([`Pattern::most`]; all of them under [`Kernel::Sparse`]) on the sparse route and the
    /// others on the dense ones; None where no sample takes it or the convolution is grouped.
    /// The choice is per sample, so a sample's result does not depend on its batch.
    fn input_grad_sparse(
        &self,
        x_shape: &[usize],
        w: &Tensor,
        grad: &[f32],
        d: &Dims,
        (copies, relu): (usize, Option<&[f32]>),
        kernel: Kernel,
    ) -> Result<Option<Tensor>> {
        let geo = d.geo;
        let out_len = d.m * geo.cols();
        let usable = matches!(kernel, Kernel::Auto | Kernel::Sparse)
            && (kernel == Kernel::Sparse || sparse_grad::applies(geo.c, copies))
            && self.group.max(1) == 1
            && copies > 0
            && d.n.is_multiple_of(copies)
            && grad.len() == d.n * out_len
            && relu.is_none_or(|y| y.len() * copies == grad.len());
        if !usable {
            return Ok(None);
        }
        let l = Layout {
            n: d.n / copies,
            copies,
            m: d.m,
            positions: geo.cols(),
        };
        let taps = geo.kh * geo.kw;
        let row = (taps * geo.c).div_ceil(16) * 16;
        let most = match kernel {
            Kernel::Sparse => usize::MAX,
            _ => Pattern::most((d.m, geo.c, taps, l.positions), row),
        };
        let rows = Rows::new(w.fs(), d.m, geo.c, taps);
        let in_len = geo.c * geo.h * geo.w;
        let dense = |sub: Vec<f32>, k: usize| {
            let mut xs = x_shape.to_vec();
            xs[0] = copies * k;
            let dd = self.dims_of(&xs, w)?;
            self.input_grad_dense(&xs, w, &sub, &dd, Kernel::Auto)?
                .into_f32()
        };
        let dx = sparse_grad::run(grad, l, relu, (most, in_len), dense, |i, pat, work, dx| {
            sparse_grad::sample(&geo, l, &rows, grad, pat, i, work, dx)
        })?;
        Ok(dx.map(|dx| Tensor::f32(x_shape.to_vec(), dx)))
    }

    /// The stride-1 input gradient as a convolution (see [`Conv::input_grad`]).
    fn input_grad_as_conv(
        &self,
        x_shape: &[usize],
        w: &Tensor,
        grad: &[f32],
        d: &Dims,
        kernel: Kernel,
    ) -> Result<Tensor> {
        let geo = d.geo;
        let g = self.group.max(1);
        let (ekh, ekw) = (geo.dh * (geo.kh - 1) + 1, geo.dw * (geo.kw - 1) + 1);
        let (kh, kw) = (geo.kh, geo.kw);
        let (wt, prepared) = match self.prepared_for(w).and_then(|p| p.transposed.as_ref()) {
            Some((wt, p)) => (Cow::Borrowed(wt), Some(p.clone())),
            None => (Cow::Owned(self.transposed_weights(w)?), None),
        };
        let t = Conv {
            window: Window {
                kernel: [kh, kw],
                strides: [1, 1],
                dilations: [geo.dh, geo.dw],
                pads: [
                    ekh - 1 - geo.pt,
                    ekw - 1 - geo.pl,
                    ekh - 1 - geo.pb,
                    ekw - 1 - geo.pr,
                ],
                auto_pad: AutoPad::NotSet,
                ceil_mode: false,
            },
            group: g,
            prepared,
        };
        let dx = t.forward_raw(&d.out_shape, grad, &wt, None, None, false, kernel)?;
        debug_assert_eq!(dx.shape(), x_shape);
        Ok(dx)
    }

    /// The input gradient as col2im(Wᵀ·dY) per sample and group (any stride). With `banded`,
    /// a sample's product that outgrows [`COL2IM_BAND`] is done in bands of output rows, from
    /// the last to the first: the GEMM for one band's columns, then their col2im
    /// ([`col2im_rows`]) while the band is still in cache, where the whole patch matrix
    /// (ResNet's 7×7 stride-2 stem at 224 px: 147 × 12,544, 7.0 MiB a sample) would leave it
    /// between the two. Every element gets the same sums in the same order either way (the
    /// GEMM sums each column over the `M` output channels alone; see `col2im_rows` for the
    /// bands' order). `imagenet_layers --grad`, the stem on 8 samples, 2 threads, loaded
    /// 2-core Zen 4, 15 rounds: banded / unbanded speed 1.09 [0.72, 1.38], 17.1–37.8 against
    /// 22.3–29.7 ms a call; in `faultline bench --profile` on ResNet-18 at batch 8 (old and
    /// new builds alternated, 6 rounds) the stem's backward went from 22.1 [20.2, 27.2] to
    /// 19.0 [18.4, 21.4] ms. The GEMM is most of what is left (60 % of the samples in `perf`,
    /// col2im 13 %).
    pub(crate) fn input_grad_col2im(
        &self,
        x_shape: &[usize],
        w: &Tensor,
        grad: &[f32],
        banded: bool,
    ) -> Result<Tensor> {
        let (d, g, in_len, out_len) = self.backward_dims(x_shape, w, grad)?;
        let geo = d.geo;
        let k = geo.rows();
        let mut dx = vec![0.0f32; x_shape.iter().product()];
        let par_samples = d.n >= rayon::current_num_threads();
        let ws = w.fs();
        let cols = geo.cols();
        if g == 1 && d.n > 1 && cols <= BATCHED_PLANE {
            let fill = |s: usize, b: &mut [f32], pitch: usize| {
                let dy = &grad[s * out_len..(s + 1) * out_len];
                for (mi, dr) in dy.chunks_exact(cols).enumerate() {
                    b[mi * pitch..mi * pitch + cols].copy_from_slice(dr);
                }
            };
            let dxp = OutPtr(dx.as_mut_ptr());
            let emit = |s: usize, p: &[f32], pitch: usize| {
                // SAFETY: sample `s`'s gradient lies inside `dx`, and `batched_gemm` emits each
                // sample once, in one task.
                let dxi =
                    unsafe { std::slice::from_raw_parts_mut(dxp.get().add(s * in_len), in_len) };
                if geo.is_identity() {
                    for (r, dr) in dxi.chunks_exact_mut(cols).enumerate() {
                        dr.copy_from_slice(&p[r * pitch..r * pitch + cols]);
                    }
                } else {
                    col2im_at(&geo, p, dxi, pitch);
                }
            };
            batched_gemm((d.n, cols, k, d.mg), View::rows_t(ws, k), fill, emit);
            return Ok(Tensor::f32(x_shape.to_vec(), dx));
        }
        let one = |gi_out: &[f32], dxi: &mut [f32], col: &mut Vec<f32>| {
            for gi in 0..g {
                let dy = &gi_out[gi * d.mg * geo.cols()..(gi + 1) * d.mg * geo.cols()];
                let wg = &ws[gi * d.mg * k..(gi + 1) * d.mg * k];
                let dxg = &mut dxi[gi * d.cg * geo.h * geo.w..(gi + 1) * d.cg * geo.h * geo.w];
                if geo.is_identity() {
                    team_matmul(
                        k,
                        geo.cols(),
                        d.mg,
                        dxg,
                        geo.cols(),
                        false,
                        View::rows_t(wg, k),
                        View::rows(dy, geo.cols()),
                        !par_samples,
                    );
                } else {
                    // Output rows per band (all of them unbanded).
                    let band = if banded {
                        (COL2IM_BAND / (k * geo.ow * 4)).clamp(1, geo.oh)
                    } else {
                        geo.oh
                    };
                    col.resize(k * band * geo.ow, 0.0);
                    for oy0 in (0..geo.oh).step_by(band).rev() {
                        let oy1 = (oy0 + band).min(geo.oh);
                        let bc = (oy1 - oy0) * geo.ow;
                        team_matmul(
                            k,
                            bc,
                            d.mg,
                            col,
                            bc,
                            false,
                            View::rows_t(wg, k),
                            View::rows(&dy[oy0 * geo.ow..], geo.cols()),
                            !par_samples,
                        );
                        col2im_rows(&geo, col, dxg, (oy0, oy1), bc);
                    }
                }
            }
        };
        each_sample(&mut dx, in_len, par_samples, |s, dxi, col| {
            one(&grad[s * out_len..(s + 1) * out_len], dxi, col)
        });
        Ok(Tensor::f32(x_shape.to_vec(), dx))
    }
}

impl Conv {
    /// The parameter gradients `dW[m, c, i, j] = Σ_n Σ_p dY[n, m, p] · P_n[(c, i, j), p]` and
    /// `db[m] = Σ_n Σ_p dY[n, m, p]`, with `P_n` sample n's im2col patch matrix (the input
    /// itself for an unpadded stride-1 1×1 kernel): one GEMM `P_g · dY_gᵀ` (= dW_gᵀ) per sample
    /// and group, on any geometry (groups, strides, dilations, pads). Simpler than the forward
    /// pass's kernels: it runs once per training step where attacks run the others many times.
    /// The batch is cut into at most [`WGRAD_BLOCKS`] fixed blocks of consecutive samples, each
    /// summed into its own accumulator in parallel, and the blocks are added in order, so the
    /// result does not depend on the thread count or on scheduling.
    pub(crate) fn param_grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &[f32],
        need_bias: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (d, g, in_len, out_len) = self.backward_dims(x.shape(), w, grad)?;
        let geo = d.geo;
        let (k, cols) = (geo.rows(), geo.cols());
        let xs = x.fs();
        let block = d.n.div_ceil(WGRAD_BLOCKS);
        let starts: Vec<usize> = (0..d.n).step_by(block).collect();
        let partial: Vec<Vec<f32>> = starts
            .par_iter()
            .map(|&s0| {
                let mut acc = vec![0.0f32; w.len()];
                with_scratch(|col| {
                    for s in s0..(s0 + block).min(d.n) {
                        let xi = &xs[s * in_len..(s + 1) * in_len];
                        let gi = &grad[s * out_len..(s + 1) * out_len];
                        for gr in 0..g {
                            let xg =
                                &xi[gr * d.cg * geo.h * geo.w..(gr + 1) * d.cg * geo.h * geo.w];
                            let patches: &[f32] = if geo.is_identity() {
                                xg
                            } else {
                                col.resize(k * cols, 0.0);
                                im2col(&geo, xg, col);
                                col
                            };
                            let dy = &gi[gr * d.mg * cols..(gr + 1) * d.mg * cols];
                            // dWᵀ (k × mg) = P · dYᵀ: with the long `cols` axis contiguous in
                            // both operands the GEMM packs little; measured 1.7–12× faster
                            // than dY · Pᵀ on ResNet-20's layer shapes (AVX-512, gemm 0.19).
                            matmul(
                                k,
                                d.mg,
                                cols,
                                &mut acc[gr * d.mg * k..(gr + 1) * d.mg * k],
                                d.mg,
                                true,
                                View::rows(patches, cols),
                                View::rows_t(dy, cols),
                                false,
                            );
                        }
                    }
                });
                acc
            })
            .collect();
        // Blocks added in order, then each group's dWᵀ (k × mg) transposed into dW (mg × k).
        let mut dwt = vec![0.0f32; w.len()];
        for p in &partial {
            dwt.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        let mut dw = vec![0.0f32; w.len()];
        for gr in 0..g {
            let (src, dst) = (gr * d.mg * k, gr * d.mg * k);
            for r in 0..k {
                for mi in 0..d.mg {
                    dw[dst + mi * k + r] = dwt[src + r * d.mg + mi];
                }
            }
        }
        let db = need_bias.then(|| {
            let mut db = vec![0.0f32; d.m];
            for (i, plane) in grad.chunks(cols).enumerate() {
                db[i % d.m] += plane.iter().sum::<f32>();
            }
            Tensor::f32(vec![d.m], db)
        });
        Ok((Tensor::f32(w.shape().to_vec(), dw), db))
    }
}

/// Most accumulators [`Conv::param_grads`] splits a batch into (each as large as the weights).
const WGRAD_BLOCKS: usize = 8;

impl Op for Conv {
    fn name(&self) -> &'static str {
        "Conv"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input_f32("Conv", inputs, 0)?;
        let w = input_f32("Conv", inputs, 1)?;
        self.forward_fused(x, w, inputs.get(2).copied().flatten(), None, false)
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        let x = input_f32("Conv", inputs, 0)?;
        let w = input_f32("Conv", inputs, 1)?;
        let need_b = need.get(2).copied().unwrap_or(false);
        if need.get(1).copied().unwrap_or(false) || need_b {
            let (dw, db) = self.param_grads(x, w, grad.fs(), need_b)?;
            if need.get(1).copied().unwrap_or(false) {
                res[1] = Some(dw);
            }
            if need_b {
                res[2] = db;
            }
        }
        if need[0] {
            res[0] = Some(self.input_grad(x.shape(), w, grad.fs(), 1)?);
        }
        Ok(res)
    }
    /// The input gradient alone reads only the input's shape: no copies.
    fn backward_copies(
        &self,
        inputs: &[Option<&Tensor>],
        output: &Tensor,
        grad: &Tensor,
        need: &[bool],
        c: Copies,
    ) -> Result<Vec<Option<Tensor>>> {
        if !need[0] || need.iter().skip(1).any(|&n| n) || !c.batched(0) {
            return backward_replicated(self, inputs, output, grad, need, c);
        }
        let x = input_f32("Conv", inputs, 0)?;
        let w = input_f32("Conv", inputs, 1)?;
        let mut res = vec![None; need.len()];
        res[0] = Some(self.input_grad(&c.times(x.shape()), w, grad.fs(), c.copies)?);
        Ok(res)
    }
    impl_any!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition of a grouped 2-D convolution (f64 accumulation), and its adjoint.
    struct Naive<'a> {
        g: &'a Geometry,
        n: usize,
        groups: usize,
        m: usize,
        w: &'a [f32],
    }

    impl Naive<'_> {
        /// Calls `f(x_index, y_index, w_index)` for every term of every output sum.
        fn each(&self, mut f: impl FnMut(usize, usize, usize)) {
            let (g, mg, cg) = (self.g, self.m / self.groups, self.g.c);
            for s in 0..self.n {
                for m in 0..self.m {
                    let gi = m / mg;
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            let yi = ((s * self.m + m) * g.oh + oy) * g.ow + ox;
                            for c in 0..cg {
                                for ki in 0..g.kh {
                                    for kj in 0..g.kw {
                                        let iy = (oy * g.sh + ki * g.dh) as isize - g.pt as isize;
                                        let ix = (ox * g.sw + kj * g.dw) as isize - g.pl as isize;
                                        if iy < 0
                                            || ix < 0
                                            || iy >= g.h as isize
                                            || ix >= g.w as isize
                                        {
                                            continue;
                                        }
                                        let xc = gi * cg + c;
                                        let xi = ((s * self.groups * cg + xc) * g.h + iy as usize)
                                            * g.w
                                            + ix as usize;
                                        let wi = ((m * cg + c) * g.kh + ki) * g.kw + kj;
                                        f(xi, yi, wi);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn close(a: &[f32], b: &[f64]) -> bool {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - y).powi(2)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        a.len() == b.len() && num.sqrt() <= 1e-5 * (1.0 + den.sqrt())
    }

    /// The banded col2im input gradient (what [`Kernel::Auto`] takes for a 1–3 channel
    /// gradient from 32 or more channels) on planes whose patch matrix spans several bands
    /// ([`COL2IM_BAND`]): ResNet's 7×7 stride-2 stem on 64 px, and a stride-1 5×5 layer,
    /// against the definition and bitwise against the unbanded route (which explicit
    /// [`Kernel::Im2col`] takes at stride 2); 1 and 3 samples (per sample in turn, and in
    /// parallel).
    /// `team_matmul`'s row blocks (more rows than columns) and column blocks, on a team,
    /// against the unsplit product, bit for bit: on both sides of `GEMM_SMALL` and of the
    /// few-row kernel's `MAX_ROWS`, accumulating or not, with `a` row-major and transposed.
    #[test]
    fn team_matmul_blocks_sum_like_the_whole_product() {
        for (m, n, k) in [
            (2048, 49, 512),
            (300, 49, 700),
            (96, 20, 40),
            (97, 20, 600),
            (70, 100, 30),
            (40, 900, 600),
            (40, 200, 600),
        ] {
            let mut rnd = crate::kernels::reference::uniform(m as u64);
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let c0: Vec<f32> = (0..m * n).map(|_| rnd()).collect();
            for (accumulate, transposed) in [(false, false), (true, false), (true, true)] {
                let av = if transposed {
                    View::rows_t(&a, m)
                } else {
                    View::rows(&a, k)
                };
                let bv = View::rows(&b, n);
                let mut whole = c0.clone();
                matmul(m, n, k, &mut whole, n, accumulate, av, bv, false);
                let mut split = c0.clone();
                crate::team::lead(|| team_matmul(m, n, k, &mut split, n, accumulate, av, bv, true));
                assert!(whole == split, "{m}×{n}×{k}, {accumulate}, {transposed}");
            }
        }
    }

    #[test]
    fn banded_col2im_matches_unbanded_and_the_definition() {
        for (c, m, hw, k, stride) in [(3, 64, 64, 7, 2), (1, 32, 80, 5, 1)] {
            let win = Window {
                kernel: [k, k],
                strides: [stride, stride],
                dilations: [1, 1],
                pads: [k / 2; 4],
                auto_pad: AutoPad::NotSet,
                ceil_mode: false,
            };
            let conv = Conv::new(win.clone(), 1);
            let geo = win.geometry("Conv", c, hw, hw).unwrap();
            assert!(k * k * c * geo.ow * 4 * geo.oh > 2 * COL2IM_BAND);
            let mut rnd = crate::kernels::reference::uniform(3u64);
            let wt: Vec<f32> = (0..m * c * k * k).map(|_| rnd()).collect();
            let wtt = Tensor::f32(vec![m, c, k, k], wt.clone());
            for n in [1, 3] {
                let dy: Vec<f32> = (0..n * m * geo.cols()).map(|_| rnd()).collect();
                let naive = Naive {
                    g: &geo,
                    n,
                    groups: 1,
                    m,
                    w: &wt,
                };
                let mut want = vec![0f64; n * c * hw * hw];
                naive.each(|xi, yi, wi| want[xi] += dy[yi] as f64 * wt[wi] as f64);
                let shape = [n, c, hw, hw];
                let banded = conv
                    .input_grad_with(&shape, &wtt, &dy, 1, None, Kernel::Auto)
                    .unwrap();
                let whole = conv.input_grad_col2im(&shape, &wtt, &dy, false).unwrap();
                if stride > 1 {
                    let im2col = conv
                        .input_grad_with(&shape, &wtt, &dy, 1, None, Kernel::Im2col)
                        .unwrap();
                    assert!(im2col.fs() == whole.fs());
                }
                assert!(
                    close(banded.fs(), &want),
                    "{k}x{k} stride {stride}, n = {n}"
                );
                assert!(
                    banded.fs() == whole.fs(),
                    "{k}x{k} stride {stride}, n = {n}: banded and unbanded differ"
                );
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors_and_conv_ignores_ceil_mode() {
        let win = |ceil_mode| Window {
            kernel: [3, 3],
            strides: [2, 2],
            dilations: [1, 1],
            pads: [1, 1, 1, 1],
            auto_pad: AutoPad::NotSet,
            ceil_mode,
        };
        let conv = Conv::new(win(false), 1);
        let x = Tensor::f32(
            vec![1, 2, 6, 22],
            (0..264).map(|i| i as f32 * 0.01).collect(),
        );
        let w = Tensor::f32(
            vec![3, 2, 3, 3],
            (0..54).map(|i| i as f32 * 0.1 - 2.0).collect(),
        );
        // An integer bias and empty shapes are errors, not panics.
        let ib = Tensor::from_i64(vec![3], vec![1, 2, 3]).unwrap();
        assert!(conv.forward_fused(&x, &w, Some(&ib), None, false).is_err());
        let empty = Tensor::f32(vec![1, 0, 6, 22], vec![]);
        let w0 = Tensor::f32(vec![3, 0, 3, 3], vec![]);
        assert!(conv.forward_fused(&empty, &w0, None, None, false).is_err());
        // ceil_mode belongs to pools: a Conv carrying it computes the plain convolution.
        let plain = conv.forward_fused(&x, &w, None, None, false).unwrap();
        for kernel in [
            Kernel::Auto,
            Kernel::Direct,
            Kernel::ChannelLanes,
            Kernel::Im2col,
        ] {
            let ceil = Conv::new(win(true), 1)
                .forward_with(&x, &w, None, None, false, kernel)
                .unwrap();
            assert_eq!(ceil.shape(), plain.shape());
            assert!(close(
                ceil.fs(),
                &plain.fs().iter().map(|&v| v as f64).collect::<Vec<_>>()
            ));
        }
    }

    /// A pool of more threads than the proptests' batches have samples.
    fn wide_pool() -> &'static rayon::ThreadPool {
        static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
        POOL.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(4)
                .build()
                .unwrap()
        })
    }

    proptest::proptest! {
        /// Every convolution kernel variant against the definition: the forward pass with bias,
        /// residual and ReLU epilogues, and both input-gradient routes (stride-1 transposed
        /// convolution and col2im), on random shapes, strides, dilations, pads and groups.
        #[test]
        fn conv_variants_match_the_definition(
            n in 1usize..4, groups in 1usize..3, cg in 1usize..10,
            mg in proptest::prop_oneof![1usize..4, proptest::strategy::Just(32usize)],
            h in 1usize..8, w in 1usize..8, kh in 1usize..4, kw in 1usize..4,
            sh in 1usize..3, sw in 1usize..3, dh in 1usize..3, dw in 1usize..3,
            pt in 0usize..3, pl in 0usize..3, pb in 0usize..3, pr in 0usize..3,
            epilogue in 0usize..4, seed in 0u64..1000,
        ) {
            let win = Window {
                kernel: [kh, kw], strides: [sh, sw], dilations: [dh, dw],
                pads: [pt, pl, pb, pr], auto_pad: AutoPad::NotSet, ceil_mode: false,
            };
            let conv = Conv::new(win.clone(), groups);
            let geo = match win.geometry("Conv", cg, h, w) {
                Ok(g) => g,
                Err(_) => return Ok(()),
            };
            let (c, m) = (groups * cg, groups * mg);
            let mut rnd = crate::kernels::reference::uniform(seed);
            let x: Vec<f32> = (0..n * c * h * w).map(|_| rnd()).collect();
            let wt: Vec<f32> = (0..m * cg * kh * kw).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..m).map(|_| rnd()).collect();
            let out_len = n * m * geo.cols();
            let r: Vec<f32> = (0..out_len).map(|_| rnd()).collect();
            let dy: Vec<f32> = (0..out_len).map(|_| rnd()).collect();
            let naive = Naive { g: &geo, n, groups, m, w: &wt };
            let (use_res, relu) = (epilogue & 1 == 1, epilogue & 2 == 2);

            let mut want = vec![0f64; out_len];
            naive.each(|xi, yi, wi| want[yi] += x[xi] as f64 * naive.w[wi] as f64);
            for (i, y) in want.iter_mut().enumerate() {
                *y += b[(i / geo.cols()) % m] as f64;
                if use_res { *y += r[i] as f64; }
                if relu { *y = y.max(0.0); }
            }
            let xt = Tensor::f32(vec![n, c, h, w], x.clone());
            let wtt = Tensor::f32(vec![m, cg, kh, kw], wt.clone());
            let bt = Tensor::f32(vec![m], b.clone());
            let rt = Tensor::f32(vec![n, m, geo.oh, geo.ow], r.clone());
            let mut dx = vec![0f64; x.len()];
            naive.each(|xi, yi, wi| dx[xi] += dy[yi] as f64 * naive.w[wi] as f64);
            // With weights prepared at load time and without.
            let prepared = conv.with_prepared(&wtt).unwrap();
            for conv in [&conv, &prepared] {
                for kernel in [
                    Kernel::Auto, Kernel::Direct, Kernel::ChannelLanes, Kernel::Winograd,
                    Kernel::Im2col, Kernel::RowShift, Kernel::Sparse,
                ] {
                    let got = conv
                        .forward_with(&xt, &wtt, Some(&bt), use_res.then_some(&rt), relu, kernel)
                        .unwrap();
                    proptest::prop_assert!(close(got.fs(), &want), "forward, {:?}", kernel);
                    let fast = conv.input_grad_with(xt.shape(), &wtt, &dy, 1, None, kernel).unwrap();
                    proptest::prop_assert!(close(fast.fs(), &dx), "input gradient, {:?}", kernel);
                    // The same on a small-batch team (`crate::team`), bit for bit.
                    let (got_t, fast_t) = crate::team::lead(|| {
                        let y = conv
                            .forward_with(&xt, &wtt, Some(&bt), use_res.then_some(&rt), relu, kernel)
                            .unwrap();
                        (y, conv.input_grad_with(xt.shape(), &wtt, &dy, 1, None, kernel).unwrap())
                    });
                    proptest::prop_assert!(got_t.fs() == got.fs(), "team forward, {:?}", kernel);
                    proptest::prop_assert!(fast_t.fs() == fast.fs(), "team gradient, {:?}", kernel);
                    // With more threads than samples (each sample's work then split over
                    // the threads), bit for bit.
                    let (got_w, fast_w) = wide_pool().install(|| {
                        let y = conv
                            .forward_with(&xt, &wtt, Some(&bt), use_res.then_some(&rt), relu, kernel)
                            .unwrap();
                        (y, conv.input_grad_with(xt.shape(), &wtt, &dy, 1, None, kernel).unwrap())
                    });
                    proptest::prop_assert!(got_w.fs() == got.fs(), "wide forward, {:?}", kernel);
                    proptest::prop_assert!(fast_w.fs() == fast.fs(), "wide gradient, {:?}", kernel);
                }
            }
            let scatter = conv.input_grad_col2im(xt.shape(), &wtt, &dy, false).unwrap();
            proptest::prop_assert!(close(scatter.fs(), &dx));
            let wide = wide_pool().install(|| conv.input_grad_col2im(xt.shape(), &wtt, &dy, false));
            proptest::prop_assert!(wide.unwrap().fs() == scatter.fs(), "wide col2im");
            let banded = conv.input_grad_col2im(xt.shape(), &wtt, &dy, true).unwrap();
            proptest::prop_assert!(banded.fs() == scatter.fs());
        }

        /// The input gradient of a batch carrying `copies` seeds per sample (copy-major) behind
        /// a ReLU, its gradient zero in a random share of places (the same for every copy),
        /// against the definition on the masked gradient: the sparse route for every sample,
        /// and the automatic choice; and under that choice a sample's gradients are the same,
        /// bit for bit, alone as in its batch.
        #[test]
        fn sparse_route_matches_the_definition(
            n in 1usize..4, copies in 1usize..6, c in proptest::prop_oneof![1usize..40, proptest::strategy::Just(16usize), proptest::strategy::Just(32usize)],
            m in 1usize..12,
            h in 1usize..9, w in 1usize..9, kh in 1usize..4, kw in 1usize..4,
            sh in 1usize..3, sw in 1usize..3, dh in 1usize..3, dw in 1usize..3,
            pt in 0usize..3, pl in 0usize..3, pb in 0usize..3, pr in 0usize..3,
            keep in 0.0f64..1.0, seed in 0u64..1000,
        ) {
            let win = Window {
                kernel: [kh, kw], strides: [sh, sw], dilations: [dh, dw],
                pads: [pt, pl, pb, pr], auto_pad: AutoPad::NotSet, ceil_mode: false,
            };
            let conv = Conv::new(win.clone(), 1);
            let geo = match win.geometry("Conv", c, h, w) {
                Ok(g) => g,
                Err(_) => return Ok(()),
            };
            let mut st = seed;
            let mut rnd = || {
                st = st.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((st >> 40) as f64) / 16777216.0
            };
            let wt: Vec<f32> = (0..m * c * kh * kw).map(|_| rnd() as f32 - 0.5).collect();
            let out_len = m * geo.cols();
            let live: Vec<bool> = (0..n * out_len).map(|_| rnd() < keep).collect();
            let y: Vec<f32> = (0..n * out_len).map(|_| rnd() as f32 - 0.3).collect();
            let dy: Vec<f32> = (0..copies * n * out_len)
                .map(|k| {
                    let v = rnd() as f32 - 0.5;
                    if live[k % (n * out_len)] { v } else { 0.0 }
                })
                .collect();
            let masked: Vec<f32> = dy
                .iter()
                .enumerate()
                .map(|(k, &v)| if y[k % (n * out_len)] > 0.0 { v } else { 0.0 })
                .collect();
            let naive = Naive { g: &geo, n: copies * n, groups: 1, m, w: &wt };
            let mut want = vec![0f64; copies * n * c * h * w];
            naive.each(|xi, yi, wi| want[xi] += masked[yi] as f64 * naive.w[wi] as f64);
            let (wtt, xs) = (Tensor::f32(vec![m, c, kh, kw], wt.clone()), [copies * n, c, h, w]);
            let prepared = conv.with_prepared(&wtt).unwrap();
            for conv in [&conv, &prepared] {
                for kernel in [Kernel::Sparse, Kernel::Auto] {
                    let got = conv.input_grad_with(&xs, &wtt, &dy, copies, Some(&y), kernel).unwrap();
                    proptest::prop_assert!(close(got.fs(), &want), "{:?}", kernel);
                }
                let batch = conv.input_grad_with(&xs, &wtt, &dy, copies, Some(&y), Kernel::Auto).unwrap();
                let in_len = c * h * w;
                for i in 0..n {
                    let one: Vec<f32> = (0..copies)
                        .flat_map(|s| dy[(s * n + i) * out_len..][..out_len].to_vec())
                        .collect();
                    let yi = &y[i * out_len..][..out_len];
                    let alone = conv
                        .input_grad_with(&[copies, c, h, w], &wtt, &one, copies, Some(yi), Kernel::Auto)
                        .unwrap();
                    for s in 0..copies {
                        proptest::prop_assert!(
                            alone.fs()[s * in_len..][..in_len] == batch.fs()[(s * n + i) * in_len..][..in_len],
                            "sample {} copy {} alone differs from its batch", i, s
                        );
                    }
                }
            }
        }
    }
}
