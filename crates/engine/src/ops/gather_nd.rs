//! GatherND: the slices of `data` addressed by the last axis of `indices`, with `batch_dims`
//! leading axes shared by both. Gradient: each slice's gradient added back where it came from.

use super::{impl_any, input, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{strides, Data, Tensor};

/// GatherND with inputs (data, indices).
#[derive(Debug, Clone)]
pub struct GatherNd {
    /// Leading axes that data and indices share.
    pub batch_dims: usize,
}

impl GatherNd {
    /// Output shape, the offset in `data` of each slice, and the slice length.
    fn plan(&self, data: &[usize], idx: &Tensor) -> Result<(Vec<usize>, Vec<usize>, usize)> {
        let is = idx.shape();
        let b = self.batch_dims;
        let k = *is.last().unwrap_or(&0);
        if is.is_empty() || b >= is.len() || b + k > data.len() || is[..b] != data[..b] {
            return Err(shape_err(
                "GatherND",
                format!("indices {is:?} do not address data {data:?} (batch_dims {b})"),
            ));
        }
        let slice: usize = data[b + k..].iter().product();
        let batch: usize = data[..b].iter().product();
        let per_batch: usize = is[b..is.len() - 1].iter().product();
        let bstride: usize = data[b..].iter().product();
        let st = strides(&data[b..]);
        let iv = idx.to_i64_vec();
        let mut offs = Vec::with_capacity(batch * per_batch);
        for bi in 0..batch {
            for c in 0..per_batch {
                let row = &iv[(bi * per_batch + c) * k..(bi * per_batch + c + 1) * k];
                let mut off = bi * bstride;
                for (d, &i) in row.iter().enumerate() {
                    let dim = data[b + d] as i64;
                    let i = if i < 0 { i + dim } else { i };
                    if i < 0 || i >= dim {
                        return Err(shape_err(
                            "GatherND",
                            format!("index {i} out of range for axis {} of {data:?}", b + d),
                        ));
                    }
                    off += i as usize * st[d];
                }
                offs.push(off);
            }
        }
        let shape = is[..is.len() - 1]
            .iter()
            .chain(&data[b + k..])
            .copied()
            .collect();
        Ok((shape, offs, slice))
    }
}

fn take<T: Copy>(v: &[T], offs: &[usize], slice: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(offs.len() * slice);
    for &o in offs {
        out.extend_from_slice(&v[o..o + slice]);
    }
    out
}

impl Op for GatherNd {
    fn name(&self) -> &'static str {
        "GatherND"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let d = input("GatherND", inputs, 0)?;
        let i = input("GatherND", inputs, 1)?;
        let (shape, offs, slice) = self.plan(d.shape(), i)?;
        Ok(match d.data() {
            Data::F32(v) => Tensor::f32(shape, take(v, &offs, slice)),
            Data::I64(v) => Tensor::i64(shape, take(v, &offs, slice)),
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
            let d = input("GatherND", inputs, 0)?;
            let i = input("GatherND", inputs, 1)?;
            let (_, offs, slice) = self.plan(d.shape(), i)?;
            let mut dd = vec![0.0f32; d.len()];
            for (c, &o) in offs.iter().enumerate() {
                for j in 0..slice {
                    dd[o + j] += grad.fs()[c * slice + j];
                }
            }
            out[0] = Some(Tensor::f32(d.shape().to_vec(), dd));
        }
        Ok(out)
    }
    impl_any!();
}
