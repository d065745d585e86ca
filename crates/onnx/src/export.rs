//! ONNX export of fine-tuned weights: the source `.onnx` file with some float initializers given
//! new values.
//!
//! Why at the protobuf wire level: the importer's schema (`proto.rs`) is a subset of onnx.proto,
//! and prost drops the fields a message does not declare, so decoding into it and encoding again
//! would lose metadata_props, value_info, doc strings, functions, training_info, attributes of
//! kinds the importer skips... Instead [`export`] walks the fields of the ModelProto and copies
//! the bytes of each one as they are, except the graph (field 7). In the graph it copies every
//! field except the initializers (field 5) it rewrites, and in those it copies every field except
//! the data fields (float_data, int32_data, int64_data, raw_data, double_data, uint64_data,
//! external_data, data_location), writing the new data where the first of them was. Only the
//! length prefixes of the rewritten messages change, so exporting a file whose weights are
//! `raw_data` with its own values reproduces it byte for byte. The source is first decoded whole
//! with the subset schema, so corrupt input is refused rather than copied.
//!
//! Rewritten initializers are the replaced ones (float32 little-endian) and those the source keeps
//! in external data: their bytes are read and written again (inline, or into the new data file),
//! so the export never refers to the source's data files. Tensors elsewhere (Constant node
//! attributes, subgraphs) are copied untouched; a main-graph node attribute whose tensor lives in
//! external data is refused, as it would not resolve beside the new file.
//!
//! External data follows the ONNX convention: one file `<out file name>.data` beside the model,
//! each tensor with `data_location = EXTERNAL` and `external_data` entries `location` (that file
//! name), `offset` and `length`. Every tensor starts at a multiple of [`EXTERNAL_ALIGNMENT`]
//! (4096, the page size, zero padding) so that readers can memory-map tensors one by one.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use faultline_engine::Tensor;
// prost's wire helpers (public, though hidden from its docs; pinned by the workspace's prost 0.14).
use prost::encoding::{
    decode_key, decode_varint, encode_key, encode_varint, skip_field, DecodeContext, WireType,
};
use prost::Message;

use crate::error::{Error, Result};
use crate::proto::{data_type, ModelProto, StringStringEntryProto, TensorProto};
use crate::tensor::ExternalRef;

/// Offsets in the external data file are multiples of this (bytes).
pub const EXTERNAL_ALIGNMENT: usize = 4096;
/// Largest model file protobuf can encode: 2 GiB − 1 bytes.
pub const PROTOBUF_LIMIT: usize = i32::MAX as usize;
/// Threshold (bytes) used when [`export`] moves tensors to external data by itself.
pub const AUTO_EXTERNAL_THRESHOLD: usize = 1024;

/// Options of [`export`].
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Rewritten tensors (the replaced ones, and those the source keeps in external data) of at
    /// least this many bytes go to the external data file `<out file name>.data` beside the model,
    /// each at an offset aligned to [`EXTERNAL_ALIGNMENT`]. `None` keeps everything inline, except
    /// that export switches to external data by itself, with [`AUTO_EXTERNAL_THRESHOLD`], when the
    /// file would exceed protobuf's 2 GiB limit ([`PROTOBUF_LIMIT`]).
    pub external_threshold: Option<usize>,
}

/// Writes `source` (an .onnx file) to `out` with the float initializers named in `replace`
/// given new values (float32, same element count and shape as the original; anything else is an
/// error naming the initializer). Every other byte of the model is kept as it was.
/// Returns the names replaced, in file order; a name in `replace` that is not an initializer of
/// the main graph is an error. Nothing is written when an error is found in the input. The
/// source (and its external data) is read whole before anything is written, so `out` may be
/// `source`; `<out>.data` is (over)written only when some tensor goes to external data.
pub fn export(
    source: &Path,
    replace: &[(&str, &Tensor)],
    out: &Path,
    opts: &ExportOptions,
) -> Result<Vec<String>> {
    let src = std::fs::read(source).map_err(|error| Error::Io {
        path: source.to_path_buf(),
        error,
    })?;
    let data_name = match out.file_name().map(|n| n.to_str()) {
        Some(Some(n)) => format!("{n}.data"),
        _ => {
            return Err(Error::Model {
                path: out.to_path_buf(),
                msg: "the output path needs a file name in UTF-8".into(),
            })
        }
    };
    let built = build(
        &src,
        source,
        replace,
        &data_name,
        opts.external_threshold,
        PROTOBUF_LIMIT,
    )?;
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })
    };
    if let Some(data) = &built.data {
        write(&out.with_file_name(&data_name), data)?;
    }
    write(out, &built.model)?;
    Ok(built.replaced)
}

/// The exported model's bytes, its external data if any, and the names replaced.
#[derive(Debug)]
struct Built {
    model: Vec<u8>,
    data: Option<Vec<u8>>,
    replaced: Vec<String>,
}

/// One protobuf field of a message: its bytes (key included) and, when length-delimited, the
/// payload's.
struct Field {
    tag: u32,
    whole: Range<usize>,
    payload: Option<Range<usize>>,
}

/// The fields of a message, in order.
fn fields(buf: &[u8]) -> std::result::Result<Vec<Field>, prost::DecodeError> {
    let mut cur = buf;
    let pos = |cur: &[u8]| buf.len() - cur.len();
    let mut out = Vec::new();
    while !cur.is_empty() {
        let start = pos(cur);
        let (tag, wire) = decode_key(&mut cur)?;
        // A length-delimited payload is the last `len` bytes of the field; skip_field checks
        // that they are there.
        let mut peek = cur;
        let len = match wire {
            WireType::LengthDelimited => Some(decode_varint(&mut peek)?),
            _ => None,
        };
        skip_field(wire, tag, &mut cur, DecodeContext::default())?;
        let end = pos(cur);
        let payload = len.map(|l| end - l as usize..end);
        out.push(Field {
            tag,
            whole: start..pos(cur),
            payload,
        });
    }
    Ok(out)
}

/// Appends a length-delimited field.
fn put_bytes(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

const MODEL_GRAPH: u32 = 7;
const GRAPH_INITIALIZER: u32 = 5;
const TENSOR_RAW_DATA: u32 = 9;
const TENSOR_EXTERNAL_DATA: u32 = 13;
const TENSOR_DATA_LOCATION: u32 = 14;
/// TensorProto fields that hold (or locate) the values: float_data, int32_data, int64_data,
/// raw_data, double_data, uint64_data, external_data, data_location.
const TENSOR_DATA_FIELDS: [u32; 8] = [4, 5, 7, 9, 10, 11, 13, 14];

/// An initializer to rewrite: its fields (relative to its payload) and new little-endian bytes.
struct Rewrite {
    fields: Vec<Field>,
    bytes: Vec<u8>,
}

/// A graph field of the model (index into the model's fields) and its rewrites, by index into
/// the graph's fields.
struct GraphPlan {
    index: usize,
    fields: Vec<Field>,
    rewrites: HashMap<usize, Rewrite>,
}

/// The export in memory: `data_name` is the external data file's name, `limit` the largest
/// model allowed.
fn build(
    src: &[u8],
    source: &Path,
    replace: &[(&str, &Tensor)],
    data_name: &str,
    threshold: Option<usize>,
    limit: usize,
) -> Result<Built> {
    let decode_err = |reason: String| Error::Decode {
        path: source.to_path_buf(),
        reason,
    };
    let init_err = |name: &str, msg: String| Error::Initializer {
        path: source.to_path_buf(),
        name: name.to_string(),
        msg,
    };
    // Full check with the importer's schema first: corruption anywhere it looks is refused here.
    let model = ModelProto::decode(src).map_err(|e| decode_err(e.to_string()))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| decode_err("no graph in the file".into()))?;
    for node in &graph.node {
        for a in &node.attribute {
            if a.t.as_ref().and_then(|t| t.data_location) == Some(1) {
                return Err(Error::Model {
                    path: source.to_path_buf(),
                    msg: format!(
                        "node '{}' attribute '{}' keeps its tensor in external data, which export does not relocate",
                        node.name.as_deref().unwrap_or_default(),
                        a.name.as_deref().unwrap_or_default()
                    ),
                });
            }
        }
    }
    drop(model);

    let mut wanted: HashMap<&str, &Tensor> = HashMap::new();
    for &(name, t) in replace {
        if wanted.insert(name, t).is_some() {
            return Err(init_err(name, "given twice in the replacements".into()));
        }
    }
    let dir = source.parent().unwrap_or(Path::new("."));
    let mut files: HashMap<PathBuf, Vec<u8>> = HashMap::new();
    let mut replaced: Vec<String> = Vec::new();
    let top = fields(src).map_err(|e| decode_err(e.to_string()))?;
    let mut graphs = Vec::new();
    for (index, f) in top.iter().enumerate() {
        let (MODEL_GRAPH, Some(gp)) = (f.tag, &f.payload) else {
            continue;
        };
        let g = &src[gp.clone()];
        let gfields = fields(g).map_err(|e| decode_err(e.to_string()))?;
        let mut rewrites = HashMap::new();
        for (j, h) in gfields.iter().enumerate() {
            let (GRAPH_INITIALIZER, Some(tp)) = (h.tag, &h.payload) else {
                continue;
            };
            let tbytes = &g[tp.clone()];
            let t = TensorProto::decode(tbytes).map_err(|e| decode_err(e.to_string()))?;
            let name = t.name.clone().unwrap_or_default();
            let bytes = if let Some(v) = wanted.get(name.as_str()) {
                if !replaced.contains(&name) {
                    replaced.push(name.clone());
                }
                float_bytes(&t, v).map_err(|msg| init_err(&name, msg))?
            } else if t.data_location == Some(1) {
                external_bytes(&t, dir, &mut files).map_err(|msg| init_err(&name, msg))?
            } else {
                continue;
            };
            let fields = fields(tbytes).map_err(|e| decode_err(e.to_string()))?;
            rewrites.insert(j, Rewrite { fields, bytes });
        }
        graphs.push(GraphPlan {
            index,
            fields: gfields,
            rewrites,
        });
    }
    if let Some(&(missing, _)) = replace
        .iter()
        .find(|(n, _)| !replaced.iter().any(|r| r == n))
    {
        return Err(init_err(missing, "not an initializer of the graph".into()));
    }
    drop(files);

    let (mut model, mut data) = assemble(src, &top, &graphs, threshold, data_name);
    if model.len() > limit && threshold.is_none() {
        (model, data) = assemble(src, &top, &graphs, Some(AUTO_EXTERNAL_THRESHOLD), data_name);
    }
    if model.len() > limit {
        return Err(Error::Model {
            path: source.to_path_buf(),
            msg: format!(
                "the exported model would be {} bytes, over protobuf's limit of {limit}, even with tensors of at least {} bytes in external data",
                model.len(),
                threshold.unwrap_or(AUTO_EXTERNAL_THRESHOLD)
            ),
        });
    }
    Ok(Built {
        model,
        data,
        replaced,
    })
}

/// The new value of a float initializer as little-endian bytes, after checking it fits.
fn float_bytes(t: &TensorProto, v: &Tensor) -> std::result::Result<Vec<u8>, String> {
    let ty = t.data_type.unwrap_or(0);
    if ty != data_type::FLOAT {
        return Err(format!(
            "has element type {ty}; only float32 (1) initializers can be replaced"
        ));
    }
    let values = v
        .as_f32()
        .map_err(|_| format!("the new value is {}, not float32", v.dtype()))?;
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d} in the file")))
        .collect::<std::result::Result<_, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("element count overflows")?;
    if values.len() != n {
        return Err(format!(
            "the new value has {} elements, the file's {n} (shape {shape:?})",
            values.len()
        ));
    }
    if v.shape() != shape.as_slice() {
        return Err(format!(
            "the new value has shape {:?}, the file's {shape:?}",
            v.shape()
        ));
    }
    Ok(values.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// The bytes of a tensor the source keeps in external data; files are read once.
fn external_bytes(
    t: &TensorProto,
    dir: &Path,
    files: &mut HashMap<PathBuf, Vec<u8>>,
) -> std::result::Result<Vec<u8>, String> {
    let r = ExternalRef::of(t, dir)?;
    if !files.contains_key(&r.path) {
        let bytes = r.read_file()?;
        files.insert(r.path.clone(), bytes);
    }
    let file = files.get(&r.path).map(Vec::as_slice).unwrap_or_default();
    r.slice(file).map(<[u8]>::to_vec)
}

/// Writes the model: every field copied but the planned graphs, whose rewritten initializers
/// of at least `threshold` bytes go to the external data (returned when any does).
fn assemble(
    src: &[u8],
    top: &[Field],
    graphs: &[GraphPlan],
    threshold: Option<usize>,
    data_name: &str,
) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut model = Vec::with_capacity(src.len());
    let mut data: Option<Vec<u8>> = None;
    for (i, f) in top.iter().enumerate() {
        let (Some(plan), Some(gp)) = (graphs.iter().find(|g| g.index == i), &f.payload) else {
            model.extend_from_slice(&src[f.whole.clone()]);
            continue;
        };
        let g = &src[gp.clone()];
        let mut graph = Vec::with_capacity(g.len());
        for (j, h) in plan.fields.iter().enumerate() {
            let (Some(rw), Some(tp)) = (plan.rewrites.get(&j), &h.payload) else {
                graph.extend_from_slice(&g[h.whole.clone()]);
                continue;
            };
            let place = if threshold.is_some_and(|t| rw.bytes.len() >= t) {
                let d = data.get_or_insert_with(Vec::new);
                let offset = d.len().div_ceil(EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT;
                d.resize(offset, 0);
                d.extend_from_slice(&rw.bytes);
                Place::External {
                    name: data_name,
                    offset,
                }
            } else {
                Place::Inline
            };
            let tensor = rewrite_tensor(&g[tp.clone()], &rw.fields, &rw.bytes, place);
            put_bytes(GRAPH_INITIALIZER, &tensor, &mut graph);
        }
        put_bytes(MODEL_GRAPH, &graph, &mut model);
    }
    (model, data)
}

/// Where a rewritten tensor's bytes go.
#[derive(Clone, Copy)]
enum Place<'a> {
    /// `raw_data`.
    Inline,
    /// The external data file `name`, at `offset`.
    External { name: &'a str, offset: usize },
}

/// A TensorProto with every field of `t` but its data fields, and `bytes` as data placed where
/// the first data field was (at the end when there was none).
fn rewrite_tensor(t: &[u8], fields: &[Field], bytes: &[u8], place: Place) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.len().min(bytes.len() + 256));
    let mut done = false;
    for f in fields {
        if !TENSOR_DATA_FIELDS.contains(&f.tag) {
            out.extend_from_slice(&t[f.whole.clone()]);
        } else if !done {
            put_data(bytes, place, &mut out);
            done = true;
        }
    }
    if !done {
        put_data(bytes, place, &mut out);
    }
    out
}

/// The data fields of a tensor.
fn put_data(bytes: &[u8], place: Place, out: &mut Vec<u8>) {
    match place {
        Place::Inline => put_bytes(TENSOR_RAW_DATA, bytes, out),
        Place::External { name, offset } => {
            for (k, v) in [
                ("location", name.to_string()),
                ("offset", offset.to_string()),
                ("length", bytes.len().to_string()),
            ] {
                let entry = StringStringEntryProto {
                    key: Some(k.into()),
                    value: Some(v),
                };
                put_bytes(TENSOR_EXTERNAL_DATA, &entry.encode_to_vec(), out);
            }
            encode_key(TENSOR_DATA_LOCATION, WireType::Varint, out);
            encode_varint(1, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::*;

    /// A length-delimited field as bytes.
    fn field(tag: u32, bytes: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_bytes(tag, bytes, &mut v);
        v
    }

    fn value(name: &str, n: i64) -> ValueInfoProto {
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                tensor_type: Some(TypeProtoTensor {
                    elem_type: Some(data_type::FLOAT),
                    shape: Some(TensorShapeProto {
                        dim: vec![
                            Dimension {
                                dim_value: None,
                                dim_param: Some("N".into()),
                            },
                            Dimension {
                                dim_value: Some(n),
                                dim_param: None,
                            },
                        ],
                    }),
                }),
            }),
        }
    }

    /// Fields the subset schema does not know, one per level, as (level, bytes).
    fn unknown_fields() -> [Vec<u8>; 5] {
        let meta = StringStringEntryProto {
            key: Some("author".into()),
            value: Some("faultline tests".into()),
        };
        [
            field(14, &meta.encode_to_vec()), // ModelProto.metadata_props
            field(10, b"graph doc string"),   // GraphProto.doc_string
            field(13, &value("z", 3).encode_to_vec()), // GraphProto.value_info
            field(12, b"weights doc string"), // TensorProto.doc_string
            field(
                6,
                &GraphProto {
                    name: Some("body".into()),
                    ..Default::default()
                }
                .encode_to_vec(),
            ), // AttributeProto.g
        ]
    }

    /// x [N,2] → Gemm(W [2,k], b [k]) → z, with the unknown fields at every level; W is
    /// `float_data` (so the rewrite also converts its encoding), b `raw_data`.
    fn model_bytes(k: usize) -> Vec<u8> {
        let [meta, gdoc, vinfo, tdoc, attr_g] = unknown_fields();
        let w: Vec<f32> = (0..2 * k).map(|i| i as f32 * 0.5 - 1.0).collect();
        let mut w_bytes = TensorProto {
            name: Some("W".into()),
            dims: vec![2, k as i64],
            data_type: Some(data_type::FLOAT),
            float_data: w,
            ..Default::default()
        }
        .encode_to_vec();
        w_bytes.extend(&tdoc);
        let b = TensorProto {
            name: Some("b".into()),
            dims: vec![k as i64],
            data_type: Some(data_type::FLOAT),
            raw_data: Some((0..k).flat_map(|i| (i as f32).to_le_bytes()).collect()),
            ..Default::default()
        };
        let mut attr = AttributeProto {
            name: Some("body".into()),
            r#type: Some(5),
            ..Default::default()
        }
        .encode_to_vec();
        attr.extend(&attr_g);
        let mut node = NodeProto {
            op_type: Some("Gemm".into()),
            name: Some("fc".into()),
            input: vec!["x".into(), "W".into(), "b".into()],
            output: vec!["z".into()],
            ..Default::default()
        }
        .encode_to_vec();
        node.extend(field(5, &attr));
        let mut graph = GraphProto {
            input: vec![value("x", 2)],
            output: vec![value("z", k as i64)],
            ..Default::default()
        }
        .encode_to_vec();
        graph.extend(field(1, &node));
        graph.extend(field(5, &w_bytes));
        let mut b_bytes = b.encode_to_vec();
        b_bytes.extend(field(12, b"bias doc string, after its raw_data"));
        graph.extend(field(5, &b_bytes));
        graph.extend(gdoc);
        graph.extend(vinfo);
        let mut m = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(13),
            }],
            ..Default::default()
        }
        .encode_to_vec();
        m.extend(field(7, &graph));
        m.extend(meta);
        m
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    fn logits(bytes: &[u8], dir: &Path, x: &[f32]) -> Vec<f32> {
        let (mut m, _) = crate::load_bytes(bytes, Path::new("mem.onnx"), dir).unwrap();
        m.prepare([1, 1, 2], None).unwrap();
        m.logits(x).unwrap()
    }

    #[test]
    fn unknown_fields_survive_a_replacement_at_every_level() {
        let src = model_bytes(3);
        let w = Tensor::from_f32(vec![2, 3], vec![1., 0., -1., 2., 1., 0.]).unwrap();
        let b = Tensor::from_f32(vec![3], vec![0.5, 0., -0.5]).unwrap();
        let built = build(
            &src,
            Path::new("src.onnx"),
            &[("b", &b), ("W", &w)],
            "out.onnx.data",
            None,
            PROTOBUF_LIMIT,
        )
        .unwrap();
        assert_eq!(built.replaced, ["W", "b"], "file order");
        assert!(built.data.is_none());
        for (i, f) in unknown_fields().iter().enumerate() {
            assert!(contains(&built.model, f), "unknown field {i} lost");
        }
        // z = x·W + b with x = [1, 2]: [1+4+0.5, 0+2, -1+0-0.5]
        assert_eq!(
            logits(&built.model, Path::new("."), &[1.0, 2.0]),
            vec![5.5, 2.0, -1.5]
        );
        // W went from float_data to raw_data.
        let m = ModelProto::decode(&built.model[..]).unwrap();
        let wt = &m.graph.unwrap().initializer[0];
        assert!(wt.float_data.is_empty() && wt.raw_data.as_ref().unwrap().len() == 24);
    }

    #[test]
    fn replacing_raw_data_by_itself_keeps_every_byte_in_place() {
        // b's doc string follows its raw_data: the new data must take the old one's place.
        let src = model_bytes(3);
        let b = Tensor::from_f32(vec![3], vec![0., 1., 2.]).unwrap();
        let built = build(
            &src,
            Path::new("src.onnx"),
            &[("b", &b)],
            "out.onnx.data",
            None,
            PROTOBUF_LIMIT,
        )
        .unwrap();
        assert!(built.model == src);
    }

    #[test]
    fn external_offsets_are_aligned_and_resolve() {
        let src = model_bytes(300);
        let w = Tensor::from_f32(vec![2, 300], vec![0.25; 600]).unwrap();
        let b = Tensor::from_f32(vec![300], vec![1.0; 300]).unwrap();
        let built = build(
            &src,
            Path::new("src.onnx"),
            &[("W", &w), ("b", &b)],
            "out.onnx.data",
            Some(1),
            PROTOBUF_LIMIT,
        )
        .unwrap();
        let data = built.data.unwrap();
        let m = ModelProto::decode(&built.model[..]).unwrap();
        let mut offsets = Vec::new();
        for t in &m.graph.unwrap().initializer {
            assert_eq!(t.data_location, Some(1));
            let r = ExternalRef::of(t, Path::new("")).unwrap();
            assert_eq!(r.path, Path::new("out.onnx.data"));
            assert_eq!(r.offset % EXTERNAL_ALIGNMENT, 0);
            offsets.push((r.offset, r.length.unwrap()));
        }
        assert_eq!(offsets, [(0, 2400), (4096, 1200)]);
        assert_eq!(data.len(), 4096 + 1200);
        let dir =
            std::env::temp_dir().join(format!("faultline-export-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("out.onnx.data"), &data).unwrap();
        let z = logits(&built.model, &dir, &[1.0, 2.0]);
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(z, vec![1.75; 300]);
    }

    #[test]
    fn export_switches_to_external_data_past_the_size_limit() {
        let src = model_bytes(300);
        let w = Tensor::from_f32(vec![2, 300], vec![0.25; 600]).unwrap();
        let limit = src.len() - 100;
        let built = build(
            &src,
            Path::new("src.onnx"),
            &[("W", &w)],
            "o.data",
            None,
            limit,
        )
        .unwrap();
        assert!(built.model.len() <= limit);
        assert_eq!(built.data.unwrap().len(), 2400);
        // An explicit threshold is kept; a file still over the limit is an error naming it.
        let err = build(
            &src,
            Path::new("src.onnx"),
            &[("W", &w)],
            "o.data",
            Some(10_000),
            limit,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("src.onnx: the exported model would be"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_bytes_never_panic() {
        let src = model_bytes(3);
        let w = Tensor::from_f32(vec![2, 3], vec![0.0; 6]).unwrap();
        let rep = [("W", &w)];
        let run = |b: &[u8]| {
            let _ = build(b, Path::new("c.onnx"), &rep, "c.data", Some(4), 1 << 20);
        };
        for cut in 0..src.len() {
            run(&src[..cut]);
        }
        for i in 0..src.len() {
            for x in [0x00u8, 0xff, 0x80, 0x0a] {
                let mut b = src.clone();
                b[i] ^= x;
                run(&b);
            }
        }
        let err = build(
            &src[..src.len() - 3],
            Path::new("c.onnx"),
            &rep,
            "c.data",
            None,
            1 << 20,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
    }

    #[test]
    fn attribute_tensors_in_external_data_are_refused() {
        let t = TensorProto {
            dims: vec![1],
            data_type: Some(data_type::FLOAT),
            data_location: Some(1),
            external_data: vec![StringStringEntryProto {
                key: Some("location".into()),
                value: Some("w.bin".into()),
            }],
            ..Default::default()
        };
        let m = ModelProto {
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: Some("Constant".into()),
                    name: Some("k".into()),
                    output: vec!["k".into()],
                    attribute: vec![AttributeProto {
                        name: Some("value".into()),
                        t: Some(t),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = build(
            &m.encode_to_vec(),
            Path::new("a.onnx"),
            &[],
            "a.data",
            None,
            PROTOBUF_LIMIT,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("a.onnx: node 'k' attribute 'value' keeps its tensor in external data"),
            "{err}"
        );
    }
}
