//! Conv (1-D and 2-D, groups, dilations, strides, pads, auto_pad) as im2col + GEMM per sample
//! and group; its input gradient is col2im(Wᵀ·dY). Samples run in parallel when the batch is at
//! least the thread count, otherwise the GEMM itself is split across threads.

use rayon::prelude::*;

use super::{impl_any, input_f32, Op};
use crate::error::{shape_err, Result};
use crate::kernels::gemm::{matmul, View};
use crate::kernels::im2col::{col2im, im2col, Geometry};
use crate::tensor::Tensor;

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

/// 2-D convolution `y[n,m] = b[m] + Σ_c W[m,c] ⋆ x[n,c]` (1-D inputs are treated as height 1).
#[derive(Debug, Clone)]
pub struct Conv {
    /// Window geometry.
    pub window: Window,
    /// Number of groups (input and output channels split evenly).
    pub group: usize,
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
        let (xs, ws) = (x.shape(), w.shape());
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
        if c % g != 0 || m % g != 0 || c / g != cg {
            return Err(shape_err(
                "Conv",
                format!("input {xs:?} and weight {ws:?} do not agree with group={g}"),
            ));
        }
        let mut win = self.window.clone();
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

impl Op for Conv {
    fn name(&self) -> &'static str {
        "Conv"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input_f32("Conv", inputs, 0)?;
        let w = input_f32("Conv", inputs, 1)?;
        let d = self.dims(x, w)?;
        let bias = match inputs.get(2).copied().flatten() {
            Some(b) if b.len() == d.m => Some(b.fs()),
            Some(b) => {
                return Err(shape_err(
                    "Conv",
                    format!("bias {:?} for {} output channels", b.shape(), d.m),
                ))
            }
            None => None,
        };
        let (geo, g) = (d.geo, self.group.max(1));
        let (in_len, out_len) = (g * d.cg * geo.h * geo.w, d.m * geo.cols());
        let k = geo.rows();
        let mut out = vec![0.0f32; d.n * out_len];
        let par_samples = d.n >= rayon::current_num_threads();
        let (xs, ws) = (x.fs(), w.fs());
        let one = |xi: &[f32], yi: &mut [f32], col: &mut Vec<f32>| {
            for gi in 0..g {
                let xg = &xi[gi * d.cg * geo.h * geo.w..(gi + 1) * d.cg * geo.h * geo.w];
                let patches: &[f32] = if geo.is_identity() {
                    xg
                } else {
                    col.resize(k * geo.cols(), 0.0);
                    im2col(&geo, xg, col);
                    col
                };
                let yg = &mut yi[gi * d.mg * geo.cols()..(gi + 1) * d.mg * geo.cols()];
                if let Some(b) = bias {
                    for (r, row) in yg.chunks_mut(geo.cols()).enumerate() {
                        row.fill(b[gi * d.mg + r]);
                    }
                }
                let wg = &ws[gi * d.mg * k..(gi + 1) * d.mg * k];
                matmul(
                    d.mg,
                    geo.cols(),
                    k,
                    yg,
                    geo.cols(),
                    bias.is_some(),
                    View::rows(wg, k),
                    View::rows(patches, geo.cols()),
                    !par_samples,
                );
            }
        };
        if par_samples {
            out.par_chunks_mut(out_len)
                .zip(xs.par_chunks(in_len))
                .for_each_init(Vec::new, |col, (yi, xi)| one(xi, yi, col));
        } else {
            let mut col = Vec::new();
            for (yi, xi) in out.chunks_mut(out_len).zip(xs.chunks(in_len)) {
                one(xi, yi, &mut col);
            }
        }
        Ok(Tensor::f32(d.out_shape, out))
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        if need.iter().skip(1).any(|&n| n) {
            return Err(shape_err(
                "Conv",
                "gradients with respect to weights are not computed",
            ));
        }
        if !need[0] {
            return Ok(res);
        }
        let x = input_f32("Conv", inputs, 0)?;
        let w = input_f32("Conv", inputs, 1)?;
        let d = self.dims(x, w)?;
        let (geo, g) = (d.geo, self.group.max(1));
        let (in_len, out_len) = (g * d.cg * geo.h * geo.w, d.m * geo.cols());
        let k = geo.rows();
        let mut dx = vec![0.0f32; x.len()];
        let par_samples = d.n >= rayon::current_num_threads();
        let ws = w.fs();
        let one = |gi_out: &[f32], dxi: &mut [f32], col: &mut Vec<f32>| {
            for gi in 0..g {
                let dy = &gi_out[gi * d.mg * geo.cols()..(gi + 1) * d.mg * geo.cols()];
                let wg = &ws[gi * d.mg * k..(gi + 1) * d.mg * k];
                let dxg = &mut dxi[gi * d.cg * geo.h * geo.w..(gi + 1) * d.cg * geo.h * geo.w];
                if geo.is_identity() {
                    matmul(
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
                    col.resize(k * geo.cols(), 0.0);
                    matmul(
                        k,
                        geo.cols(),
                        d.mg,
                        col,
                        geo.cols(),
                        false,
                        View::rows_t(wg, k),
                        View::rows(dy, geo.cols()),
                        !par_samples,
                    );
                    col2im(&geo, col, dxg);
                }
            }
        };
        let gs = grad.fs();
        if par_samples {
            dx.par_chunks_mut(in_len)
                .zip(gs.par_chunks(out_len))
                .for_each_init(Vec::new, |col, (dxi, gi)| one(gi, dxi, col));
        } else {
            let mut col = Vec::new();
            for (dxi, gi) in dx.chunks_mut(in_len).zip(gs.chunks(out_len)) {
                one(gi, dxi, &mut col);
            }
        }
        let _ = d.n;
        res[0] = Some(Tensor::f32(x.shape().to_vec(), dx));
        Ok(res)
    }
    impl_any!();
}
