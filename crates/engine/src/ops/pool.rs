//! MaxPool, AveragePool and GlobalAveragePool over the two spatial dimensions. Max pooling
//! routes the gradient to the first maximal element of each window in row-major order, the
//! convention of PyTorch's CPU kernel (it matters on MNIST's flat background, where ties are
//! the norm).

use rayon::prelude::*;

use super::conv::Window;
use super::{impl_any, input_f32, Op};
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

impl Pool {
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
        out.par_chunks_mut(ohw.max(1))
            .zip(x.fs().par_chunks(hw.max(1)))
            .for_each(|(y, p)| {
                for oy in 0..g.oh {
                    let (y0, y1, py) = span(oy, g.sh, g.pt, g.kh, g.dh, g.h, pend[0]);
                    for ox in 0..g.ow {
                        let (x0, x1, px) = span(ox, g.sw, g.pl, g.kw, g.dw, g.w, pend[1]);
                        y[oy * g.ow + ox] = match kind {
                            PoolKind::Max => {
                                let mut m = f32::NEG_INFINITY;
                                for iy in (y0..y1).filter(|iy| (iy + g.pt - oy * g.sh) % g.dh == 0)
                                {
                                    for ix in
                                        (x0..x1).filter(|ix| (ix + g.pl - ox * g.sw) % g.dw == 0)
                                    {
                                        let v = p[iy * g.w + ix];
                                        if v > m || m.is_nan() {
                                            m = v;
                                        }
                                    }
                                }
                                m
                            }
                            PoolKind::Average { count_include_pad } => {
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
                                s / cnt.max(1) as f32
                            }
                        };
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
        let (_, g, _, pend) = self.geo(x)?;
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let mut dx = vec![0.0f32; x.len()];
        let kind = self.kind;
        dx.par_chunks_mut(hw.max(1))
            .zip(x.fs().par_chunks(hw.max(1)))
            .zip(grad.fs().par_chunks(ohw.max(1)))
            .for_each(|((d, p), gy)| {
                for oy in 0..g.oh {
                    let (y0, y1, py) = span(oy, g.sh, g.pt, g.kh, g.dh, g.h, pend[0]);
                    for ox in 0..g.ow {
                        let (x0, x1, px) = span(ox, g.sw, g.pl, g.kw, g.dw, g.w, pend[1]);
                        let gv = gy[oy * g.ow + ox];
                        match kind {
                            PoolKind::Max => {
                                let mut best: Option<usize> = None;
                                let mut m = f32::NEG_INFINITY;
                                for iy in (y0..y1).filter(|iy| (iy + g.pt - oy * g.sh) % g.dh == 0)
                                {
                                    for ix in
                                        (x0..x1).filter(|ix| (ix + g.pl - ox * g.sw) % g.dw == 0)
                                    {
                                        let v = p[iy * g.w + ix];
                                        if best.is_none() || v > m {
                                            m = v;
                                            best = Some(iy * g.w + ix);
                                        }
                                    }
                                }
                                if let Some(b) = best {
                                    d[b] += gv;
                                }
                            }
                            PoolKind::Average { count_include_pad } => {
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
                    }
                }
            });
        let mut res = vec![None; need.len()];
        res[0] = Some(Tensor::f32(x.shape().to_vec(), dx));
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
