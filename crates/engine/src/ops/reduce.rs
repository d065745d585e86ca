//! ReduceMean and ReduceSum over a set of axes (`keepdims`, `noop_with_empty_axes`).

use super::{impl_any, input, input_f32, Op};
use crate::error::Result;
use crate::tensor::{norm_axis, strides, Tensor};

/// Which reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceKind {
    /// Arithmetic mean.
    Mean,
    /// Sum.
    Sum,
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

impl Op for Reduce {
    fn name(&self) -> &'static str {
        self.name_()
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input_f32(self.name_(), inputs, 0)?;
        let s = x.shape();
        let Some(mask) = self.mask(inputs, s.len())? else {
            return Ok(x.clone());
        };
        let kept: Vec<usize> = s
            .iter()
            .zip(&mask)
            .map(|(&d, &m)| if m { 1 } else { d })
            .collect();
        let ks = strides(&kept);
        let mut out = vec![0.0f32; kept.iter().product()];
        let count: usize = s
            .iter()
            .zip(&mask)
            .filter(|(_, &m)| m)
            .map(|(&d, _)| d)
            .product();
        let mut idx = vec![0usize; s.len()];
        for &v in x.fs() {
            let off: usize = (0..s.len())
                .filter(|&d| !mask[d])
                .map(|d| idx[d] * ks[d])
                .sum();
            out[off] += v;
            for d in (0..s.len()).rev() {
                idx[d] += 1;
                if idx[d] < s[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        if self.kind == ReduceKind::Mean && count > 0 {
            out.iter_mut().for_each(|v| *v /= count as f32);
        }
        let shape = if self.keepdims {
            kept
        } else {
            s.iter()
                .zip(&mask)
                .filter(|(_, &m)| !m)
                .map(|(&d, _)| d)
                .collect()
        };
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
        if !need[0] {
            return Ok(res);
        }
        let x = input(self.name_(), inputs, 0)?;
        let s = x.shape();
        let Some(mask) = self.mask(inputs, s.len())? else {
            res[0] = Some(grad.clone());
            return Ok(res);
        };
        let kept: Vec<usize> = s
            .iter()
            .zip(&mask)
            .map(|(&d, &m)| if m { 1 } else { d })
            .collect();
        let ks = strides(&kept);
        let count: usize = s
            .iter()
            .zip(&mask)
            .filter(|(_, &m)| m)
            .map(|(&d, _)| d)
            .product();
        let scale = if self.kind == ReduceKind::Mean {
            1.0 / count.max(1) as f32
        } else {
            1.0
        };
        let g = grad.fs();
        let mut dx = Vec::with_capacity(x.len());
        let mut idx = vec![0usize; s.len()];
        for _ in 0..x.len() {
            let off: usize = (0..s.len())
                .filter(|&d| !mask[d])
                .map(|d| idx[d] * ks[d])
                .sum();
            dx.push(g[off] * scale);
            for d in (0..s.len()).rev() {
                idx[d] += 1;
                if idx[d] < s[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        res[0] = Some(Tensor::f32(s.to_vec(), dx));
        Ok(res)
    }
    impl_any!();
}
