//! Where: `cond ? a : b` with numpy broadcasting of all three. Gradient: the output gradient
//! goes to `a` where the condition holds and to `b` elsewhere, summed back over broadcast axes.

use super::binary::{broadcast_shape, broadcast_strides};
use super::strided::gather;
use super::{impl_any, input, unbroadcast, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{Data, Tensor};

/// Elementwise selection between inputs 1 and 2 by the boolean input 0.
#[derive(Debug, Clone)]
pub struct Where;

/// `t` broadcast to `shape`, as a flat buffer view.
fn spread<T: Copy>(v: &[T], from: &[usize], shape: &[usize]) -> Vec<T> {
    let st: Vec<isize> = broadcast_strides(from, shape)
        .iter()
        .map(|&s| s as isize)
        .collect();
    gather(v, 0, &st, shape)
}

/// The condition broadcast to `shape`, as booleans.
fn mask(c: &Tensor, shape: &[usize]) -> Vec<bool> {
    match c.data() {
        Data::I64(v) => spread(v, c.shape(), shape)
            .iter()
            .map(|&x| x != 0)
            .collect(),
        Data::F32(v) => spread(v, c.shape(), shape)
            .iter()
            .map(|&x| x != 0.0)
            .collect(),
    }
}

impl Where {
    fn out_shape(c: &Tensor, a: &Tensor, b: &Tensor) -> Result<Vec<usize>> {
        let s = broadcast_shape("Where", c.shape(), a.shape())?;
        broadcast_shape("Where", &s, b.shape())
    }
}

impl Op for Where {
    fn name(&self) -> &'static str {
        "Where"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let c = input("Where", inputs, 0)?;
        let a = input("Where", inputs, 1)?;
        let b = input("Where", inputs, 2)?;
        let shape = Self::out_shape(c, a, b)?;
        let m = mask(c, &shape);
        match (a.data(), b.data()) {
            (Data::F32(x), Data::F32(y)) => {
                let (x, y) = (spread(x, a.shape(), &shape), spread(y, b.shape(), &shape));
                let v = m
                    .iter()
                    .zip(x.iter().zip(&y))
                    .map(|(&m, (&p, &q))| if m { p } else { q })
                    .collect();
                Ok(Tensor::f32(shape, v))
            }
            (Data::I64(x), Data::I64(y)) => {
                let (x, y) = (spread(x, a.shape(), &shape), spread(y, b.shape(), &shape));
                let v = m
                    .iter()
                    .zip(x.iter().zip(&y))
                    .map(|(&m, (&p, &q))| if m { p } else { q })
                    .collect();
                Ok(Tensor::i64(shape, v))
            }
            _ => Err(shape_err(
                "Where",
                format!("mixed element types {} and {}", a.dtype(), b.dtype()),
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
        let c = input("Where", inputs, 0)?;
        let m = mask(c, grad.shape());
        let mut out = vec![None; need.len()];
        for (i, keep) in [(1usize, true), (2, false)] {
            if need.get(i).copied().unwrap_or(false) {
                let t = input("Where", inputs, i)?;
                let g: Vec<f32> = grad
                    .fs()
                    .iter()
                    .zip(&m)
                    .map(|(&g, &m)| if m == keep { g } else { 0.0 })
                    .collect();
                out[i] = Some(unbroadcast(
                    &Tensor::f32(grad.shape().to_vec(), g),
                    t.shape(),
                ));
            }
        }
        Ok(out)
    }
    impl_any!();
}
