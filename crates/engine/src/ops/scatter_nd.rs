//! ScatterND (reduction `none` or `add`): a copy of `data` with the slices addressed by the
//! last axis of `indices` replaced by (or increased by) `updates`. Exporters use it to write
//! into shape vectors and masks. Gradient: `data` gets the output gradient where nothing was
//! replaced (everywhere for `add`); `updates` gets the output gradient at the addressed slices.

use super::{impl_any, input, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{strides, Data, Tensor};

/// ScatterND with inputs (data, indices, updates).
#[derive(Debug, Clone)]
pub struct ScatterNd {
    /// Add the updates instead of replacing.
    pub add: bool,
}

/// Flat offsets of the addressed slices in `data` and the length of each slice.
fn plan(data: &[usize], idx: &Tensor, upd: &[usize]) -> Result<(Vec<usize>, usize)> {
    let is = idx.shape();
    let k = *is.last().unwrap_or(&0);
    if is.is_empty() || k > data.len() {
        return Err(shape_err(
            "ScatterND",
            format!("indices {is:?} do not address data {data:?}"),
        ));
    }
    let slice: usize = data[k..].iter().product();
    let count: usize = is[..is.len() - 1].iter().product();
    let want: Vec<usize> = is[..is.len() - 1]
        .iter()
        .chain(&data[k..])
        .copied()
        .collect();
    if want != upd {
        return Err(shape_err(
            "ScatterND",
            format!("updates {upd:?} should have shape {want:?}"),
        ));
    }
    let st = strides(data);
    let iv = idx.to_i64_vec();
    let mut offs = Vec::with_capacity(count);
    for c in 0..count {
        let mut off = 0usize;
        for d in 0..k {
            let mut i = iv[c * k + d];
            if i < 0 {
                i += data[d] as i64;
            }
            if i < 0 || i >= data[d] as i64 {
                return Err(shape_err(
                    "ScatterND",
                    format!(
                        "index {} out of range for axis {d} of {data:?}",
                        iv[c * k + d]
                    ),
                ));
            }
            off += i as usize * st[d];
        }
        offs.push(off);
    }
    Ok((offs, slice))
}

fn apply<T: Copy + std::ops::Add<Output = T>>(
    out: &mut [T],
    upd: &[T],
    offs: &[usize],
    slice: usize,
    add: bool,
) {
    for (c, &off) in offs.iter().enumerate() {
        for j in 0..slice {
            let u = upd[c * slice + j];
            out[off + j] = if add { out[off + j] + u } else { u };
        }
    }
}

impl Op for ScatterNd {
    fn name(&self) -> &'static str {
        "ScatterND"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let d = input("ScatterND", inputs, 0)?;
        let i = input("ScatterND", inputs, 1)?;
        let u = input("ScatterND", inputs, 2)?;
        let (offs, slice) = plan(d.shape(), i, u.shape())?;
        match (d.data(), u.data()) {
            (Data::F32(dv), Data::F32(uv)) => {
                let mut out = dv.clone();
                apply(&mut out, uv, &offs, slice, self.add);
                Ok(Tensor::f32(d.shape().to_vec(), out))
            }
            (Data::I64(dv), Data::I64(uv)) => {
                let mut out = dv.clone();
                apply(&mut out, uv, &offs, slice, self.add);
                Ok(Tensor::i64(d.shape().to_vec(), out))
            }
            _ => Err(shape_err(
                "ScatterND",
                "data and updates differ in element type",
            )),
        }
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let d = input("ScatterND", inputs, 0)?;
        let i = input("ScatterND", inputs, 1)?;
        let u = input("ScatterND", inputs, 2)?;
        let (offs, slice) = plan(d.shape(), i, u.shape())?;
        let g = grad.fs();
        let mut out = vec![None; need.len()];
        if need[0] {
            let mut dd = g.to_vec();
            if !self.add {
                for &off in &offs {
                    dd[off..off + slice].iter_mut().for_each(|v| *v = 0.0);
                }
            }
            out[0] = Some(Tensor::f32(d.shape().to_vec(), dd));
        }
        if need.get(2).copied().unwrap_or(false) {
            // With duplicate indices and `none` only the last write reaches the output.
            let mut du = Vec::with_capacity(u.len());
            for (c, &off) in offs.iter().enumerate() {
                let last = self.add || !offs[c + 1..].contains(&off);
                du.extend(
                    g[off..off + slice]
                        .iter()
                        .map(|&v| if last { v } else { 0.0 }),
                );
            }
            out[2] = Some(Tensor::f32(u.shape().to_vec(), du));
        }
        Ok(out)
    }
    impl_any!();
}
