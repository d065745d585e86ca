//! Resize (modes `nearest` and `linear`) of the last two axes, with the coordinate
//! transformations and nearest-rounding modes of the specification. Separable: each output row
//! and column reads one (nearest) or two (linear) source positions with weights. Gradient: the
//! transpose, each output gradient added back to its sources with the same weights.

use super::{impl_any, input, input_f32, Op};
use crate::error::{checked_numel, shape_err, Result};
use crate::tensor::Tensor;

/// How an output coordinate maps to an input coordinate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordMode {
    /// (o + ½)/s − ½ (the default).
    HalfPixel,
    /// As HalfPixel, but 0 when the output length is 1.
    PytorchHalfPixel,
    /// o·(in − 1)/(out − 1).
    AlignCorners,
    /// o/s.
    Asymmetric,
    /// (o + ½)/s (nearest only, TensorFlow).
    TfHalfPixelForNn,
}

/// How a fractional source position rounds in nearest mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NearestMode {
    /// Round, halves down (the default).
    RoundPreferFloor,
    /// Round, halves up.
    RoundPreferCeil,
    /// ⌊x⌋.
    Floor,
    /// ⌈x⌉.
    Ceil,
}

/// Resize with inputs (x, roi, scales, sizes); opset 10 has (x, scales).
#[derive(Debug, Clone)]
pub struct Resize {
    /// Linear (true) or nearest interpolation.
    pub linear: bool,
    /// Coordinate transformation.
    pub coord: CoordMode,
    /// Rounding in nearest mode.
    pub nearest: NearestMode,
    /// Index of the scales input (1 at opset 10, 2 after).
    pub scales_input: usize,
}

/// Sources and weights of each output position along one axis.
type Taps = Vec<Vec<(usize, f32)>>;

impl Resize {
    fn taps(&self, len_in: usize, len_out: usize, scale: f32) -> Taps {
        (0..len_out)
            .map(|o| {
                let of = o as f32;
                let x = match self.coord {
                    CoordMode::HalfPixel => (of + 0.5) / scale - 0.5,
                    CoordMode::PytorchHalfPixel => {
                        if len_out > 1 {
                            (of + 0.5) / scale - 0.5
                        } else {
                            0.0
                        }
                    }
                    CoordMode::AlignCorners => {
                        if len_out > 1 {
                            of * (len_in as f32 - 1.0) / (len_out as f32 - 1.0)
                        } else {
                            0.0
                        }
                    }
                    CoordMode::Asymmetric => of / scale,
                    CoordMode::TfHalfPixelForNn => (of + 0.5) / scale,
                };
                let last = len_in.saturating_sub(1) as f32;
                if self.linear {
                    let x = x.clamp(0.0, last);
                    let x0 = x.floor();
                    let w = x - x0;
                    let i0 = x0 as usize;
                    let i1 = (i0 + 1).min(len_in - 1);
                    if w == 0.0 || i1 == i0 {
                        vec![(i0, 1.0)]
                    } else {
                        vec![(i0, 1.0 - w), (i1, w)]
                    }
                } else {
                    let r = match self.nearest {
                        NearestMode::RoundPreferFloor => {
                            if x.fract() == 0.5 {
                                x.floor()
                            } else {
                                x.round()
                            }
                        }
                        NearestMode::RoundPreferCeil => {
                            if x.fract() == 0.5 {
                                x.ceil()
                            } else {
                                x.round()
                            }
                        }
                        NearestMode::Floor => x.floor(),
                        NearestMode::Ceil => x.ceil(),
                    };
                    vec![(r.clamp(0.0, last) as usize, 1.0)]
                }
            })
            .collect()
    }

    /// Output shape and the taps of the last two axes.
    fn plan(&self, inputs: &[Option<&Tensor>]) -> Result<(Vec<usize>, Taps, Taps)> {
        let x = input("Resize", inputs, 0)?;
        let s = x.shape();
        let r = s.len();
        if r < 2 {
            return Err(shape_err("Resize", format!("input {s:?} has rank below 2")));
        }
        let sizes = inputs
            .get(self.scales_input + 1)
            .copied()
            .flatten()
            .filter(|t| !t.is_empty());
        let scales = inputs
            .get(self.scales_input)
            .copied()
            .flatten()
            .filter(|t| !t.is_empty());
        let (out, sc): (Vec<usize>, Vec<f32>) = match (sizes, scales) {
            (Some(sz), _) => {
                let v = sz.to_i64_vec();
                if v.len() != r {
                    return Err(shape_err("Resize", format!("sizes {v:?} for input {s:?}")));
                }
                checked_numel("Resize", &v)?;
                let out: Vec<usize> = v.iter().map(|&d| d.max(0) as usize).collect();
                let sc = out
                    .iter()
                    .zip(s)
                    .map(|(&o, &i)| o as f32 / i.max(1) as f32)
                    .collect();
                (out, sc)
            }
            (None, Some(sc)) => {
                let v = sc.cast(true).fs().to_vec();
                if v.len() != r || v.iter().any(|f| f.is_nan() || *f <= 0.0) {
                    return Err(shape_err("Resize", format!("scales {v:?} for input {s:?}")));
                }
                let o: Vec<i64> = s
                    .iter()
                    .zip(&v)
                    .map(|(&d, &f)| (d as f32 * f).floor() as i64)
                    .collect();
                checked_numel("Resize", &o)?;
                (o.iter().map(|&d| d as usize).collect(), v)
            }
            (None, None) => return Err(shape_err("Resize", "neither scales nor sizes given")),
        };
        if out[..r - 2] != s[..r - 2] {
            return Err(shape_err(
                "Resize",
                format!("only the last two axes may be resized ({s:?} → {out:?})"),
            ));
        }
        let th = self.taps(s[r - 2], out[r - 2], sc[r - 2]);
        let tw = self.taps(s[r - 1], out[r - 1], sc[r - 1]);
        Ok((out, th, tw))
    }
}

impl Op for Resize {
    fn name(&self) -> &'static str {
        "Resize"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input_f32("Resize", inputs, 0)?;
        let (out, th, tw) = self.plan(inputs)?;
        let r = out.len();
        let (h, w) = (x.shape()[r - 2], x.shape()[r - 1]);
        let (oh, ow) = (out[r - 2], out[r - 1]);
        let planes: usize = out[..r - 2].iter().product();
        let xs = x.fs();
        let mut y = vec![0.0f32; planes * oh * ow];
        for p in 0..planes {
            let src = &xs[p * h * w..(p + 1) * h * w];
            let dst = &mut y[p * oh * ow..(p + 1) * oh * ow];
            for (i, ti) in th.iter().enumerate() {
                for (j, tj) in tw.iter().enumerate() {
                    let mut acc = 0.0f32;
                    for &(a, wa) in ti {
                        for &(b, wb) in tj {
                            acc += wa * wb * src[a * w + b];
                        }
                    }
                    dst[i * ow + j] = acc;
                }
            }
        }
        Ok(Tensor::f32(out, y))
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        if !need[0] {
            return Ok(res);
        }
        let x = input_f32("Resize", inputs, 0)?;
        let (out, th, tw) = self.plan(inputs)?;
        let r = out.len();
        let (h, w) = (x.shape()[r - 2], x.shape()[r - 1]);
        let (oh, ow) = (out[r - 2], out[r - 1]);
        let planes: usize = out[..r - 2].iter().product();
        let g = grad.fs();
        let mut dx = vec![0.0f32; x.len()];
        for p in 0..planes {
            let dst = &mut dx[p * h * w..(p + 1) * h * w];
            let src = &g[p * oh * ow..(p + 1) * oh * ow];
            for (i, ti) in th.iter().enumerate() {
                for (j, tj) in tw.iter().enumerate() {
                    let gv = src[i * ow + j];
                    for &(a, wa) in ti {
                        for &(b, wb) in tj {
                            dst[a * w + b] += wa * wb * gv;
                        }
                    }
                }
            }
        }
        res[0] = Some(Tensor::f32(x.shape().to_vec(), dx));
        Ok(res)
    }
    impl_any!();
}
