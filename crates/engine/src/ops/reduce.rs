//! ReduceMean, ReduceSum, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2,
//! ReduceSumSquare and ReduceLogSumExp over a set of axes (`keepdims`,
//! `noop_with_empty_axes`). Gradients: Max/Min split the gradient evenly among the elements
//! equal to the result; Prod gives `g·y/x` (the product of the others when x = 0); L1 `g·sign x`;
//! L2 `g·x/y`; SumSquare `2g·x`; LogSumExp `g·e^(x−y)`.

use super::{impl_any, input, input_f32, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{norm_axis, strides, Tensor};

/// Which reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceKind {
    /// Arithmetic mean.
    Mean,
    /// Sum.
    Sum,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Product.
    Prod,
    /// Σ|x|.
    L1,
    /// √Σx².
    L2,
    /// Σx².
    SumSquare,
    /// ln Σeˣ.
    LogSumExp,
}

/// A reduction; axes come from the attribute (older opsets) or from input 1 (newer ones).
#[derive(Debug, Clone)]
pub struct Reduce {
    /// Mean or sum.
    pub kind: ReduceKind,
    /// Axes from the attribute, if the opset puts them there.
    pub axes: Option<Vec<i64>>,
    /// Keep reduced dimensions as size 1 (default true).
    pub keepdims: bool,
    /// With no axes: identity instead of reducing everything.
    pub noop_with_empty_axes: bool,
}

impl Reduce {
    fn name_(&self) -> &'static str {
        match self.kind {
            ReduceKind::Mean => "ReduceMean",
            ReduceKind::Sum => "ReduceSum",
            ReduceKind::Max => "ReduceMax",
            ReduceKind::Min => "ReduceMin",
            ReduceKind::Prod => "ReduceProd",
            ReduceKind::L1 => "ReduceL1",
            ReduceKind::L2 => "ReduceL2",
            ReduceKind::SumSquare => "ReduceSumSquare",
            ReduceKind::LogSumExp => "ReduceLogSumExp",
        }
    }
    /// Reduced-axis mask, or None for identity.
    fn mask(&self, inputs: &[Option<&Tensor>], rank: usize) -> Result<Option<Vec<bool>>> {
        let axes = match (&self.axes, inputs.get(1).copied().flatten()) {
            (Some(a), _) => a.clone(),
            (None, Some(t)) => t.to_i64_vec(),
            (None, None) => vec![],
        };
        if axes.is_empty() {
            return Ok(if self.noop_with_empty_axes {
                None
            } else {
                Some(vec![true; rank])
            });
        }
        let mut m = vec![false; rank];
        for a in axes {
            m[norm_axis(self.name_(), a, rank)?] = true;
        }
        Ok(Some(m))
    }
}

/// For each input element, the flat offset of the output element it reduces into; the kept
/// shape (reduced axes as 1) and the number of elements per output.
fn targets(s: &[usize], mask: &[bool]) -> (Vec<usize>, Vec<usize>, usize) {
    let kept: Vec<usize> = s
        .iter()
        .zip(mask)
        .map(|(&d, &m)| if m { 1 } else { d })
        .collect();
    let ks = strides(&kept);
    let count: usize = s
        .iter()
        .zip(mask)
        .filter(|(_, &m)| m)
        .map(|(&d, _)| d)
        .product();
    let n: usize = s.iter().product();
    let mut offs = Vec::with_capacity(n);
    let mut idx = vec![0usize; s.len()];
    let mut off = 0usize;
    for _ in 0..n {
        offs.push(off);
        for d in (0..s.len()).rev() {
            idx[d] += 1;
            if !mask[d] {
                off += ks[d];
            }
            if idx[d] < s[d] {
                break;
            }
            if !mask[d] {
                off -= ks[d] * idx[d];
            }
            idx[d] = 0;
        }
    }
    (offs, kept, count)
}

impl Op for Reduce {
    fn name(&self) -> &'static str {
        self.name_()
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input(self.name_(), inputs, 0)?;
        let s = x.shape();
        let Some(mask) = self.mask(inputs, s.len())? else {
            return Ok(x.clone());
        };
        let (offs, kept, count) = targets(s, &mask);
        let shape = if self.keepdims {
            kept.clone()
        } else {
            s.iter()
                .zip(&mask)
                .filter(|(_, &m)| !m)
                .map(|(&d, _)| d)
                .collect()
        };
        let m: usize = kept.iter().product();
        if !x.is_f32() {
            // Shape arithmetic: integer sums, products and extrema.
            let v = x.to_i64_vec();
            let (init, f): (i64, fn(i64, i64) -> i64) = match self.kind {
                ReduceKind::Sum | ReduceKind::Mean => (0, |a, b| a + b),
                ReduceKind::Prod => (1, |a, b| a * b),
                ReduceKind::Max => (i64::MIN, |a: i64, b| a.max(b)),
                ReduceKind::Min => (i64::MAX, |a: i64, b| a.min(b)),
                _ => return Err(shape_err(self.name_(), "integer input")),
            };
            let mut out = vec![init; m];
            for (&o, &x) in offs.iter().zip(&v) {
                out[o] = f(out[o], x);
            }
            if self.kind == ReduceKind::Mean && count > 0 {
                out.iter_mut().for_each(|v| *v /= count as i64);
            }
            return Ok(Tensor::i64(shape, out));
        }
        let xs = x.fs();
        let out: Vec<f32> = match self.kind {
            ReduceKind::Max | ReduceKind::Min => {
                let max = self.kind == ReduceKind::Max;
                let mut out = vec![
                    if max {
                        f32::NEG_INFINITY
                    } else {
                        f32::INFINITY
                    };
                    m
                ];
                for (&o, &x) in offs.iter().zip(xs) {
                    if (max && x > out[o]) || (!max && x < out[o]) || x.is_nan() {
                        out[o] = x;
                    }
                }
                out
            }
            ReduceKind::Prod => {
                let mut out = vec![1.0f32; m];
                for (&o, &x) in offs.iter().zip(xs) {
                    out[o] *= x;
                }
                out
            }
            ReduceKind::LogSumExp => {
                let mut mx = vec![f32::NEG_INFINITY; m];
                for (&o, &x) in offs.iter().zip(xs) {
                    mx[o] = mx[o].max(x);
                }
                let mut acc = vec![0.0f64; m];
                for (&o, &x) in offs.iter().zip(xs) {
                    acc[o] += ((x - mx[o]) as f64).exp();
                }
                acc.iter()
                    .zip(&mx)
                    .map(|(&a, &b)| (a.ln() as f32) + b)
                    .collect()
            }
            k => {
                let mut acc = vec![0.0f64; m];
                for (&o, &x) in offs.iter().zip(xs) {
                    acc[o] += match k {
                        ReduceKind::L1 => x.abs() as f64,
                        ReduceKind::L2 | ReduceKind::SumSquare => (x as f64) * (x as f64),
                        _ => x as f64,
                    };
                }
                acc.iter()
                    .map(|&a| match k {
                        ReduceKind::Mean => (a / count.max(1) as f64) as f32,
                        ReduceKind::L2 => a.sqrt() as f32,
                        _ => a as f32,
                    })
                    .collect()
            }
        };
        Ok(Tensor::f32(shape, out))
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        if !need[0] {
            return Ok(res);
        }
        let x = input_f32(self.name_(), inputs, 0)?;
        let s = x.shape();
        let Some(mask) = self.mask(inputs, s.len())? else {
            res[0] = Some(grad.clone());
            return Ok(res);
        };
        let (offs, kept, count) = targets(s, &mask);
        let (g, y, xs) = (grad.fs(), output.fs(), x.fs());
        let dx: Vec<f32> = match self.kind {
            ReduceKind::Mean => {
                let scale = 1.0 / count.max(1) as f32;
                offs.iter().map(|&o| g[o] * scale).collect()
            }
            ReduceKind::Sum => offs.iter().map(|&o| g[o]).collect(),
            ReduceKind::Max | ReduceKind::Min => {
                let mut ties = vec![0u32; kept.iter().product()];
                for (&o, &x) in offs.iter().zip(xs) {
                    ties[o] += (x == y[o]) as u32;
                }
                offs.iter()
                    .zip(xs)
                    .map(|(&o, &x)| {
                        if x == y[o] {
                            g[o] / ties[o] as f32
                        } else {
                            0.0
                        }
                    })
                    .collect()
            }
            ReduceKind::Prod => offs
                .iter()
                .enumerate()
                .map(|(i, &o)| {
                    if xs[i] != 0.0 {
                        g[o] * y[o] / xs[i]
                    } else {
                        // The product of the other elements of this output.
                        let p: f32 = offs
                            .iter()
                            .zip(xs)
                            .enumerate()
                            .filter(|&(j, (&oj, _))| oj == o && j != i)
                            .map(|(_, (_, &v))| v)
                            .product();
                        g[o] * p
                    }
                })
                .collect(),
            ReduceKind::L1 => offs
                .iter()
                .zip(xs)
                .map(|(&o, &x)| if x == 0.0 { 0.0 } else { g[o] * x.signum() })
                .collect(),
            ReduceKind::L2 => offs
                .iter()
                .zip(xs)
                .map(|(&o, &x)| if y[o] == 0.0 { 0.0 } else { g[o] * x / y[o] })
                .collect(),
            ReduceKind::SumSquare => offs.iter().zip(xs).map(|(&o, &x)| 2.0 * g[o] * x).collect(),
            ReduceKind::LogSumExp => offs
                .iter()
                .zip(xs)
                .map(|(&o, &x)| g[o] * (x - y[o]).exp())
                .collect(),
        };
        res[0] = Some(Tensor::f32(s.to_vec(), dx));
        Ok(res)
    }
    impl_any!();
}
