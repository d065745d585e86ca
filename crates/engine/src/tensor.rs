//! Host tensors: a shape and a contiguous row-major buffer of `f32` (activations, weights) or
//! `i64` (shape arithmetic). Two element types are enough for image classifiers: every other
//! ONNX type is converted on import (bool and int32 constants become `i64`, doubles `f32`).

use crate::error::{shape_err, Error, Result};

/// Element storage of a [`Tensor`].
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// 32-bit floats: activations, weights, gradients.
    F32(Vec<f32>),
    /// 64-bit integers: shapes, indices, axes.
    I64(Vec<i64>),
}

/// A dense row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Data,
}

impl Tensor {
    /// A float tensor; fails when `data.len()` is not the product of `shape`.
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        check_len(&shape, data.len())?;
        Ok(Tensor {
            shape,
            data: Data::F32(data),
        })
    }
    /// An integer tensor; fails when `data.len()` is not the product of `shape`.
    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Self> {
        check_len(&shape, data.len())?;
        Ok(Tensor {
            shape,
            data: Data::I64(data),
        })
    }
    /// Internal constructor for kernels that computed the length themselves.
    pub(crate) fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            shape,
            data: Data::F32(data),
        }
    }
    pub(crate) fn i64(shape: Vec<usize>, data: Vec<i64>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            shape,
            data: Data::I64(data),
        }
    }
    /// A float tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Tensor {
            shape,
            data: Data::F32(vec![0.0; n]),
        }
    }
    /// A rank-0 float tensor.
    pub fn scalar(v: f32) -> Self {
        Tensor {
            shape: vec![],
            data: Data::F32(vec![v]),
        }
    }
    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }
    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The element storage.
    pub fn data(&self) -> &Data {
        &self.data
    }
    /// Element type name, for error messages.
    pub fn dtype(&self) -> &'static str {
        match self.data {
            Data::F32(_) => "float32",
            Data::I64(_) => "int64",
        }
    }
    /// True for float tensors.
    pub fn is_f32(&self) -> bool {
        matches!(self.data, Data::F32(_))
    }
    /// The float elements, or an error naming `op` when the tensor holds integers.
    pub fn as_f32(&self) -> Result<&[f32]> {
        match &self.data {
            Data::F32(v) => Ok(v),
            Data::I64(_) => Err(Error::DType {
                op: "?",
                node: String::new(),
                dtype: "int64",
            }),
        }
    }
    /// The integer elements, or an error when the tensor holds floats.
    pub fn as_i64(&self) -> Result<&[i64]> {
        match &self.data {
            Data::I64(v) => Ok(v),
            Data::F32(_) => Err(Error::DType {
                op: "?",
                node: String::new(),
                dtype: "float32",
            }),
        }
    }
    /// Mutable float elements (panics in debug builds on integer tensors; kernels only).
    pub(crate) fn f32_mut(&mut self) -> &mut [f32] {
        match &mut self.data {
            Data::F32(v) => v,
            Data::I64(_) => unreachable!("f32_mut on an int64 tensor"),
        }
    }
    /// Float view for kernels that already checked the type.
    pub(crate) fn fs(&self) -> &[f32] {
        match &self.data {
            Data::F32(v) => v,
            Data::I64(_) => &[],
        }
    }
    /// Consumes the tensor and returns its float buffer.
    pub fn into_f32(self) -> Result<Vec<f32>> {
        match self.data {
            Data::F32(v) => Ok(v),
            Data::I64(_) => Err(Error::DType {
                op: "?",
                node: String::new(),
                dtype: "int64",
            }),
        }
    }
    /// Same data, new shape with the same number of elements.
    pub fn reshaped(mut self, shape: Vec<usize>) -> Result<Self> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(shape_err(
                "Reshape",
                format!("cannot view {:?} as {:?}", self.shape, shape),
            ));
        }
        self.shape = shape;
        Ok(self)
    }
    /// The values converted to `i64` (floats truncated), for shape arithmetic.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
        }
    }
    /// Same shape, converted element type.
    pub fn cast(&self, to_float: bool) -> Tensor {
        match (&self.data, to_float) {
            (Data::F32(_), true) | (Data::I64(_), false) => self.clone(),
            (Data::I64(v), true) => {
                Tensor::f32(self.shape.clone(), v.iter().map(|&x| x as f32).collect())
            }
            (Data::F32(v), false) => {
                Tensor::i64(self.shape.clone(), v.iter().map(|&x| x as i64).collect())
            }
        }
    }
    /// `copies` copies of the tensor one after the other along its first axis.
    pub(crate) fn repeat_batch(&self, copies: usize) -> Tensor {
        let mut shape = self.shape().to_vec();
        if let Some(n) = shape.first_mut() {
            *n *= copies;
        }
        match self.data() {
            Data::F32(x) => Tensor::f32(shape, x.repeat(copies)),
            Data::I64(x) => Tensor::i64(shape, x.repeat(copies)),
        }
    }
    /// Elementwise map of a float tensor into a new one with the same shape.
    pub(crate) fn map_f32(&self, f: impl Fn(f32) -> f32) -> Tensor {
        Tensor::f32(
            self.shape.clone(),
            self.fs().iter().map(|&x| f(x)).collect(),
        )
    }
    /// Adds `other` (same shape) into `self`; used to accumulate gradients.
    pub(crate) fn add_assign(&mut self, other: &Tensor) {
        for (a, b) in self.f32_mut().iter_mut().zip(other.fs()) {
            *a += b;
        }
    }
}

fn check_len(shape: &[usize], len: usize) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != len {
        return Err(Error::Input(format!(
            "tensor of shape {shape:?} needs {n} elements, got {len}"
        )));
    }
    Ok(())
}

/// Row-major strides of `shape`.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Resolves a possibly negative axis against `rank`.
pub(crate) fn norm_axis(op: &'static str, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) && !(r == 0 && a == 0) {
        return Err(shape_err(
            op,
            format!("axis {axis} out of range for rank {rank}"),
        ));
    }
    Ok(a as usize)
}
