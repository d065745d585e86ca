//! Split, one node per output: [`SplitPart`] computes part `index` of splitting input 0 along
//! `axis`, by the sizes of input 1 (opset ≥ 13) or of the attribute, or into `parts` equal
//! pieces (the last one smaller when the axis does not divide, as opset 18 specifies). The
//! importer turns an ONNX Split with k outputs into k of these nodes. Gradient: the part's
//! gradient scattered into zeros.

use super::{impl_any, input, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{norm_axis, Data, Tensor};

/// Part `index` of a Split.
#[derive(Debug, Clone)]
pub struct SplitPart {
    /// Axis split along (negative counts from the end).
    pub axis: i64,
    /// Sizes from the attribute (opset < 13), if given.
    pub sizes: Option<Vec<i64>>,
    /// Number of outputs (used for equal splits).
    pub parts: usize,
    /// Which output this node computes.
    pub index: usize,
}

impl SplitPart {
    /// (axis, start, length) of this part in `shape`.
    fn range(&self, inputs: &[Option<&Tensor>], shape: &[usize]) -> Result<(usize, usize, usize)> {
        let a = norm_axis("Split", self.axis, shape.len())?;
        let dim = shape[a];
        let sizes: Vec<usize> = match (&self.sizes, inputs.get(1).copied().flatten()) {
            (Some(s), _) => s.iter().map(|&v| v.max(0) as usize).collect(),
            (None, Some(t)) => t.to_i64_vec().iter().map(|&v| v.max(0) as usize).collect(),
            (None, None) => {
                let each = dim.div_ceil(self.parts.max(1));
                (0..self.parts)
                    .map(|i| each.min(dim.saturating_sub(i * each)))
                    .collect()
            }
        };
        if sizes.iter().sum::<usize>() != dim || self.index >= sizes.len() {
            return Err(shape_err(
                "Split",
                format!(
                    "sizes {sizes:?} do not split axis {a} of {shape:?} into {} parts",
                    self.parts
                ),
            ));
        }
        let start = sizes[..self.index].iter().sum();
        Ok((a, start, sizes[self.index]))
    }
}

/// Copies `[start, start + len)` along `axis` (outer × axis × inner layout).
fn take<T: Copy>(v: &[T], shape: &[usize], axis: usize, start: usize, len: usize) -> Vec<T> {
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let dim = shape[axis];
    let mut out = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        let base = (o * dim + start) * inner;
        out.extend_from_slice(&v[base..base + len * inner]);
    }
    out
}

impl Op for SplitPart {
    fn name(&self) -> &'static str {
        "Split"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input("Split", inputs, 0)?;
        let (a, start, len) = self.range(inputs, x.shape())?;
        let mut shape = x.shape().to_vec();
        shape[a] = len;
        Ok(match x.data() {
            Data::F32(v) => Tensor::f32(shape, take(v, x.shape(), a, start, len)),
            Data::I64(v) => Tensor::i64(shape, take(v, x.shape(), a, start, len)),
        })
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut out = vec![None; need.len()];
        if need[0] {
            let x = input("Split", inputs, 0)?;
            let s = x.shape();
            let (a, start, len) = self.range(inputs, s)?;
            let inner: usize = s[a + 1..].iter().product();
            let outer: usize = s[..a].iter().product();
            let mut dx = vec![0.0f32; x.len()];
            let g = grad.fs();
            for o in 0..outer {
                let dst = (o * s[a] + start) * inner;
                let src = o * len * inner;
                dx[dst..dst + len * inner].copy_from_slice(&g[src..src + len * inner]);
            }
            out[0] = Some(Tensor::f32(s.to_vec(), dx));
        }
        Ok(out)
    }
    impl_any!();
}
