//! TopK, one node per output: the `k` largest (or smallest) values along an axis, sorted, or
//! their indices. The importer turns an ONNX TopK into one node for each output it uses.
//! Ties keep the lower index first. Gradient (values): scattered back to where they came from.

use super::{impl_any, input, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{norm_axis, Tensor};

/// The values (or indices) output of TopK with inputs (x, k).
#[derive(Debug, Clone)]
pub struct TopK {
    /// Axis searched (negative counts from the end).
    pub axis: i64,
    /// Largest (true) or smallest values.
    pub largest: bool,
    /// This node gives the indices (int64) instead of the values.
    pub indices: bool,
}

impl TopK {
    /// For each output element, the flat offset of the input element it takes.
    fn pick(&self, inputs: &[Option<&Tensor>]) -> Result<(Vec<usize>, Vec<usize>, Vec<i64>)> {
        let x = input("TopK", inputs, 0)?.cast(true);
        let k = input("TopK", inputs, 1)?.to_i64_vec();
        let s = x.shape().to_vec();
        let a = norm_axis("TopK", self.axis, s.len())?;
        let k = k.first().copied().unwrap_or(0);
        if k < 0 || k as usize > s[a] {
            return Err(shape_err(
                "TopK",
                format!("k = {k} for axis of size {}", s[a]),
            ));
        }
        let k = k as usize;
        let (dim, inner) = (s[a], s[a + 1..].iter().product::<usize>());
        let outer: usize = s[..a].iter().product();
        let v = x.fs();
        let mut offs = Vec::with_capacity(outer * k * inner);
        let mut idx = Vec::with_capacity(outer * k * inner);
        let mut out_shape = s.clone();
        out_shape[a] = k;
        let mut order: Vec<usize> = Vec::with_capacity(dim);
        let mut per = vec![(0usize, 0i64); outer * k * inner];
        for o in 0..outer {
            for i in 0..inner {
                order.clear();
                order.extend(0..dim);
                let at = |j: usize| v[(o * dim + j) * inner + i];
                order.sort_by(|&p, &q| {
                    let c = at(p).total_cmp(&at(q));
                    (if self.largest { c.reverse() } else { c }).then(p.cmp(&q))
                });
                for (r, &j) in order[..k].iter().enumerate() {
                    per[(o * k + r) * inner + i] = ((o * dim + j) * inner + i, j as i64);
                }
            }
        }
        for (off, j) in per {
            offs.push(off);
            idx.push(j);
        }
        Ok((out_shape, offs, idx))
    }
}

impl Op for TopK {
    fn name(&self) -> &'static str {
        "TopK"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let (shape, offs, idx) = self.pick(inputs)?;
        if self.indices {
            return Ok(Tensor::i64(shape, idx));
        }
        let x = input("TopK", inputs, 0)?;
        if !x.is_f32() {
            let v = x.to_i64_vec();
            return Ok(Tensor::i64(shape, offs.iter().map(|&o| v[o]).collect()));
        }
        let v = x.fs();
        Ok(Tensor::f32(shape, offs.iter().map(|&o| v[o]).collect()))
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut out = vec![None; need.len()];
        if need[0] && !self.indices {
            let x = input("TopK", inputs, 0)?;
            let (_, offs, _) = self.pick(inputs)?;
            let mut dx = vec![0.0f32; x.len()];
            for (&o, &g) in offs.iter().zip(grad.fs()) {
                dx[o] += g;
            }
            out[0] = Some(Tensor::f32(x.shape().to_vec(), dx));
        }
        Ok(out)
    }
    impl_any!();
}
