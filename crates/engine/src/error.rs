//! Errors of the engine. Variants carry the operator and node so that a user can find the
//! offending place in their model file.

/// Everything that can go wrong while building or running a graph.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Shapes that an operator cannot combine.
    #[error("{op} node '{node}': {msg}")]
    Shape {
        /// Operator name (ONNX spelling).
        op: &'static str,
        /// Node name, or the name of its output when the node has none.
        node: String,
        /// What did not fit, with the shapes involved.
        msg: String,
    },
    /// An operator got a tensor of an element type it does not handle.
    #[error("{op} node '{node}': unsupported element type {dtype}")]
    DType {
        /// Operator name.
        op: &'static str,
        /// Node name.
        node: String,
        /// The element type received.
        dtype: &'static str,
    },
    /// The graph itself is malformed (dangling value, cycle, missing output).
    #[error("invalid graph: {0}")]
    Graph(String),
    /// The caller passed input that does not fit the model.
    #[error("{0}")]
    Input(String),
}

/// Result type of the engine.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Attaches the node name to an error raised by a kernel that did not know it.
    pub(crate) fn in_node(self, node: &str) -> Self {
        match self {
            Error::Shape { op, msg, .. } => Error::Shape {
                op,
                node: node.to_string(),
                msg,
            },
            Error::DType { op, dtype, .. } => Error::DType {
                op,
                node: node.to_string(),
                dtype,
            },
            e => e,
        }
    }
}

/// The most elements one tensor may have (2^32, 16 GiB of f32): a model whose attributes or
/// shape constants would make an operator allocate more is refused with a shape error before
/// anything is allocated (a fuzzed Pad asked for 13 TB).
pub(crate) const MAX_ELEMENTS: u128 = 1 << 32;

/// The element count of `shape`, or a shape error when it exceeds [`MAX_ELEMENTS`].
pub(crate) fn checked_numel(op: &'static str, shape: &[i64]) -> Result<usize> {
    let n = shape
        .iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(d.max(0) as u128))
        .unwrap_or(u128::MAX);
    if n > MAX_ELEMENTS {
        return Err(shape_err(
            op,
            format!("output shape {shape:?} has more than 2^32 elements"),
        ));
    }
    Ok(n as usize)
}

/// Shorthand for a shape error raised inside an operator (the node name is attached by the caller).
pub(crate) fn shape_err(op: &'static str, msg: impl Into<String>) -> Error {
    Error::Shape {
        op,
        node: String::new(),
        msg: msg.into(),
    }
}
