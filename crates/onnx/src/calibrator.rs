//! The calibrator of `faultline calibrate` as ONNX: a small image-to-image network G placed in
//! front of a frozen classifier f, so that f sees `clip(x + ε·tanh(G(x)))` (Ye et al. 2019,
//! "Brain-inspired reverse adversarial examples", methods.md §4.3 B).
//!
//! G is a stem convolution, `blocks` residual blocks (conv → ReLU → conv, plus the block's input,
//! → ReLU) and a head convolution back to the image's channels, all 3×3 with padding 1 and
//! `width` channels; no normalization layer (the follow-up's ResNet-9 generator uses instance
//! norm [CODE]; at CIFAR size two plain blocks train stably, and the engine trains either).
//! The perturbation is signed (the issue's `ε·tanh`, where the follow-up's is non-negative) and
//! bounded per channel; the sum is clipped to the model's input box. Both bounds are in the
//! model's input units, so a model that expects normalized input (mean/std applied outside the
//! graph) gets ε/std and the normalized box, and `combined.onnx` takes exactly the input the
//! model takes: it is a drop-in replacement.
//!
//! Every tensor and node of G is named with [`PREFIX`], so training can select G's weights by
//! name and leave f's frozen. [`prepend`] writes the combined graph; [`standalone`] G alone;
//! [`float_initializers`] reads trained weights back from a file.
//!
//! Like [`crate::qdq`], the model is decoded with the importer's subset schema and encoded
//! again: fields it does not declare (doc strings, value_info, metadata) are dropped, which a
//! new, derived model can afford. Models with external data are refused.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;

use crate::error::{Error, Result};
use crate::proto::{
    data_type, float_tensor, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};

/// Prefix of every tensor and node name of the calibrator.
pub const PREFIX: &str = "calibrator/";

/// Shape and bounds of a calibrator.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibratorSpec {
    /// Image channels (input and output).
    pub channels: usize,
    /// Channels of the hidden layers.
    pub width: usize,
    /// Residual blocks.
    pub blocks: usize,
    /// Per-channel bound of the perturbation, in the model's input units.
    pub eps: Vec<f32>,
    /// Per-channel lower end of the input box.
    pub lo: Vec<f32>,
    /// Per-channel upper end of the input box.
    pub hi: Vec<f32>,
}

/// One learnable tensor of G: its name, shape, and fan-in (0 for the head, which starts at zero
/// so that an untrained calibrator is the identity).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Initializer name (with [`PREFIX`]).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Inputs per output of its convolution (`in_channels·3·3`); 0 for the zero-initialized
    /// head.
    pub fan_in: usize,
}

impl CalibratorSpec {
    /// The learnable tensors, in graph order.
    pub fn params(&self) -> Vec<ParamSpec> {
        let (c, w) = (self.channels, self.width);
        let mut out = Vec::new();
        let mut conv = |name: String, cout: usize, cin: usize, zero: bool| {
            let fan_in = if zero { 0 } else { cin * 9 };
            out.push(ParamSpec {
                name: format!("{PREFIX}{name}.weight"),
                shape: vec![cout, cin, 3, 3],
                fan_in,
            });
            out.push(ParamSpec {
                name: format!("{PREFIX}{name}.bias"),
                shape: vec![cout],
                fan_in,
            });
        };
        conv("stem".into(), w, c, false);
        for b in 0..self.blocks {
            conv(format!("block{b}.conv1"), w, w, false);
            conv(format!("block{b}.conv2"), w, w, false);
        }
        conv("head".into(), c, w, true);
        out
    }

    fn check(&self) -> std::result::Result<(), String> {
        let c = self.channels;
        if c == 0 || self.width == 0 {
            return Err("a calibrator needs at least one channel and one hidden channel".into());
        }
        for (what, v) in [
            ("ε", &self.eps),
            ("lower bound", &self.lo),
            ("upper bound", &self.hi),
        ] {
            if v.len() != c {
                return Err(format!("{} {what} values for {c} channels", v.len()));
            }
        }
        if self.eps.iter().any(|e| !(e.is_finite() && *e > 0.0)) {
            return Err("ε must be positive".into());
        }
        if self
            .lo
            .iter()
            .zip(&self.hi)
            .any(|(l, h)| l.partial_cmp(h) != Some(std::cmp::Ordering::Less))
        {
            return Err("every lower bound must lie below its upper bound".into());
        }
        Ok(())
    }

    /// The nodes and initializers of G from `input` to `output`; `value(param)` gives each
    /// learnable tensor's values (row-major, the shape of [`CalibratorSpec::params`]).
    fn graph(
        &self,
        input: &str,
        output: &str,
        value: &mut dyn FnMut(&ParamSpec) -> Vec<f32>,
    ) -> std::result::Result<(Vec<NodeProto>, Vec<TensorProto>), String> {
        self.check()?;
        let mut inits = Vec::new();
        for p in self.params() {
            let v = value(&p);
            if v.len() != p.shape.iter().product::<usize>() {
                return Err(format!(
                    "{} values for '{}' of shape {:?}",
                    v.len(),
                    p.name,
                    p.shape
                ));
            }
            inits.push(float_tensor(&p.name, &p.shape, &v));
        }
        let c = self.channels;
        for (name, v) in [("eps", &self.eps), ("lo", &self.lo), ("hi", &self.hi)] {
            inits.push(float_tensor(&format!("{PREFIX}{name}"), &[1, c, 1, 1], v));
        }
        let mut nodes = Vec::new();
        let v = |s: &str| format!("{PREFIX}{s}");
        let conv = |nodes: &mut Vec<NodeProto>, name: &str, x: &str| -> String {
            let out = v(name);
            nodes.push(NodeProto {
                input: vec![
                    x.into(),
                    v(&format!("{name}.weight")),
                    v(&format!("{name}.bias")),
                ],
                output: vec![out.clone()],
                name: Some(out.clone()),
                op_type: Some("Conv".into()),
                domain: None,
                attribute: vec![
                    ints_attr("kernel_shape", &[3, 3]),
                    ints_attr("pads", &[1, 1, 1, 1]),
                ],
            });
            out
        };
        let stem = conv(&mut nodes, "stem", input);
        let mut x = op(&mut nodes, "Relu", &[&stem], &v("stem.relu"));
        for b in 0..self.blocks {
            let c1 = conv(&mut nodes, &format!("block{b}.conv1"), &x);
            let r1 = op(&mut nodes, "Relu", &[&c1], &v(&format!("block{b}.relu1")));
            let c2 = conv(&mut nodes, &format!("block{b}.conv2"), &r1);
            let sum = op(&mut nodes, "Add", &[&c2, &x], &v(&format!("block{b}.add")));
            x = op(&mut nodes, "Relu", &[&sum], &v(&format!("block{b}.relu2")));
        }
        let head = conv(&mut nodes, "head", &x);
        let t = op(&mut nodes, "Tanh", &[&head], &v("tanh"));
        let d = op(&mut nodes, "Mul", &[&t, &v("eps")], &v("delta"));
        let s = op(&mut nodes, "Add", &[input, &d], &v("sum"));
        let m = op(&mut nodes, "Max", &[&s, &v("lo")], &v("above"));
        let last = nodes.len();
        op(&mut nodes, "Min", &[&m, &v("hi")], output);
        nodes[last].name = Some(v("clip"));
        Ok((nodes, inits))
    }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(7), // INTS
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// Appends a node without attributes; returns its output.
fn op(nodes: &mut Vec<NodeProto>, op_type: &str, inputs: &[&str], output: &str) -> String {
    nodes.push(NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(output.into()),
        op_type: Some(op_type.into()),
        domain: None,
        attribute: Vec::new(),
    });
    output.into()
}

/// G alone as an ONNX model (opset 13): input `input`, N×C×H×W with N, H and W free, output
/// `calibrated` of the same shape.
pub fn standalone(
    spec: &CalibratorSpec,
    value: &mut dyn FnMut(&ParamSpec) -> Vec<f32>,
) -> std::result::Result<Vec<u8>, String> {
    let (node, initializer) = spec.graph("input", "calibrated", value)?;
    let info = |name: &str| {
        let dim = |d: Dimension| d;
        let dims = vec![
            dim(Dimension {
                dim_value: None,
                dim_param: Some("batch".into()),
            }),
            dim(Dimension {
                dim_value: Some(spec.channels as i64),
                dim_param: None,
            }),
            dim(Dimension {
                dim_value: None,
                dim_param: Some("height".into()),
            }),
            dim(Dimension {
                dim_value: None,
                dim_param: Some("width".into()),
            }),
        ];
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                tensor_type: Some(TypeProtoTensor {
                    elem_type: Some(data_type::FLOAT),
                    shape: Some(TensorShapeProto { dim: dims }),
                }),
            }),
        }
    };
    let m = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        producer_name: Some("faultline".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(GraphProto {
            node,
            name: Some("calibrator".into()),
            initializer,
            input: vec![info("input")],
            output: vec![info("calibrated")],
        }),
    };
    Ok(m.encode_to_vec())
}

/// The model at `model` with G in front: G reads the model's image input, and every node that
/// read the input reads G's output instead. The result keeps the model's input and output
/// declarations, opset and IR version.
pub fn prepend(
    spec: &CalibratorSpec,
    value: &mut dyn FnMut(&ParamSpec) -> Vec<f32>,
    model: &Path,
) -> Result<Vec<u8>> {
    let err = |msg: String| Error::Model {
        path: model.to_path_buf(),
        msg,
    };
    let mut m = ModelProto::read(model)?;
    let opset = m.default_opset();
    if opset < 8 {
        return Err(err(format!(
            "opset {opset}: the calibrator's broadcasting Max/Min need opset 8 or later"
        )));
    }
    let mut g = m
        .graph
        .take()
        .ok_or_else(|| err("no graph in the file".into()))?;
    if g.initializer.iter().any(|t| t.data_location == Some(1)) {
        return Err(err(
            "models with external data cannot take a calibrator yet".into(),
        ));
    }
    if g.initializer
        .iter()
        .chain(
            g.node
                .iter()
                .flat_map(|n| n.attribute.iter().filter_map(|a| a.t.as_ref())),
        )
        .any(|t| t.name.as_deref().is_some_and(|n| n.starts_with(PREFIX)))
        || g.node
            .iter()
            .flat_map(|n| n.output.iter())
            .any(|o| o.starts_with(PREFIX))
    {
        return Err(err(format!(
            "the model already has tensors named '{PREFIX}…' (a calibrator in front?)"
        )));
    }
    let inits: std::collections::HashSet<&str> = g
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    let input = g
        .input
        .iter()
        .filter_map(|i| i.name.clone())
        .find(|n| !inits.contains(n.as_str()))
        .ok_or_else(|| err("the graph declares no image input".into()))?;
    let calibrated = format!("{PREFIX}output");
    for node in &mut g.node {
        for i in &mut node.input {
            if *i == input {
                i.clone_from(&calibrated);
            }
        }
    }
    if g.output
        .iter()
        .any(|o| o.name.as_deref() == Some(input.as_str()))
    {
        return Err(err(format!(
            "the graph's input '{input}' is also an output"
        )));
    }
    let (mut nodes, mut tensors) = spec.graph(&input, &calibrated, value).map_err(err)?;
    nodes.append(&mut g.node);
    g.node = nodes;
    tensors.append(&mut g.initializer);
    g.initializer = tensors;
    m.graph = Some(g);
    Ok(m.encode_to_vec())
}

/// The float initializers of the file at `path` whose names start with `prefix`, by name.
pub fn float_initializers(path: &Path, prefix: &str) -> Result<HashMap<String, Vec<f32>>> {
    let m = ModelProto::read(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = HashMap::new();
    for t in m.graph.iter().flat_map(|g| g.initializer.iter()) {
        let name = t.name.clone().unwrap_or_default();
        if !name.starts_with(prefix) || t.data_type != Some(data_type::FLOAT) {
            continue;
        }
        let v = crate::tensor::to_tensor(t, dir).map_err(|msg| Error::Model {
            path: path.to_path_buf(),
            msg: format!("initializer '{name}': {msg}"),
        })?;
        out.insert(name, v.as_f32().unwrap_or(&[]).to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CalibratorSpec {
        CalibratorSpec {
            channels: 3,
            width: 4,
            blocks: 1,
            eps: vec![0.1; 3],
            lo: vec![0.0; 3],
            hi: vec![1.0; 3],
        }
    }

    #[test]
    fn an_untrained_calibrator_is_the_identity_and_bounds_hold() {
        // Zero head: δ = 0, so the output is the clipped input.
        let bytes = standalone(&spec(), &mut |p| {
            let n = p.shape.iter().product();
            if p.fan_in == 0 {
                vec![0.0; n]
            } else {
                (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect()
            }
        })
        .unwrap();
        let (mut model, _) =
            crate::load_bytes(&bytes, Path::new("calibrator.onnx"), Path::new(".")).unwrap();
        model.prepare([3, 4, 4], None).unwrap();
        let x: Vec<f32> = (0..48).map(|i| i as f32 / 47.0).collect();
        let y = model.logits(&x).unwrap();
        assert_eq!(y, x);
        // A non-zero head moves each pixel by at most ε, and the result stays in [0, 1].
        let bytes = standalone(&spec(), &mut |p| {
            let n = p.shape.iter().product();
            (0..n).map(|i| ((i % 5) as f32 - 2.0) * 0.7).collect()
        })
        .unwrap();
        let (mut model, _) =
            crate::load_bytes(&bytes, Path::new("calibrator.onnx"), Path::new(".")).unwrap();
        model.prepare([3, 4, 4], None).unwrap();
        let y = model.logits(&x).unwrap();
        assert!(
            y.iter().zip(&x).any(|(a, b)| a != b),
            "the head moved pixels"
        );
        for (a, b) in y.iter().zip(&x) {
            assert!((a - b).abs() <= 0.1 + 1e-6 && (0.0..=1.0).contains(a));
        }
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut s = spec();
        s.eps = vec![0.1; 2];
        assert!(standalone(&s, &mut |_| vec![])
            .unwrap_err()
            .contains("2 ε values"));
        let mut s = spec();
        s.lo[1] = 1.0;
        assert!(standalone(&s, &mut |_| vec![]).is_err());
        assert!(standalone(&spec(), &mut |_| vec![0.0])
            .unwrap_err()
            .contains("values for 'calibrator/stem.weight'"));
    }
}
