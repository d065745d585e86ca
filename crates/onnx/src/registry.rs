//! Every supported ONNX operator, by name, in one table: grep here to see what faultline reads.
//! `Constant` is handled by the importer itself (it defines a value, not an operator).

use faultline_engine::ops::Op;

use crate::attrs::{BuildResult, Ctx};
use crate::ops::{array, math, nn, quant};

type Builder = fn(&Ctx) -> BuildResult<Box<dyn Op>>;
/// A builder for one output of a multi-output operator (the output's index).
type MultiBuilder = fn(&Ctx, usize) -> BuildResult<Box<dyn Op>>;

/// ONNX operator name → builder (default domain; other domains' operators as `domain.name`).
pub(crate) const OPS: &[(&str, Builder)] = &[
    // nn
    ("Conv", nn::conv),
    ("MaxPool", nn::max_pool),
    ("AveragePool", nn::average_pool),
    ("GlobalAveragePool", nn::global_average_pool),
    ("BatchNormalization", nn::batch_norm),
    ("LayerNormalization", nn::layer_norm),
    ("GroupNormalization", nn::group_norm),
    ("InstanceNormalization", nn::instance_norm),
    ("Relu", nn::relu),
    ("LeakyRelu", nn::leaky_relu),
    ("Sigmoid", nn::sigmoid),
    ("Tanh", nn::tanh),
    ("Erf", nn::erf),
    ("Gelu", nn::gelu),
    ("Clip", nn::clip),
    ("HardSigmoid", nn::hard_sigmoid),
    ("HardSwish", nn::hard_swish),
    ("Mish", nn::mish),
    ("Softplus", nn::softplus),
    ("Elu", nn::elu),
    ("Softmax", nn::softmax),
    ("LogSoftmax", nn::log_softmax),
    ("Dropout", nn::identity),
    ("Identity", nn::identity),
    ("Resize", nn::resize),
    // math
    ("Add", math::add),
    ("Sub", math::sub),
    ("Mul", math::mul),
    ("Div", math::div),
    ("Pow", math::pow),
    ("Mod", math::modulo),
    ("Max", math::max),
    ("Min", math::min),
    ("Equal", math::equal),
    ("Less", math::less),
    ("Greater", math::greater),
    ("LessOrEqual", math::less_or_equal),
    ("GreaterOrEqual", math::greater_or_equal),
    ("And", math::and),
    ("Or", math::or),
    ("Xor", math::xor),
    ("Not", math::not),
    ("Gemm", math::gemm),
    ("MatMul", math::matmul),
    ("Einsum", math::einsum),
    ("ReduceMean", math::reduce_mean),
    ("ReduceSum", math::reduce_sum),
    ("ReduceMax", math::reduce_max),
    ("ReduceMin", math::reduce_min),
    ("ReduceProd", math::reduce_prod),
    ("ReduceL1", math::reduce_l1),
    ("ReduceL2", math::reduce_l2),
    ("ReduceSumSquare", math::reduce_sum_square),
    ("ReduceLogSumExp", math::reduce_log_sum_exp),
    ("Neg", math::neg),
    ("Exp", math::exp),
    ("Sqrt", math::sqrt),
    ("Abs", math::abs),
    ("Log", math::log),
    ("Reciprocal", math::reciprocal),
    ("Sign", math::sign),
    ("Floor", math::floor),
    ("Ceil", math::ceil),
    ("Round", math::round),
    // array and shape
    ("Reshape", array::reshape),
    ("Flatten", array::flatten),
    ("Transpose", array::transpose),
    ("Concat", array::concat),
    ("Slice", array::slice),
    ("Pad", array::pad),
    ("Shape", array::shape),
    ("Gather", array::gather),
    ("GatherND", array::gather_nd),
    ("Squeeze", array::squeeze),
    ("Unsqueeze", array::unsqueeze),
    ("ConstantOfShape", array::constant_of_shape),
    ("Cast", array::cast),
    ("Expand", array::expand),
    ("Where", array::where_),
    ("Range", array::range),
    ("Tile", array::tile),
    ("ScatterND", array::scatter_nd),
    ("CumSum", array::cum_sum),
    ("Trilu", array::trilu),
    // quantization (QDQ and QOperator formats)
    ("QuantizeLinear", quant::quantize_linear),
    ("DequantizeLinear", quant::dequantize_linear),
    ("QLinearConv", quant::qlinear_conv),
    ("QLinearMatMul", quant::qlinear_matmul),
    ("MatMulInteger", quant::matmul_integer),
    ("ConvInteger", quant::conv_integer),
    // ONNX Runtime's contrib Q/DQ (the same semantics), which its quantization tool writes for
    // int4 and int16 types in models of opsets that lack them.
    ("com.microsoft.QuantizeLinear", quant::quantize_linear),
    ("com.microsoft.DequantizeLinear", quant::dequantize_linear),
];

/// Operators with several outputs: one engine node per output the graph uses.
pub(crate) const MULTI_OUTPUT_OPS: &[(&str, MultiBuilder)] =
    &[("Split", array::split), ("TopK", array::top_k)];

/// The per-output builder for `op_type`, if it is a supported multi-output operator.
pub(crate) fn lookup_multi(op_type: &str) -> Option<MultiBuilder> {
    MULTI_OUTPUT_OPS
        .iter()
        .find(|(n, _)| *n == op_type)
        .map(|(_, b)| *b)
}

/// The builder for `op_type`, if supported.
pub(crate) fn lookup(op_type: &str) -> Option<Builder> {
    OPS.iter().find(|(n, _)| *n == op_type).map(|(_, b)| *b)
}

/// Names of all supported operators, `Constant` included, for `faultline list` and docs.
pub fn supported_ops() -> Vec<&'static str> {
    let mut v: Vec<&str> = OPS
        .iter()
        .map(|(n, _)| *n)
        .chain(MULTI_OUTPUT_OPS.iter().map(|(n, _)| *n))
        .collect();
    v.push("Constant");
    v.sort_unstable();
    v
}
