//! Errors of the ONNX importer and exporter: each names the file and, where one is involved, the node.
//! Messages are complete on their own (no error chain to walk), so one line tells the user
//! what and where.

use std::path::PathBuf;

/// An operator the engine does not implement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedOp {
    /// Node name (or its first output when unnamed).
    pub node: String,
    /// Operator type, with its domain when not the default one.
    pub op_type: String,
    /// Opset version of the operator's domain.
    pub opset: i64,
}

impl std::fmt::Display for UnsupportedOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (node '{}', opset {})",
            self.op_type, self.node, self.opset
        )
    }
}

/// Everything that can go wrong while importing or exporting a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The bytes are not a valid ONNX protobuf (truncated, corrupt or another format).
    #[error("{path} is not a valid ONNX model (truncated or corrupt protobuf: {reason})")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// Operators the engine does not support; all of them are listed at once.
    #[error("{path}: unsupported operator{} {}", if .ops.len() == 1 { "" } else { "s" }, .ops.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(", "))]
    UnsupportedOps {
        /// The file.
        path: PathBuf,
        /// Every offending node.
        ops: Vec<UnsupportedOp>,
    },
    /// A node's attributes or inputs are invalid or unsupported.
    #[error("{path}: node '{node}' ({op_type}): {msg}")]
    Node {
        /// The file.
        path: PathBuf,
        /// Node name.
        node: String,
        /// Operator type.
        op_type: String,
        /// What is wrong.
        msg: String,
    },
    /// The model as a whole is outside what faultline handles.
    #[error("{path}: {msg}")]
    Model {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An initializer cannot be exported as asked: unknown name, wrong type, element count or
    /// shape, unreadable external data.
    #[error("{path}: initializer '{name}': {msg}")]
    Initializer {
        /// The source file.
        path: PathBuf,
        /// The initializer's name.
        name: String,
        /// What is wrong.
        msg: String,
    },
    /// The engine rejected the graph.
    #[error("{path}: {error}")]
    Engine {
        /// The file.
        path: PathBuf,
        /// The engine's error.
        error: faultline_engine::Error,
    },
}

/// Result type of the importer and exporter.
pub type Result<T> = std::result::Result<T, Error>;
