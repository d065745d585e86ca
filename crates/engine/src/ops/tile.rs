//! Tile: repeats the input `repeats[d]` times along each axis d. Gradient: the sum over the
//! copies.

use super::strided::{gather, scatter_add};
use super::{impl_any, input, Op};
use crate::error::{checked_numel, shape_err, Result};
use crate::tensor::{strides, Data, Tensor};

/// Tiling by the repeats of input 1.
#[derive(Debug, Clone)]
pub struct Tile;

/// The view `[r0, d0, r1, d1, …]` of the output: strides 0 on the repeat axes.
fn plan(x: &Tensor, repeats: &[i64]) -> Result<(Vec<usize>, Vec<usize>, Vec<isize>)> {
    let s = x.shape();
    if repeats.len() != s.len() || repeats.iter().any(|&r| r < 0) {
        return Err(shape_err(
            "Tile",
            format!("repeats {repeats:?} do not fit input {s:?}"),
        ));
    }
    let out: Vec<i64> = s.iter().zip(repeats).map(|(&d, &r)| d as i64 * r).collect();
    checked_numel("Tile", &out)?;
    let st = strides(s);
    let mut view = Vec::with_capacity(2 * s.len());
    let mut vst = Vec::with_capacity(2 * s.len());
    for d in 0..s.len() {
        view.push(repeats[d] as usize);
        vst.push(0isize);
        view.push(s[d]);
        vst.push(st[d] as isize);
    }
    Ok((out.iter().map(|&d| d as usize).collect(), view, vst))
}

impl Op for Tile {
    fn name(&self) -> &'static str {
        "Tile"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input("Tile", inputs, 0)?;
        let reps = input("Tile", inputs, 1)?.to_i64_vec();
        let (shape, view, vst) = plan(x, &reps)?;
        Ok(match x.data() {
            Data::F32(v) => Tensor::f32(shape, gather(v, 0, &vst, &view)),
            Data::I64(v) => Tensor::i64(shape, gather(v, 0, &vst, &view)),
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
            let x = input("Tile", inputs, 0)?;
            let reps = input("Tile", inputs, 1)?.to_i64_vec();
            let (_, view, vst) = plan(x, &reps)?;
            let mut dx = vec![0.0f32; x.len()];
            scatter_add(grad.fs(), &mut dx, 0, &vst, &view);
            out[0] = Some(Tensor::f32(x.shape().to_vec(), dx));
        }
        Ok(out)
    }
    impl_any!();
}
