//! ONNX import for faultline's engine.
//!
//! [`load`] decodes a `.onnx` file (protobuf, via prost with the official field numbers; weights
//! inline or in external `.onnx.data` files), maps every node through the operator registry
//! (`registry.rs`, one table), and hands the graph to the engine, which folds constants and
//! batch norms. Every unsupported operator is reported at once, with node name and opset.
#![warn(missing_docs)]

mod attrs;
mod error;
mod ops;
mod proto;
mod registry;
mod tensor;

use std::path::Path;

use faultline_engine::{GraphBuilder, Model, Tensor};
use prost::Message;

pub use error::{Error, Result, UnsupportedOp};
pub use registry::supported_ops;

/// Opset versions of the default domain that the importer is written and tested for.
pub const OPSETS: std::ops::RangeInclusive<i64> = 7..=22;

/// Facts about an imported file, for the run record.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Opset of the default domain.
    pub opset: i64,
    /// Producer name and version as written by the exporter.
    pub producer: String,
    /// Name of the image input.
    pub input_name: String,
    /// Name of the logits output.
    pub output_name: String,
    /// Number of nodes in the file.
    pub nodes_in_file: usize,
}

/// Loads an ONNX classifier. Call [`Model::prepare`] with the image shape before running it.
pub fn load(path: &Path) -> Result<(Model, ModelInfo)> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    load_bytes(&bytes, path, dir)
}

/// Loads from bytes; `path` is used in messages and `dir` to resolve external data.
pub fn load_bytes(bytes: &[u8], path: &Path, dir: &Path) -> Result<(Model, ModelInfo)> {
    let p = || path.to_path_buf();
    let model = proto::ModelProto::decode(bytes).map_err(|e| Error::Decode { path: p(), reason: e.to_string() })?;
    let graph = model.graph.as_ref().ok_or_else(|| Error::Decode { path: p(), reason: "no graph in the file".into() })?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .unwrap_or(1);
    if !OPSETS.contains(&opset) {
        return Err(Error::Model {
            path: p(),
            msg: format!("opset {opset} is outside the supported range {}–{}", OPSETS.start(), OPSETS.end()),
        });
    }
    let mut b = GraphBuilder::new();
    for init in &graph.initializer {
        let name = init.name.clone().unwrap_or_default();
        let t = tensor::to_tensor(init, dir).map_err(|msg| Error::Model { path: p(), msg: format!("initializer '{name}': {msg}") })?;
        b.constant(&name, t);
    }
    let inputs: Vec<&proto::ValueInfoProto> =
        graph.input.iter().filter(|i| !b.has(i.name.as_deref().unwrap_or_default())).collect();
    let [input] = inputs.as_slice() else {
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_deref().unwrap_or("?")).collect();
        return Err(Error::Model {
            path: p(),
            msg: format!("faultline needs exactly one image input; the model has {}: {names:?}", names.len()),
        });
    };
    let input_name = input.name.clone().unwrap_or_default();
    let tt = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    if let Some(et) = tt.and_then(|t| t.elem_type) {
        if et != proto::data_type::FLOAT {
            return Err(Error::Model { path: p(), msg: format!("input '{input_name}' has element type {et}; only float32 input is supported") });
        }
    }
    let declared: Vec<Option<usize>> = tt
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.iter().map(|d| d.dim_value.filter(|&v| v > 0).map(|v| v as usize)).collect())
        .unwrap_or_default();
    let fixed_batch = declared.first().copied().flatten();
    b.input(&input_name);
    let output_name = graph
        .output
        .first()
        .and_then(|o| o.name.clone())
        .ok_or_else(|| Error::Model { path: p(), msg: "the graph declares no output".into() })?;

    let mut unsupported = Vec::new();
    for node in &graph.node {
        let op_type = node.op_type.clone().unwrap_or_default();
        let name = node.name.clone().filter(|n| !n.is_empty()).or_else(|| node.output.first().cloned()).unwrap_or_default();
        let domain = node.domain.clone().unwrap_or_default();
        let node_err = |msg: String| Error::Node { path: p(), node: name.clone(), op_type: op_type.clone(), msg };
        let Some(out) = node.output.first() else {
            return Err(node_err("node has no output".into()));
        };
        if !(domain.is_empty() || domain == "ai.onnx") {
            unsupported.push(UnsupportedOp { node: name.clone(), op_type: format!("{domain}.{op_type}"), opset });
            continue;
        }
        let ctx = attrs::Ctx { node, opset, graph: &b, fixed_batch, dir };
        if op_type == "Constant" {
            let t = constant_value(&ctx).map_err(node_err)?;
            b.constant(out, t);
            continue;
        }
        let Some(builder) = registry::lookup(&op_type) else {
            unsupported.push(UnsupportedOp { node: name.clone(), op_type: op_type.clone(), opset });
            continue;
        };
        match builder(&ctx) {
            Ok(op) => {
                let ins: Vec<Option<&str>> = node.input.iter().map(|i| (!i.is_empty()).then_some(i.as_str())).collect();
                b.node(&name, op, &ins, out);
            }
            Err(msg) => return Err(node_err(msg)),
        }
    }
    if !unsupported.is_empty() {
        return Err(Error::UnsupportedOps { path: p(), ops: unsupported });
    }
    let g = b.build(&output_name).map_err(|source| Error::Engine { path: p(), source })?;
    let info = ModelInfo {
        opset,
        producer: format!("{} {}", model.producer_name.unwrap_or_default(), model.producer_version.unwrap_or_default()).trim().to_string(),
        input_name,
        output_name,
        nodes_in_file: graph.node.len(),
    };
    Ok((Model::new(g, declared), info))
}

/// The value of a Constant node (`value`, `value_float(s)`, `value_int(s)`).
fn constant_value(c: &attrs::Ctx) -> std::result::Result<Tensor, String> {
    if let Some(t) = c.tensor("value")? {
        return Ok(t);
    }
    let attr = |n: &str| c.node.attribute.iter().find(|a| a.name.as_deref() == Some(n));
    if let Some(a) = attr("value_float") {
        return Ok(Tensor::scalar(a.f.unwrap_or(0.0)));
    }
    if let Some(a) = attr("value_floats") {
        return Tensor::from_f32(vec![a.floats.len()], a.floats.clone()).map_err(|e| e.to_string());
    }
    if let Some(a) = attr("value_int") {
        return Tensor::from_i64(vec![], vec![a.i.unwrap_or(0)]).map_err(|e| e.to_string());
    }
    if let Some(a) = attr("value_ints") {
        return Tensor::from_i64(vec![a.ints.len()], a.ints.clone()).map_err(|e| e.to_string());
    }
    Err("Constant without a supported value attribute (sparse and string constants are not supported)".into())
}
