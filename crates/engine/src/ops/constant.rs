//! ConstantOfShape, Cast and Expand: the small operators of exported shape arithmetic.

use super::binary::{broadcast_shape, broadcast_strides};
use super::strided::gather;
use super::{impl_any, input, unbroadcast, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{Data, Tensor};

/// A tensor of the shape given by input 0, filled with `value`.
#[derive(Debug, Clone)]
pub struct ConstantOfShape {
    /// The fill value (a one-element tensor; float 0 by default).
    pub value: Tensor,
}

impl Op for ConstantOfShape {
    fn name(&self) -> &'static str {
        "ConstantOfShape"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let dims = input("ConstantOfShape", inputs, 0)?.to_i64_vec();
        if dims.iter().any(|&d| d < 0) {
            return Err(shape_err(
                "ConstantOfShape",
                format!("negative dimension in {dims:?}"),
            ));
        }
        let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
        let n = shape.iter().product();
        Ok(match self.value.data() {
            Data::F32(v) => Tensor::f32(shape, vec![v.first().copied().unwrap_or(0.0); n]),
            Data::I64(v) => Tensor::i64(shape, vec![v.first().copied().unwrap_or(0); n]),
        })
    }
    impl_any!();
}

/// Converts the element type: float types become float32, integer and bool types int64.
#[derive(Debug, Clone)]
pub struct Cast {
    /// True when the target is a floating-point type.
    pub to_float: bool,
}

impl Op for Cast {
    fn name(&self) -> &'static str {
        "Cast"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        Ok(input("Cast", inputs, 0)?.cast(self.to_float))
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _o: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        if need[0] && input("Cast", inputs, 0)?.is_f32() && self.to_float {
            res[0] = Some(grad.clone());
        }
        Ok(res)
    }
    impl_any!();
}

/// Broadcasts input 0 to the shape in input 1 (numpy rules, either side may be larger).
#[derive(Debug, Clone, Default)]
pub struct Expand;

impl Op for Expand {
    fn name(&self) -> &'static str {
        "Expand"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input("Expand", inputs, 0)?;
        let dims = input("Expand", inputs, 1)?.to_i64_vec();
        let target: Vec<usize> = dims.iter().map(|&d| d.max(0) as usize).collect();
        let shape = broadcast_shape("Expand", x.shape(), &target)?;
        let st: Vec<isize> = broadcast_strides(x.shape(), &shape)
            .iter()
            .map(|&s| s as isize)
            .collect();
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
            res[0] = Some(unbroadcast(grad, input("Expand", inputs, 0)?.shape()));
        }
        Ok(res)
    }
    impl_any!();
}
