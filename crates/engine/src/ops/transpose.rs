//! Transpose: permute dimensions (default: reverse them). Gradient: the inverse permutation.

use super::strided::{gather, scatter_add};
use super::{impl_any, input, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{strides, Data, Tensor};

/// Permutes the dimensions.
#[derive(Debug, Clone, Default)]
pub struct Transpose {
    /// The permutation; None reverses the dimensions.
    pub perm: Option<Vec<usize>>,
}

impl Transpose {
    fn plan(&self, shape: &[usize]) -> Result<(Vec<usize>, Vec<isize>)> {
        let r = shape.len();
        let perm = self.perm.clone().unwrap_or_else(|| (0..r).rev().collect());
        let mut seen = vec![false; r];
        if perm.len() != r
            || perm
                .iter()
                .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
        {
            return Err(shape_err(
                "Transpose",
                format!("perm {perm:?} is not a permutation of rank {r}"),
            ));
        }
        let st = strides(shape);
        Ok((
            perm.iter().map(|&p| shape[p]).collect(),
            perm.iter().map(|&p| st[p] as isize).collect(),
        ))
    }
}

impl Op for Transpose {
    fn name(&self) -> &'static str {
        "Transpose"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input("Transpose", inputs, 0)?;
        let (shape, st) = self.plan(x.shape())?;
        Ok(match x.data() {
            Data::F32(v) => Tensor::f32(shape.clone(), gather(v, 0, &st, &shape)),
            Data::I64(v) => Tensor::i64(shape.clone(), gather(v, 0, &st, &shape)),
        })
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _o: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        if need[0] {
            let x = input("Transpose", inputs, 0)?;
            let (shape, st) = self.plan(x.shape())?;
            let mut dx = vec![0.0f32; x.len()];
            scatter_add(grad.fs(), &mut dx, 0, &st, &shape);
            res[0] = Some(Tensor::f32(x.shape().to_vec(), dx));
        }
        Ok(res)
    }
    impl_any!();
}
