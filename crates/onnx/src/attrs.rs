//! Reading a node's attributes with the ONNX specification's defaults, and its constant inputs.

use faultline_engine::{GraphBuilder, Tensor};

use crate::proto::NodeProto;

/// What an operator builder sees of a node.
pub(crate) struct Ctx<'a> {
    pub node: &'a NodeProto,
    /// Opset version of the default domain.
    pub opset: i64,
    /// Constants defined so far (initializers and earlier Constant nodes).
    pub graph: &'a GraphBuilder,
    /// The model's fixed batch size, when its input declares one.
    pub fixed_batch: Option<usize>,
    pub dir: &'a std::path::Path,
    /// Element types (`TensorProto.DataType`) of the constants defined so far, by name: the
    /// engine keeps int8/uint8 as i64, so quantization operators read their types here.
    pub types: &'a std::collections::HashMap<String, i32>,
}

/// A builder's failure, turned into `Error::Node` by the caller.
pub(crate) type BuildResult<T> = Result<T, String>;

impl Ctx<'_> {
    fn attr(&self, name: &str) -> Option<&crate::proto::AttributeProto> {
        self.node
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }
    pub fn int(&self, name: &str) -> Option<i64> {
        self.attr(name).and_then(|a| a.i)
    }
    pub fn int_or(&self, name: &str, default: i64) -> i64 {
        self.int(name).unwrap_or(default)
    }
    pub fn float_or(&self, name: &str, default: f32) -> f32 {
        self.attr(name).and_then(|a| a.f).unwrap_or(default)
    }
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }
    pub fn string(&self, name: &str) -> Option<String> {
        self.attr(name)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }
    pub fn tensor(&self, name: &str) -> BuildResult<Option<Tensor>> {
        match self.attr(name).and_then(|a| a.t.as_ref()) {
            None => Ok(None),
            Some(t) => crate::tensor::to_tensor(t, self.dir)
                .map(Some)
                .map_err(|e| format!("attribute '{name}': {e}")),
        }
    }
    /// Names of attributes present on the node.
    pub fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }
    /// The constant value of input `i`, if present and constant at load time.
    pub fn const_input(&self, i: usize) -> Option<&Tensor> {
        let name = self.node.input.get(i).filter(|n| !n.is_empty())?;
        self.graph.constant_value(name)
    }
    /// The ONNX element type of input `i`, when it is a constant.
    pub fn elem_type(&self, i: usize) -> Option<i32> {
        let name = self.node.input.get(i).filter(|n| !n.is_empty())?;
        self.types.get(name).copied()
    }
    /// True when input `i` is given (not absent, not the empty name).
    pub fn has_input(&self, i: usize) -> bool {
        self.node.input.get(i).is_some_and(|n| !n.is_empty())
    }
    /// Exactly two spatial values from an ints attribute (1-D values are widened to `[1, v]`).
    pub fn pair(&self, name: &str, default: usize) -> BuildResult<[usize; 2]> {
        match self.ints(name) {
            None => Ok([default; 2]),
            Some(v) => match v.as_slice() {
                [a] => Ok([1, to_usize(*a, name)?]),
                [a, b] => Ok([to_usize(*a, name)?, to_usize(*b, name)?]),
                _ => Err(format!(
                    "'{name}' has {} values; only 1-D and 2-D windows are supported",
                    v.len()
                )),
            },
        }
    }
    /// Pads as `[top, left, bottom, right]` (1-D pads `[b, e]` become `[0, b, 0, e]`).
    pub fn pads(&self) -> BuildResult<[usize; 4]> {
        match self.ints("pads") {
            None => Ok([0; 4]),
            Some(v) => match v.as_slice() {
                [b, e] => Ok([0, to_usize(*b, "pads")?, 0, to_usize(*e, "pads")?]),
                [t, l, b, r] => Ok([
                    to_usize(*t, "pads")?,
                    to_usize(*l, "pads")?,
                    to_usize(*b, "pads")?,
                    to_usize(*r, "pads")?,
                ]),
                _ => Err(format!(
                    "'pads' has {} values; only 1-D and 2-D windows are supported",
                    v.len()
                )),
            },
        }
    }
}

fn to_usize(v: i64, name: &str) -> BuildResult<usize> {
    usize::try_from(v).map_err(|_| format!("'{name}' must be non-negative, got {v}"))
}
