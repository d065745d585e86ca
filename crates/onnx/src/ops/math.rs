//! Arithmetic, comparisons and linear algebra: Add/Sub/Mul/Div/Pow/Mod/Max/Min, Equal/Less/
//! Greater/LessOrEqual/GreaterOrEqual, And/Or/Xor/Not, Gemm, MatMul, Einsum, reductions, and
//! the elementwise Neg/Exp/Log/Sqrt/Reciprocal/Abs/Sign/Floor/Ceil/Round.

use faultline_engine::ops::{
    Binary, BinaryKind, Einsum, Gemm, MatMul, Op, Reduce, ReduceKind, Unary, UnaryKind,
};

use crate::attrs::{BuildResult, Ctx};

fn binary(c: &Ctx, kind: BinaryKind) -> BuildResult<Box<dyn Op>> {
    // Before opset 7 broadcasting was opt-in with `broadcast`/`axis`; only the numpy-compatible
    // case (no axis) is accepted.
    if c.opset < 7 && c.has("axis") {
        return Err("legacy broadcasting with 'axis' is not supported".into());
    }
    if c.node.input.len() != 2 {
        return Err(format!(
            "{} inputs; only the two-operand form is supported",
            c.node.input.len()
        ));
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
        ..Gemm::default()
    }))
}

pub(crate) fn matmul(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(MatMul))
}

fn reduce(c: &Ctx, kind: ReduceKind) -> BuildResult<Box<dyn Op>> {
    // Axes moved from attribute to input in opset 18 (ReduceSum: 13).
    let input_axes = c.opset >= if kind == ReduceKind::Sum { 13 } else { 18 };
    if !input_axes && c.has_input(1) {
        return Err("axes as an input need opset 18 (13 for ReduceSum)".into());
    }
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
pub(crate) fn pow(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::Pow)
}
pub(crate) fn modulo(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(
        c,
        BinaryKind::Mod {
            fmod: c.int_or("fmod", 0) != 0,
        },
    )
}
pub(crate) fn max(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::Max)
}
pub(crate) fn min(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::Min)
}
pub(crate) fn equal(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::Equal)
}
pub(crate) fn less(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::Less)
}
pub(crate) fn greater(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::Greater)
}
pub(crate) fn less_or_equal(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::LessOrEqual)
}
pub(crate) fn greater_or_equal(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::GreaterOrEqual)
}
pub(crate) fn and(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::And)
}
pub(crate) fn or(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::Or)
}
pub(crate) fn xor(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    binary(c, BinaryKind::Xor)
}

pub(crate) fn reduce_max(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    reduce(c, ReduceKind::Max)
}
pub(crate) fn reduce_min(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    reduce(c, ReduceKind::Min)
}
pub(crate) fn reduce_prod(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    reduce(c, ReduceKind::Prod)
}
pub(crate) fn reduce_l1(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    reduce(c, ReduceKind::L1)
}
pub(crate) fn reduce_l2(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    reduce(c, ReduceKind::L2)
}
pub(crate) fn reduce_sum_square(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    reduce(c, ReduceKind::SumSquare)
}
pub(crate) fn reduce_log_sum_exp(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    reduce(c, ReduceKind::LogSumExp)
}

pub(crate) fn einsum(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Einsum {
        equation: c.string("equation").ok_or("Einsum needs an 'equation'")?,
    }))
}

fn unary(kind: UnaryKind) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Unary::new(kind)))
}
pub(crate) fn log(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Log)
}
pub(crate) fn reciprocal(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Reciprocal)
}
pub(crate) fn sign(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Sign)
}
pub(crate) fn floor(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Floor)
}
pub(crate) fn ceil(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Ceil)
}
pub(crate) fn round(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Round)
}
pub(crate) fn not(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Not)
}
