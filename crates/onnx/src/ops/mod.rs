//! ONNX operator builders by family. Each turns a node (attributes with the specification's
//! defaults, opset-dependent forms) into an engine operator.

pub(crate) mod array;
pub(crate) mod math;
pub(crate) mod nn;
pub(crate) mod quant;
