//! ReduceMean, ReduceSum, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2,
//! ReduceSumSquare and ReduceLogSumExp over a set of axes (`keepdims`,
//! `noop_with_empty_axes`). Gradients: Max/Min split the gradient evenly among the elements
//! equal to the result; Prod gives `g·y/x` (the product of the others when x = 0); L1 `g·sign x`;
//! L2 `g·x/y`; SumSquare `2g·x`; LogSumExp `g·e^(x−y)`.

use rayon::prelude::*;

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

/// The reduced axes as one contiguous run, `(outer, run, inner)` with the input
/// `[outer, run, inner]` and the output `[outer, inner]`, where they are contiguous (trailing
/// spatial axes, or a single axis: almost every model's reductions). The sums then read whole
/// rows instead of an offset per element (the general path below, ~5 ns an element).
fn contiguous(s: &[usize], mask: &[bool]) -> Option<(usize, usize, usize)> {
    let first = mask.iter().position(|&m| m)?;
    let last = mask.iter().rposition(|&m| m)?;
    mask[first..=last].iter().all(|&m| m).then(|| {
        (
            s[..first].iter().product(),
            s[first..=last].iter().product(),
            s[last + 1..].iter().product(),
        )
    })
}

/// Inputs above this many elements are reduced in parallel over their outputs.
const PARALLEL_ELEMENTS: usize = 1 << 16;

/// `Σ f(x)` in f64 over each output of a contiguous reduction (see [`contiguous`]), for the
/// kinds that are sums (Mean, Sum, L1, L2, SumSquare), finished by `finish`. With `inner == 1`
/// each output's run is summed in 8 interleaved f64 lanes, added at the end in a fixed order.
fn contiguous_sums(
    xs: &[f32],
    (outer, run, inner): (usize, usize, usize),
    f: impl Fn(f32) -> f64 + Sync,
    finish: impl Fn(f64) -> f32 + Sync,
) -> Vec<f32> {
    let mut out = vec![0.0f32; outer * inner];
    let one = |o: usize, y: &mut [f32]| {
        let x = &xs[o * run * inner..(o + 1) * run * inner];
        if inner == 1 {
            let mut lanes = [0.0f64; 8];
            let chunks = x.chunks_exact(8);
            let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
            for c in chunks {
                for (l, &v) in lanes.iter_mut().zip(c) {
                    *l += f(v);
                }
            }
            y[0] = finish(lanes.iter().sum::<f64>() + tail);
            return;
        }
        let mut acc = vec![0.0f64; inner];
        for row in x.chunks_exact(inner) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += f(v);
            }
        }
        for (y, a) in y.iter_mut().zip(acc) {
            *y = finish(a);
        }
    };
    if xs.len() > PARALLEL_ELEMENTS {
        crate::team::for_each_chunk(&mut out, inner.max(1), one);
    } else {
        out.chunks_mut(inner.max(1))
            .enumerate()
            .for_each(|(o, y)| one(o, y));
    }
    out
}

/// The input gradient of a contiguous sum-like reduction: `dx = d(g, x, y)` for each element,
/// with `g` and `y` its output's gradient and value.
fn contiguous_grad(
    xs: &[f32],
    (outer, run, inner): (usize, usize, usize),
    g: &[f32],
    y: &[f32],
    d: impl Fn(f32, f32, f32) -> f32 + Sync,
) -> Vec<f32> {
    let mut dx = vec![0.0f32; xs.len()];
    let block = run * inner;
    let one = |o: usize, dxo: &mut [f32]| {
        let (go, yo) = (
            &g[o * inner..(o + 1) * inner],
            &y[o * inner..(o + 1) * inner],
        );
        let xo = &xs[o * block..(o + 1) * block];
        for (dr, xr) in dxo.chunks_exact_mut(inner).zip(xo.chunks_exact(inner)) {
            for (((d_, &x), &g), &y) in dr.iter_mut().zip(xr).zip(go).zip(yo) {
                *d_ = d(g, x, y);
            }
        }
    };
    if outer == 0 || block == 0 {
        return dx;
    }
    if xs.len() > PARALLEL_ELEMENTS {
        dx.par_chunks_mut(block)
            .enumerate()
            .for_each(|(o, c)| one(o, c));
    } else {
        dx.chunks_mut(block)
            .enumerate()
            .for_each(|(o, c)| one(o, c));
    }
    dx
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
        let kept_shape = |keep: bool| -> Vec<usize> {
            s.iter()
                .zip(&mask)
                .filter(|(_, &m)| keep || !m)
                .map(|(&d, &m)| if m { 1 } else { d })
                .collect()
        };
        // The sum-type reductions, as the f64 term of each element.
        let term: Option<fn(f32) -> f64> = match self.kind {
            ReduceKind::Mean | ReduceKind::Sum => Some(|x| x as f64),
            ReduceKind::L1 => Some(|x| x.abs() as f64),
            ReduceKind::L2 | ReduceKind::SumSquare => Some(|x| (x as f64) * (x as f64)),
            _ => None,
        };
        if let (true, Some(dims), Some(f)) = (x.is_f32(), contiguous(s, &mask), term) {
            let (kind, count) = (self.kind, dims.1.max(1) as f64);
            let finish = |a: f64| match kind {
                ReduceKind::Mean => (a / count) as f32,
                ReduceKind::L2 => a.sqrt() as f32,
                _ => a as f32,
            };
            let out = contiguous_sums(x.fs(), dims, f, finish);
            return Ok(Tensor::f32(kept_shape(self.keepdims), out));
        }
        let (offs, kept, count) = targets(s, &mask);
        let shape = kept_shape(self.keepdims);
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
        if let Some(dims) = contiguous(s, &mask) {
            let (g, y, xs) = (grad.fs(), output.fs(), x.fs());
            let scale = 1.0 / dims.1.max(1) as f32;
            let dx = match self.kind {
                ReduceKind::Mean => Some(contiguous_grad(xs, dims, g, y, |g, _, _| g * scale)),
                ReduceKind::Sum => Some(contiguous_grad(xs, dims, g, y, |g, _, _| g)),
                ReduceKind::L1 => Some(contiguous_grad(xs, dims, g, y, |g, x, _| {
                    if x == 0.0 {
                        0.0
                    } else {
                        g * x.signum()
                    }
                })),
                ReduceKind::L2 => Some(contiguous_grad(xs, dims, g, y, |g, x, y| {
                    if y == 0.0 {
                        0.0
                    } else {
                        g * x / y
                    }
                })),
                ReduceKind::SumSquare => {
                    Some(contiguous_grad(xs, dims, g, y, |g, x, _| 2.0 * g * x))
                }
                _ => None,
            };
            if let Some(dx) = dx {
                res[0] = Some(Tensor::f32(s.to_vec(), dx));
                return Ok(res);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The general path (an offset per element), for comparison with the contiguous one.
    fn general(kind: ReduceKind, x: &Tensor, mask: &[bool], g: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (offs, kept, count) = targets(x.shape(), mask);
        let m: usize = kept.iter().product();
        let f = |v: f32| match kind {
            ReduceKind::L1 => v.abs() as f64,
            ReduceKind::L2 | ReduceKind::SumSquare => (v as f64) * (v as f64),
            _ => v as f64,
        };
        let mut acc = vec![0.0f64; m];
        for (&o, &v) in offs.iter().zip(x.fs()) {
            acc[o] += f(v);
        }
        let y: Vec<f32> = acc
            .iter()
            .map(|&a| match kind {
                ReduceKind::Mean => (a / count as f64) as f32,
                ReduceKind::L2 => a.sqrt() as f32,
                _ => a as f32,
            })
            .collect();
        let dx = offs
            .iter()
            .zip(x.fs())
            .map(|(&o, &v)| match kind {
                ReduceKind::Mean => g[o] * (1.0 / count as f32),
                ReduceKind::Sum => g[o],
                ReduceKind::L1 => {
                    if v == 0.0 {
                        0.0
                    } else {
                        g[o] * v.signum()
                    }
                }
                ReduceKind::L2 => {
                    if y[o] == 0.0 {
                        0.0
                    } else {
                        g[o] * v / y[o]
                    }
                }
                _ => 2.0 * g[o] * v,
            })
            .collect();
        (y, dx)
    }

    proptest::proptest! {
        /// The contiguous path against the general one: every sum-like kind, reduced runs at the
        /// front, middle and end of rank-2 to rank-4 shapes (inner length 1 and more), small
        /// and above the parallel threshold; forward within f32 rounding of the f64 sums (the
        /// lanes add in another order), backward exactly.
        #[test]
        fn contiguous_reductions_match_the_general_path(
            dims in proptest::collection::vec(1usize..9, 2..5), a in 0usize..4, len in 1usize..4,
            kind in 0usize..5, big: bool, seed in 0u64..1000,
        ) {
            let mut dims = dims;
            if big {
                dims[0] *= 700;
            }
            let rank = dims.len();
            let a = a % rank;
            let b = (a + len).min(rank);
            let mask: Vec<bool> = (0..rank).map(|i| i >= a && i < b).collect();
            let kind = [ReduceKind::Mean, ReduceKind::Sum, ReduceKind::L1, ReduceKind::L2, ReduceKind::SumSquare][kind];
            let n: usize = dims.iter().product();
            let mut st = seed;
            let mut rnd = || {
                st = st.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let v = ((st >> 40) as f32) / 16777216.0 - 0.5;
                if st % 13 == 0 { 0.0 } else { v }
            };
            let x = Tensor::f32(dims.clone(), (0..n).map(|_| rnd()).collect());
            let op = Reduce { kind, axes: Some((a..b).map(|i| i as i64).collect()), keepdims: true, noop_with_empty_axes: false };
            let y = op.forward(&[Some(&x)]).unwrap();
            let g: Vec<f32> = (0..y.len()).map(|_| rnd()).collect();
            let (want_y, want_dx) = general(kind, &x, &mask, &g);
            for (got, want) in y.fs().iter().zip(&want_y) {
                proptest::prop_assert!((got - want).abs() <= 1e-6 * (1.0 + want.abs()), "{got} vs {want}");
            }
            let gt = Tensor::f32(y.shape().to_vec(), g);
            // The backward pass reads the forward's output; give it the general path's so that
            // the comparison is exact.
            let yt = Tensor::f32(y.shape().to_vec(), want_y);
            let dx = op.backward(&[Some(&x)], &yt, &gt, &[true]).unwrap()[0].take().unwrap();
            proptest::prop_assert_eq!(dx.fs(), &want_dx[..]);
        }
    }
}
