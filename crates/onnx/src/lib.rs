//! ONNX import for faultline's engine.
//!
//! [`load`] decodes a `.onnx` file (protobuf, via prost with the official field numbers; weights
//! inline or in external `.onnx.data` files), maps every node through the operator registry
//! (`registry.rs`, one table), and hands the graph to the engine, which folds constants and
//! batch norms. Every unsupported operator is reported at once, with node name and opset.
//!
//! [`export`] writes a fine-tuned model back: the source file with some float initializers
//! given new values, every other byte kept (see `export.rs` for why it works at the wire level).
#![warn(missing_docs)]

mod attrs;
pub mod calibrator;
mod error;
mod export;
mod ops;
mod proto;
pub mod qdq;
mod registry;
mod tensor;

use std::path::Path;

use faultline_engine::{GraphBuilder, Model, Tensor};
use prost::Message;

pub use error::{Error, Result, UnsupportedOp};
pub use export::{
    export, ExportOptions, AUTO_EXTERNAL_THRESHOLD, EXTERNAL_ALIGNMENT, PROTOBUF_LIMIT,
};
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
    let bytes = std::fs::read(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    load_bytes(&bytes, path, dir)
}

/// The names of the file's initializers, in file order: the tensors training may change and
/// [`export`] can write back.
pub fn initializer_names(path: &Path) -> Result<Vec<String>> {
    Ok(proto::ModelProto::read(path)?
        .graph
        .map(|g| g.initializer.into_iter().filter_map(|t| t.name).collect())
        .unwrap_or_default())
}

/// Loads from bytes; `path` is used in messages and `dir` to resolve external data.
pub fn load_bytes(bytes: &[u8], path: &Path, dir: &Path) -> Result<(Model, ModelInfo)> {
    let p = || path.to_path_buf();
    let model = proto::ModelProto::decode(bytes).map_err(|e| Error::Decode {
        path: p(),
        reason: e.to_string(),
    })?;
    let graph = model.graph.as_ref().ok_or_else(|| Error::Decode {
        path: p(),
        reason: "no graph in the file".into(),
    })?;
    let opset = model.default_opset();
    if !OPSETS.contains(&opset) {
        return Err(Error::Model {
            path: p(),
            msg: format!(
                "opset {opset} is outside the supported range {}–{}",
                OPSETS.start(),
                OPSETS.end()
            ),
        });
    }
    let mut b = GraphBuilder::new();
    let mut types = std::collections::HashMap::new();
    for init in &graph.initializer {
        let name = init.name.clone().unwrap_or_default();
        types.insert(name.clone(), init.data_type.unwrap_or(0));
        let t = tensor::to_tensor(init, dir).map_err(|msg| Error::Model {
            path: p(),
            msg: format!("initializer '{name}': {msg}"),
        })?;
        b.constant(&name, t);
    }
    let inputs: Vec<&proto::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !b.has(i.name.as_deref().unwrap_or_default()))
        .collect();
    let [input] = inputs.as_slice() else {
        let names: Vec<&str> = inputs
            .iter()
            .map(|i| i.name.as_deref().unwrap_or("?"))
            .collect();
        return Err(Error::Model {
            path: p(),
            msg: format!(
                "faultline needs exactly one image input; the model has {}: {names:?}",
                names.len()
            ),
        });
    };
    let input_name = input.name.clone().unwrap_or_default();
    let tt = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    if let Some(et) = tt.and_then(|t| t.elem_type) {
        if et != proto::data_type::FLOAT {
            return Err(Error::Model {
                path: p(),
                msg: format!(
                    "input '{input_name}' has element type {et}; only float32 input is supported"
                ),
            });
        }
    }
    let declared: Vec<Option<usize>> = tt
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| d.dim_value.filter(|&v| v > 0).map(|v| v as usize))
                .collect()
        })
        .unwrap_or_default();
    let fixed_batch = declared.first().copied().flatten();
    b.input(&input_name);
    let output_name = graph
        .output
        .first()
        .and_then(|o| o.name.clone())
        .ok_or_else(|| Error::Model {
            path: p(),
            msg: "the graph declares no output".into(),
        })?;

    let mut unsupported = Vec::new();
    for node in &graph.node {
        let op_type = node.op_type.clone().unwrap_or_default();
        let name = node
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| node.output.first().cloned())
            .unwrap_or_default();
        let domain = node.domain.clone().unwrap_or_default();
        let node_err = |msg: String| Error::Node {
            path: p(),
            node: name.clone(),
            op_type: op_type.clone(),
            msg,
        };
        let Some(out) = node.output.first() else {
            return Err(node_err("node has no output".into()));
        };
        // Other domains: only the operators the registry names with their domain.
        let qualified = if domain.is_empty() || domain == "ai.onnx" {
            op_type.clone()
        } else {
            format!("{domain}.{op_type}")
        };
        if qualified != op_type && registry::lookup(&qualified).is_none() {
            unsupported.push(UnsupportedOp {
                node: name.clone(),
                op_type: qualified,
                opset,
            });
            continue;
        }
        let ctx = attrs::Ctx {
            node,
            opset,
            graph: &b,
            fixed_batch,
            dir,
            types: &types,
        };
        if op_type == "Constant" {
            let t = constant_value(&ctx).map_err(node_err)?;
            let ty = node
                .attribute
                .iter()
                .find(|a| a.name.as_deref() == Some("value"))
                .and_then(|a| a.t.as_ref())
                .and_then(|t| t.data_type);
            if let Some(ty) = ty {
                types.insert(out.clone(), ty);
            }
            b.constant(out, t);
            continue;
        }
        if let Some(builder) = registry::lookup_multi(&op_type) {
            let ins: Vec<Option<&str>> = node
                .input
                .iter()
                .map(|i| (!i.is_empty()).then_some(i.as_str()))
                .collect();
            let ops = node
                .output
                .iter()
                .enumerate()
                .filter(|(_, o)| !o.is_empty())
                .map(|(k, o)| Ok((k, o, builder(&ctx, k).map_err(node_err)?)))
                .collect::<Result<Vec<_>>>()?;
            for (k, o, op) in ops {
                b.node(&format!("{name}:{k}"), op, &ins, o);
            }
            continue;
        }
        let Some(builder) = registry::lookup(&qualified) else {
            unsupported.push(UnsupportedOp {
                node: name.clone(),
                op_type: op_type.clone(),
                opset,
            });
            continue;
        };
        match builder(&ctx) {
            Ok(op) => {
                let ins: Vec<Option<&str>> = node
                    .input
                    .iter()
                    .map(|i| (!i.is_empty()).then_some(i.as_str()))
                    .collect();
                b.node(&name, op, &ins, out);
            }
            Err(msg) => return Err(node_err(msg)),
        }
    }
    if !unsupported.is_empty() {
        return Err(Error::UnsupportedOps {
            path: p(),
            ops: unsupported,
        });
    }
    let g = b
        .build(&output_name)
        .map_err(|error| Error::Engine { path: p(), error })?;
    let info = ModelInfo {
        opset,
        producer: format!(
            "{} {}",
            model.producer_name.unwrap_or_default(),
            model.producer_version.unwrap_or_default()
        )
        .trim()
        .to_string(),
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
    let attr = |n: &str| {
        c.node
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(n))
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use proto::*;

    fn tensor(name: &str, dims: &[i64], vals: &[f32]) -> TensorProto {
        TensorProto {
            name: Some(name.into()),
            dims: dims.to_vec(),
            data_type: Some(data_type::FLOAT),
            float_data: vals.to_vec(),
            ..Default::default()
        }
    }

    fn node(op: &str, name: &str, ins: &[&str], out: &str) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some(name.into()),
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: vec![out.into()],
            ..Default::default()
        }
    }

    fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                tensor_type: Some(TypeProtoTensor {
                    elem_type: Some(data_type::FLOAT),
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| Dimension {
                                dim_value: (d > 0).then_some(d),
                                dim_param: (d <= 0).then(|| "N".into()),
                            })
                            .collect(),
                    }),
                }),
            }),
        }
    }

    /// x [N,2] → Gemm(W, b) → logits [N,3], plus extra nodes.
    fn model(extra: Vec<NodeProto>, out: &str) -> Vec<u8> {
        let mut nodes = vec![node("Gemm", "fc", &["x", "W", "b"], "z")];
        nodes.extend(extra);
        let m = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(13),
            }],
            graph: Some(GraphProto {
                node: nodes,
                initializer: vec![
                    tensor("W", &[2, 3], &[1., 0., -1., 2., 1., 0.]),
                    tensor("b", &[3], &[0.5, 0., -0.5]),
                ],
                input: vec![value("x", &[0, 2])],
                output: vec![value(out, &[0, 3])],
                ..Default::default()
            }),
            ..Default::default()
        };
        m.encode_to_vec()
    }

    #[test]
    fn a_hand_built_model_computes_its_formula() {
        let bytes = model(vec![], "z");
        let (mut m, info) = load_bytes(&bytes, Path::new("mem.onnx"), Path::new(".")).unwrap();
        assert_eq!(info.opset, 13);
        m.prepare([1, 1, 2], None).unwrap();
        // z = x·W + b with x = [1, 2]: [1+4+0.5, 0+2, -1+0-0.5]
        assert_eq!(m.logits(&[1.0, 2.0]).unwrap(), vec![5.5, 2.0, -1.5]);
    }

    #[test]
    fn truncated_file_is_a_decode_error_naming_the_file() {
        let bytes = model(vec![], "z");
        let err = load_bytes(
            &bytes[..bytes.len() / 2],
            Path::new("cut.onnx"),
            Path::new("."),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Decode { .. }), "{msg}");
        assert!(
            msg.contains("cut.onnx") && msg.contains("not a valid ONNX model"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_operators_are_all_listed_with_node_and_opset() {
        let extra = vec![
            node("FancyNorm", "norm1", &["z"], "y"),
            node("Mystery", "m2", &["y"], "w"),
        ];
        let err =
            load_bytes(&model(extra, "w"), Path::new("odd.onnx"), Path::new(".")).unwrap_err();
        let msg = err.to_string();
        assert_eq!(
            msg,
            "odd.onnx: unsupported operators FancyNorm (node 'norm1', opset 13), Mystery (node 'm2', opset 13)"
        );
    }

    #[test]
    fn missing_external_data_names_the_file() {
        let mut w = tensor("W", &[2, 3], &[]);
        w.data_location = Some(1);
        w.external_data = vec![StringStringEntryProto {
            key: Some("location".into()),
            value: Some("weights.bin".into()),
        }];
        let mut m = ModelProto::decode(&model(vec![], "z")[..]).unwrap();
        m.graph.as_mut().unwrap().initializer[0] = w;
        let err = load_bytes(
            &m.encode_to_vec(),
            Path::new("ext.onnx"),
            Path::new("/nonexistent-dir"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains(
                "initializer 'W': cannot read external data file /nonexistent-dir/weights.bin"
            ),
            "{err}"
        );
    }

    #[test]
    fn opset_outside_the_range_is_refused() {
        let mut m = ModelProto::decode(&model(vec![], "z")[..]).unwrap();
        m.opset_import[0].version = Some(3);
        let err =
            load_bytes(&m.encode_to_vec(), Path::new("old.onnx"), Path::new(".")).unwrap_err();
        assert!(
            err.to_string()
                .contains("opset 3 is outside the supported range"),
            "{err}"
        );
    }
}
