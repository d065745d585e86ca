//! Arithmetic and linear algebra: Add/Sub/Mul/Div, Gemm, MatMul, reductions, Neg/Exp/Sqrt/Abs.

use faultline_engine::ops::{
    Binary, BinaryKind, Gemm, MatMul, Op, Reduce, ReduceKind, Unary, UnaryKind,
};

use crate::attrs::{BuildResult, Ctx};

fn binary(c: &Ctx, kind: BinaryKind) -> BuildResult<Box<dyn Op>> {
    // Before opset 7 broadcasting was opt-in with `broadcast`/`axis`; only the numpy-compatible
    // case (no axis) is accepted.
    if c.opset < 7 && c.has("axis") {
        return Err("legacy broadcasting with 'axis' is not supported".into());
    }
    Ok(Box::new(Binary::new(kind)))
}
pub(crate) fn add(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::Add)
}
pub(crate) fn sub(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::Sub)
}
pub(crate) fn mul(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::Mul)
}
pub(crate) fn div(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::Div)
}

pub(crate) fn gemm(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Gemm {
        alpha: c.float_or("alpha", 1.0),
        beta: c.float_or("beta", 1.0),
        trans_a: c.int_or("transA", 0) != 0,
        trans_b: c.int_or("transB", 0) != 0,
    }))
}

pub(crate) fn matmul(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(MatMul))
}

fn reduce(c: &Ctx, kind: ReduceKind) -> BuildResult<Box<dyn Op>> {
    // Axes moved from attribute to input in opset 18 (ReduceSum: 13).
    let input_axes = c.opset >= if kind == ReduceKind::Sum { 13 } else { 18 };
    Ok(Box::new(Reduce {
        kind,
        axes: if input_axes { None } else { c.ints("axes") },
        keepdims: c.int_or("keepdims", 1) != 0,
        noop_with_empty_axes: c.int_or("noop_with_empty_axes", 0) != 0,
    }))
}
pub(crate) fn reduce_mean(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    reduce(c, ReduceKind::Mean)
}
pub(crate) fn reduce_sum(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    reduce(c, ReduceKind::Sum)
}

pub(crate) fn neg(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Unary::new(UnaryKind::Neg)))
}
pub(crate) fn exp(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Unary::new(UnaryKind::Exp)))
}
pub(crate) fn sqrt(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Unary::new(UnaryKind::Sqrt)))
}
pub(crate) fn abs(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Unary::new(UnaryKind::Abs)))
}
