//! Every supported ONNX operator, by name, in one table: grep here to see what faultline reads.
//! `Constant` is handled by the importer itself (it defines a value, not an operator).

use faultline_engine::ops::Op;

use crate::attrs::{BuildResult, Ctx};
use crate::ops::{array, math, nn, quant};

type Builder = fn(&Ctx) -> BuildResult<Box<dyn Op>>;

/// ONNX operator name → builder (default domain).
pub(crate) const OPS: &[(&str, Builder)] = &[
    // nn
    ("Conv", nn::conv),
    ("MaxPool", nn::max_pool),
    ("AveragePool", nn::average_pool),
    ("GlobalAveragePool", nn::global_average_pool),
    ("BatchNormalization", nn::batch_norm),
    ("Relu", nn::relu),
    ("LeakyRelu", nn::leaky_relu),
    ("Sigmoid", nn::sigmoid),
    ("Tanh", nn::tanh),
    ("Erf", nn::erf),
    ("Gelu", nn::gelu),
    ("Clip", nn::clip),
    ("Softmax", nn::softmax),
    ("LogSoftmax", nn::log_softmax),
    ("Dropout", nn::identity),
    ("Identity", nn::identity),
    // math
    ("Add", math::add),
    ("Sub", math::sub),
    ("Mul", math::mul),
    ("Div", math::div),
    ("Gemm", math::gemm),
    ("MatMul", math::matmul),
    ("ReduceMean", math::reduce_mean),
    ("ReduceSum", math::reduce_sum),
    ("Neg", math::neg),
    ("Exp", math::exp),
    ("Sqrt", math::sqrt),
    ("Abs", math::abs),
    // array and shape
    ("Reshape", array::reshape),
    ("Flatten", array::flatten),
    ("Transpose", array::transpose),
    ("Concat", array::concat),
    ("Slice", array::slice),
    ("Pad", array::pad),
    ("Shape", array::shape),
    ("Gather", array::gather),
    ("Squeeze", array::squeeze),
    ("Unsqueeze", array::unsqueeze),
    ("ConstantOfShape", array::constant_of_shape),
    ("Cast", array::cast),
    ("Expand", array::expand),
    // quantization (QDQ and QOperator formats)
    ("QuantizeLinear", quant::quantize_linear),
    ("DequantizeLinear", quant::dequantize_linear),
    ("QLinearConv", quant::qlinear_conv),
    ("QLinearMatMul", quant::qlinear_matmul),
    ("MatMulInteger", quant::matmul_integer),
    ("ConvInteger", quant::conv_integer),
];

/// The builder for `op_type`, if supported.
pub(crate) fn lookup(op_type: &str) -> Option<Builder> {
    OPS.iter().find(|(n, _)| *n == op_type).map(|(_, b)| *b)
}

/// Names of all supported operators, `Constant` included, for `faultline list` and docs.
pub fn supported_ops() -> Vec<&'static str> {
    let mut v: Vec<&str> = OPS.iter().map(|(n, _)| *n).collect();
    v.push("Constant");
    v.sort_unstable();
    v
}
