//! Writing a QDQ-quantized copy of a float model (`faultline quantize`): weights of Conv, Gemm
//! and MatMul become int8 initializers behind a DequantizeLinear (symmetric, zero point 0, per
//! tensor or per output channel), and the activation each of them reads gets a
//! QuantizeLinear → DequantizeLinear pair (asymmetric int8, scale and zero point from
//! calibration) — the QDQ format of ONNX Runtime's `quantize_static`, loadable by ORT (which
//! fuses the pairs into integer kernels) and by faultline.
//!
//! The float bias of a Conv or Gemm whose weights and activation are quantized becomes int32
//! behind a DequantizeLinear, with scale `activation scale × weight scale` (per channel with
//! per-channel weights) and zero point 0, as `quantize_static` writes it. Left float, ONNX
//! Runtime would quantize it so itself while optimizing the graph (its `BiasQuantization`
//! transformer, since 1.20) and so compute with a bias faultline does not: with 4-bit scales
//! the rounding moved 17 % of the demo ResNet-20's predictions.
//!
//! 4-bit quantization is fake quantization in the int8 format: weights take values in
//! [−7, 7], activations are clipped (a Clip node) to the 16 levels of their 4-bit grid before
//! an int8 QuantizeLinear, so every value lies on the 4-bit grid while the file stays int8 QDQ
//! (the int32 biases excepted, on the grid of the product of the two scales).
//!
//! Unlike [`crate::export`], the model is decoded with the importer's subset schema and encoded
//! again: fields it does not declare (doc strings, value_info, metadata, functions) are dropped,
//! which a new, derived model can afford. Models with external data are refused.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;

use crate::error::{Error, Result};
use crate::proto::{
    data_type, float_tensor, raw_tensor, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto,
};

/// A node whose weights and input activation are quantized.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The node's name (or its first output).
    pub node: String,
    /// Conv, Gemm or MatMul.
    pub op_type: String,
    /// The activation it reads (input 0).
    pub activation: String,
    /// Its float weight initializer (input 1).
    pub weight: String,
    /// Its float bias initializer (input 2 of Conv and Gemm), if any.
    pub bias: Option<String>,
    /// The weight axis of the output channels (Conv 0; Gemm 0 with transB, else 1; MatMul 1).
    pub channel_axis: usize,
}

/// How one activation is quantized: `q = saturate(round(x/scale) + zero_point)` in int8, after
/// clipping to `clip` (4-bit fake quantization).
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationQuant {
    /// The activation tensor's name.
    pub name: String,
    /// Scale.
    pub scale: f32,
    /// int8 zero point.
    pub zero_point: i8,
    /// Clip to this range first.
    pub clip: Option<(f32, f32)>,
}

/// What [`write_qdq`] quantizes.
#[derive(Debug, Clone, PartialEq)]
pub struct QdqPlan {
    /// The nodes (from [`targets`]).
    pub targets: Vec<Target>,
    /// Bits of the weights: 8, or 4 (values in [−7, 7], stored as int8).
    pub weight_bits: u8,
    /// One scale per output channel instead of one per tensor.
    pub per_channel: bool,
    /// The activations read by the targets.
    pub activations: Vec<ActivationQuant>,
}

/// The Conv, Gemm and MatMul nodes of `source` whose weights (input 1) are float initializers.
pub fn targets(source: &Path) -> Result<Vec<Target>> {
    let m = ModelProto::read(source)?;
    let g = m.graph.unwrap_or_default();
    let floats: HashSet<&str> = g
        .initializer
        .iter()
        .filter(|t| t.data_type == Some(data_type::FLOAT))
        .filter_map(|t| t.name.as_deref())
        .collect();
    let mut out = Vec::new();
    for n in &g.node {
        let op = n.op_type.as_deref().unwrap_or("");
        let (Some(x), Some(w)) = (n.input.first(), n.input.get(1)) else {
            continue;
        };
        if !floats.contains(w.as_str()) || floats.contains(x.as_str()) {
            continue;
        }
        let int = |a: &str| {
            n.attribute
                .iter()
                .find(|t| t.name.as_deref() == Some(a))
                .and_then(|t| t.i)
                .unwrap_or(0)
        };
        let axis = match op {
            "Conv" => 0,
            "Gemm" if int("transA") != 0 => continue,
            "Gemm" => usize::from(int("transB") == 0),
            "MatMul" => 1,
            _ => continue,
        };
        out.push(Target {
            node: n
                .name
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| n.output.first().cloned())
                .unwrap_or_default(),
            op_type: op.to_string(),
            activation: x.clone(),
            weight: w.clone(),
            bias: n
                .input
                .get(2)
                .filter(|b| op != "MatMul" && floats.contains(b.as_str()))
                .cloned(),
            channel_axis: axis,
        });
    }
    Ok(out)
}

/// Symmetric quantization of `w` (shape `dims`) to `[−qmax, qmax]`, per tensor or per index of
/// `axis`: returns the integers and the scales (`max|w| / qmax`; 1 for an all-zero slice).
pub fn quantize_weights(
    w: &[f32],
    dims: &[usize],
    axis: Option<usize>,
    qmax: i8,
) -> (Vec<i8>, Vec<f32>) {
    let (count, inner) = match axis {
        Some(a) => (dims[a], dims[a + 1..].iter().product::<usize>()),
        None => (1, w.len().max(1)),
    };
    let chan = |e: usize| (e / inner) % count;
    let mut amax = vec![0.0f32; count];
    for (e, v) in w.iter().enumerate() {
        let c = chan(e);
        amax[c] = amax[c].max(v.abs());
    }
    let scales: Vec<f32> = amax
        .iter()
        .map(|&m| if m > 0.0 { m / qmax as f32 } else { 1.0 })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(e, &v)| {
            (v / scales[chan(e)])
                .round_ties_even()
                .clamp(-(qmax as f32), qmax as f32) as i8
        })
        .collect();
    (q, scales)
}

fn int32_tensor(name: &str, dims: &[usize], v: &[i32]) -> TensorProto {
    let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    raw_tensor(name, dims, data_type::INT32, raw)
}

/// The int32 bias `round(b / scale)` (scale per element of `b`, or one for all), saturated.
pub fn quantize_bias(b: &[f32], scales: &[f32]) -> Vec<i32> {
    b.iter()
        .enumerate()
        .map(|(c, &v)| {
            let s = if scales.len() == 1 {
                scales[0]
            } else {
                scales[c]
            };
            (v as f64 / s as f64)
                .round_ties_even()
                .clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect()
}

fn int8_tensor(name: &str, dims: &[usize], v: &[i8]) -> TensorProto {
    raw_tensor(
        name,
        dims,
        data_type::INT8,
        v.iter().map(|&x| x as u8).collect(),
    )
}

/// Quantized values of an initializer: int8 (weights) or int32 (biases).
enum Ints {
    I8(Vec<i8>),
    I32(Vec<i32>),
}

impl Ints {
    fn tensor(&self, name: &str, dims: &[usize]) -> TensorProto {
        match self {
            Ints::I8(v) => int8_tensor(name, dims, v),
            Ints::I32(v) => int32_tensor(name, dims, v),
        }
    }
    fn zeros(&self, n: usize) -> Ints {
        match self {
            Ints::I8(_) => Ints::I8(vec![0; n]),
            Ints::I32(_) => Ints::I32(vec![0; n]),
        }
    }
}

/// Replaces initializer `init` by its quantized values `q` behind a DequantizeLinear with
/// `scales` (per index of `axis`, or per tensor) and zero points 0, whose output keeps the
/// initializer's name, so consumers are unchanged; the new initializers and node go to `out`.
fn behind_dq(
    init: &mut TensorProto,
    q: Ints,
    scales: &[f32],
    axis: Option<usize>,
    out: (&mut Vec<TensorProto>, &mut Vec<NodeProto>),
) {
    let name = init.name.clone().unwrap_or_default();
    let dims: Vec<usize> = init.dims.iter().map(|&d| d as usize).collect();
    let sdims: Vec<usize> = if axis.is_some() {
        vec![scales.len()]
    } else {
        vec![]
    };
    let (qn, sn, zn) = (
        format!("{name}_quantized"),
        format!("{name}_scale"),
        format!("{name}_zero_point"),
    );
    *init = q.tensor(&qn, &dims);
    out.0.push(float_tensor(&sn, &sdims, scales));
    out.0.push(q.zeros(scales.len()).tensor(&zn, &sdims));
    out.1.push(node(
        "DequantizeLinear",
        &format!("{name}_DequantizeLinear"),
        &[&qn, &sn, &zn],
        &name,
        axis.map(|a| a as i64),
    ));
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str, axis: Option<i64>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(name.into()),
        op_type: Some(op.into()),
        domain: None,
        attribute: axis
            .map(|a| AttributeProto {
                name: Some("axis".into()),
                r#type: Some(2), // INT
                i: Some(a),
                ..Default::default()
            })
            .into_iter()
            .collect(),
    }
}

/// Writes the QDQ model of `plan` for `source` to `out`; returns the number of weights and
/// activations quantized.
pub fn write_qdq(source: &Path, plan: &QdqPlan, out: &Path) -> Result<(usize, usize)> {
    let err = |msg: String| Error::Model {
        path: source.to_path_buf(),
        msg,
    };
    let mut m = ModelProto::read(source)?;
    if plan.per_channel && m.default_opset() < 13 {
        return Err(err(format!(
            "per-channel quantization needs opset 13 or later; the model has opset {}",
            m.default_opset()
        )));
    }
    if m.default_opset() < 10 {
        return Err(err("QuantizeLinear needs opset 10 or later".into()));
    }
    let qmax: i8 = match plan.weight_bits {
        8 => 127,
        4 => 7,
        b => return Err(err(format!("{b}-bit weights: use 8 or 4"))),
    };
    let mut g: GraphProto = m.graph.take().unwrap_or_default();
    if g.initializer.iter().any(|t| t.data_location == Some(1)) {
        return Err(err(
            "models with external data cannot be quantized yet".into()
        ));
    }
    // The DequantizeLinear nodes of weights and biases, then the graph's own nodes.
    let mut nodes = Vec::new();
    let mut new_inits = Vec::new();
    let weights: HashMap<&str, &Target> = plan
        .targets
        .iter()
        .map(|t| (t.weight.as_str(), t))
        .collect();
    let mut done = HashSet::new();
    // The weight scales of each weight quantized.
    let mut weight_scales: HashMap<String, Vec<f32>> = HashMap::new();
    for init in &mut g.initializer {
        let name = init.name.clone().unwrap_or_default();
        let Some(t) = weights.get(name.as_str()) else {
            continue;
        };
        if !done.insert(name.clone()) {
            continue;
        }
        let w = crate::tensor::to_tensor(init, Path::new(""))
            .and_then(|t| t.into_f32().map_err(|e| e.to_string()))
            .map_err(|e| err(format!("initializer '{name}': {e}")))?;
        let dims: Vec<usize> = init.dims.iter().map(|&d| d as usize).collect();
        let axis = plan.per_channel.then_some(t.channel_axis);
        if axis.is_some_and(|a| a >= dims.len()) {
            return Err(err(format!(
                "weight '{name}' has no axis {}",
                t.channel_axis
            )));
        }
        let (q, s) = quantize_weights(&w, &dims, axis, qmax);
        behind_dq(init, Ints::I8(q), &s, axis, (&mut new_inits, &mut nodes));
        weight_scales.insert(name, s);
    }
    let acts: HashMap<&str, &ActivationQuant> = plan
        .activations
        .iter()
        .map(|a| (a.name.as_str(), a))
        .collect();
    // The bias scales: activation scale × weight scale, for the biases of targets whose
    // activation and weights are both quantized (None: targets sharing it disagree).
    let mut bias_scales: HashMap<&str, Option<Vec<f32>>> = HashMap::new();
    for t in &plan.targets {
        let (Some(b), Some(a), Some(ws)) = (
            t.bias.as_deref(),
            acts.get(t.activation.as_str()),
            weight_scales.get(&t.weight),
        ) else {
            continue;
        };
        let sc: Vec<f32> = ws.iter().map(|w| a.scale * w).collect();
        bias_scales
            .entry(b)
            .and_modify(|e| {
                if e.as_ref() != Some(&sc) {
                    *e = None;
                }
            })
            .or_insert(Some(sc));
    }
    for init in &mut g.initializer {
        let name = init.name.clone().unwrap_or_default();
        let Some(Some(sc)) = bias_scales.get(name.as_str()) else {
            continue;
        };
        let b = crate::tensor::to_tensor(init, Path::new(""))
            .and_then(|t| t.into_f32().map_err(|e| e.to_string()))
            .map_err(|e| err(format!("initializer '{name}': {e}")))?;
        if sc.len() != 1 && sc.len() != b.len() {
            return Err(err(format!(
                "bias '{name}' has {} values for {} output channels",
                b.len(),
                sc.len()
            )));
        }
        let q = Ints::I32(quantize_bias(&b, sc));
        let axis = (sc.len() != 1).then_some(0);
        behind_dq(init, q, sc, axis, (&mut new_inits, &mut nodes));
    }
    let readers: HashSet<&str> = plan.targets.iter().map(|t| t.node.as_str()).collect();
    let mut emitted: HashSet<String> = HashSet::new();
    for mut n in std::mem::take(&mut g.node) {
        let id = n
            .name
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| n.output.first().cloned())
            .unwrap_or_default();
        if readers.contains(id.as_str()) {
            if let Some(a) = n.input.first().and_then(|x| acts.get(x.as_str())) {
                let x = a.name.as_str();
                let dq = format!("{x}_DequantizeLinear_Output");
                if emitted.insert(x.to_string()) {
                    let (sn, zn) = (format!("{x}_scale"), format!("{x}_zero_point"));
                    new_inits.push(float_tensor(&sn, &[], &[a.scale]));
                    new_inits.push(int8_tensor(&zn, &[], &[a.zero_point]));
                    let mut src = x.to_string();
                    if let Some((lo, hi)) = a.clip {
                        let (ln, hn, c) = (
                            format!("{x}_clip_min"),
                            format!("{x}_clip_max"),
                            format!("{x}_clipped"),
                        );
                        new_inits.push(float_tensor(&ln, &[], &[lo]));
                        new_inits.push(float_tensor(&hn, &[], &[hi]));
                        if m.default_opset() < 11 {
                            return Err(err(
                                "4-bit activations need opset 11 (Clip with inputs)".into()
                            ));
                        }
                        nodes.push(node("Clip", &format!("{x}_Clip"), &[x, &ln, &hn], &c, None));
                        src = c;
                    }
                    let q = format!("{x}_QuantizeLinear_Output");
                    nodes.push(node(
                        "QuantizeLinear",
                        &format!("{x}_QuantizeLinear"),
                        &[&src, &sn, &zn],
                        &q,
                        None,
                    ));
                    nodes.push(node(
                        "DequantizeLinear",
                        &format!("{x}_DequantizeLinear"),
                        &[&q, &sn, &zn],
                        &dq,
                        None,
                    ));
                }
                n.input[0] = dq;
            }
        }
        nodes.push(n);
    }
    g.node = nodes;
    g.initializer.extend(new_inits);
    m.graph = Some(g);
    if !m
        .opset_import
        .iter()
        .any(|o| o.domain.as_deref().unwrap_or("").is_empty())
    {
        m.opset_import.push(OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        });
    }
    std::fs::write(out, m.encode_to_vec()).map_err(|error| Error::Io {
        path: out.to_path_buf(),
        error,
    })?;
    Ok((done.len(), emitted.len()))
}

/// Asymmetric int8 parameters of a calibrated range `[lo, hi]` (widened to contain 0) with
/// `levels` levels (256 for 8 bits, 16 for 4 bits), and for 4 bits the clip range of the grid:
/// `scale = (hi − lo)/(levels − 1)`, `zero_point = round(qmin − lo/scale)` clamped, qmin = −128
/// or −8.
pub fn activation_quant(name: &str, lo: f32, hi: f32, bits: u8) -> ActivationQuant {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let (qmin, qmax) = if bits == 4 {
        (-8.0f32, 7.0f32)
    } else {
        (-128.0, 127.0)
    };
    let scale = if hi > lo {
        (hi - lo) / (qmax - qmin)
    } else {
        1.0
    };
    let zp = (qmin - lo / scale).round_ties_even().clamp(qmin, qmax);
    ActivationQuant {
        name: name.into(),
        scale,
        zero_point: zp as i8,
        clip: (bits == 4).then_some(((qmin - zp) * scale, (qmax - zp) * scale)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/quant")
            .join(name)
    }

    /// The values of an initializer (float or integer) as floats.
    fn floats(t: &TensorProto) -> Vec<f32> {
        match crate::tensor::to_tensor(t, Path::new("")).unwrap().data() {
            faultline_engine::Data::F32(v) => v.clone(),
            faultline_engine::Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Writes the tiny fixture model quantized to `bits` and decodes the result.
    fn written(bits: u8, per_channel: bool) -> (QdqPlan, ModelProto) {
        let src = fixture("float.onnx");
        let tg = targets(&src).unwrap();
        let activations = tg
            .iter()
            .enumerate()
            .map(|(i, t)| activation_quant(&t.activation, -0.1, 1.0 + i as f32, bits))
            .collect();
        let plan = QdqPlan {
            targets: tg,
            weight_bits: bits,
            per_channel,
            activations,
        };
        // A name of its own per call: tests run in parallel threads of one process, and two
        // writing (then deleting) the same file made one read it half-written or gone.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = std::env::temp_dir().join(format!(
            "faultline-qdq-{}-{call}-{bits}-{per_channel}.onnx",
            std::process::id()
        ));
        write_qdq(&src, &plan, &out).unwrap();
        let m = ModelProto::read(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        (plan, m)
    }

    #[test]
    fn biases_become_int32_on_the_grid_of_activation_times_weight_scale() {
        // Left float, ONNX Runtime quantizes them itself while optimizing (and computes with a
        // bias faultline does not): the written model must carry them quantized already.
        for (bits, per_channel) in [(8, false), (8, true), (4, false), (4, true)] {
            let (plan, m) = written(bits, per_channel);
            let g = m.graph.unwrap();
            let init = |n: &str| g.initializer.iter().find(|t| t.name.as_deref() == Some(n));
            let maker = |out: &str| g.node.iter().find(|n| n.output.iter().any(|o| o == out));
            let src = ModelProto::read(&fixture("float.onnx"))
                .unwrap()
                .graph
                .unwrap();
            let convs: Vec<&Target> = plan.targets.iter().filter(|t| t.bias.is_some()).collect();
            assert_eq!(convs.len(), 2, "the two Conv nodes have biases");
            for t in convs {
                let b = t.bias.as_deref().unwrap();
                assert!(init(b).is_none(), "{b} is still a float initializer");
                let dq = maker(b).unwrap();
                assert_eq!(dq.op_type.as_deref(), Some("DequantizeLinear"));
                let q = init(&dq.input[0]).unwrap();
                assert_eq!(q.data_type, Some(data_type::INT32));
                let scale = floats(init(&dq.input[1]).unwrap());
                let w_scale = floats(init(&format!("{}_scale", t.weight)).unwrap());
                let a = plan
                    .activations
                    .iter()
                    .find(|a| a.name == t.activation)
                    .unwrap();
                let want: Vec<f32> = w_scale.iter().map(|s| a.scale * s).collect();
                assert_eq!(scale, want, "{b}");
                let original = floats(
                    src.initializer
                        .iter()
                        .find(|i| i.name.as_deref() == Some(b))
                        .unwrap(),
                );
                for (c, (&v, &qv)) in original.iter().zip(&floats(q)).enumerate() {
                    let s = scale[if scale.len() == 1 { 0 } else { c }];
                    assert!((qv * s - v).abs() <= s / 2.0, "{b}[{c}]");
                }
            }
        }
    }

    #[test]
    fn four_bit_weights_and_activations_stay_on_the_four_bit_grid() {
        let (plan, m) = written(4, true);
        let g = m.graph.unwrap();
        for t in &plan.targets {
            let q = g
                .initializer
                .iter()
                .find(|i| i.name.as_deref() == Some(&format!("{}_quantized", t.weight)))
                .unwrap();
            assert!(floats(q).iter().all(|v| (-7.0..=7.0).contains(v)));
        }
        for a in &plan.activations {
            let (lo, hi) = a.clip.unwrap();
            let z = a.zero_point as f32;
            assert_eq!(
                ((lo / a.scale).round() + z, (hi / a.scale).round() + z),
                (-8.0, 7.0)
            );
        }
    }
}
