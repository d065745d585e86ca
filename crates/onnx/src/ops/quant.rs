//! Quantization operators: QuantizeLinear, DequantizeLinear (QDQ graphs) and QLinearConv,
//! QLinearMatMul, MatMulInteger, ConvInteger (ONNX Runtime's QOperator format); the engine's
//! `ops::quantize` computes them (ORT's integer semantics, straight-through gradients).

use faultline_engine::ops::{Conv, DequantizeLinear, IntegerProduct, Op, QRange, QuantizeLinear};

use crate::attrs::{BuildResult, Ctx};
use crate::ops::nn::window;
use crate::proto::data_type as dt;

/// The integer range of ONNX element type `t`.
fn range_of(t: i32) -> BuildResult<QRange> {
    Ok(match t {
        dt::INT8 => QRange::INT8,
        dt::UINT8 => QRange::UINT8,
        dt::INT16 => QRange::INT16,
        dt::UINT16 => QRange::UINT16,
        dt::UINT4 => QRange::UINT4,
        dt::INT4 => QRange::INT4,
        o => return Err(format!("quantized element type {o} is not supported")),
    })
}

/// The range of the value input `i` (a zero point), uint8 when it is absent (ONNX's default).
fn zero_point_range(c: &Ctx, i: usize) -> BuildResult<QRange> {
    if !c.has_input(i) {
        return Ok(QRange::UINT8);
    }
    match c.elem_type(i) {
        Some(t) => range_of(t),
        None => Err(format!(
            "the type of zero point '{}' is unknown (it must be an initializer or a Constant)",
            c.node.input[i]
        )),
    }
}

pub(crate) fn quantize_linear(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    if c.int_or("block_size", 0) != 0 {
        return Err("blocked quantization (block_size) is not supported".into());
    }
    let range = match c.int("output_dtype").filter(|&t| t != 0) {
        Some(t) => range_of(t as i32)?,
        None => zero_point_range(c, 2)?,
    };
    Ok(Box::new(QuantizeLinear {
        axis: c.int_or("axis", 1),
        range,
    }))
}

pub(crate) fn dequantize_linear(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    if c.int_or("block_size", 0) != 0 {
        return Err("blocked quantization (block_size) is not supported".into());
    }
    Ok(Box::new(DequantizeLinear {
        axis: c.int_or("axis", 1),
    }))
}

fn conv_of(c: &Ctx) -> BuildResult<Conv> {
    Ok(Conv::new(
        window(c, [0, 0])?,
        c.int_or("group", 1).max(1) as usize,
    ))
}

pub(crate) fn qlinear_conv(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(IntegerProduct::qlinear_conv(
        conv_of(c)?,
        zero_point_range(c, 7)?,
    )))
}

pub(crate) fn qlinear_matmul(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(IntegerProduct::qlinear_matmul(zero_point_range(
        c, 7,
    )?)))
}

pub(crate) fn matmul_integer(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(IntegerProduct::matmul_integer()))
}

pub(crate) fn conv_integer(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(IntegerProduct::conv_integer(conv_of(c)?)))
}
