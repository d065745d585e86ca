//! Errors of the training library. Each variant says in one line what did not fit, with the
//! sizes involved, so a caller can print it as is.

use std::path::PathBuf;

/// Everything that can go wrong while building, training, saving or loading a network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A network specification that cannot be built (zero width, wrong activation count).
    #[error("invalid network spec: {0}")]
    Spec(String),
    /// A buffer whose length does not match the shape it is supposed to have.
    #[error("{what} has {actual} values, expected {expected} ({rows} rows x {cols} columns)")]
    Shape {
        /// Which buffer (`"input"`, `"target"`, `"output gradient"`, …).
        what: &'static str,
        /// Number of rows (samples) the caller announced.
        rows: usize,
        /// Number of columns (features) the network needs.
        cols: usize,
        /// rows × cols.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// A parameter outside its valid range (learning rate, batch size, fraction, …).
    #[error("invalid parameter {name}: {reason}")]
    Param {
        /// Parameter name as spelled in the params struct.
        name: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A NaN or infinite value in data passed in.
    #[error("{what} value {index} is not finite ({value})")]
    NonFinite {
        /// Which buffer.
        what: &'static str,
        /// Flat index of the first offending value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// The training loss became NaN or infinite.
    #[error("training diverged: loss is {loss} at epoch {epoch}")]
    Diverged {
        /// Epoch (0-based) in which it happened.
        epoch: usize,
        /// The loss value.
        loss: f64,
    },
    /// The pairwise ranking loss is only defined for one output.
    #[error("the ranking loss needs a network with 1 output, this one has {output}")]
    RankingOutput {
        /// Output width of the network.
        output: usize,
    },
    /// An optimizer got a parameter list that differs from the one it was built for.
    #[error("optimizer: {0}")]
    Optimizer(String),
    /// A rayon thread pool could not be built.
    #[error("thread pool: {0}")]
    ThreadPool(String),
    /// Reading or writing a weights file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A weights buffer is not a valid faultline-train safetensors file.
    #[error("weights: {0}")]
    Format(String),
}

/// Result type of the training library.
pub type Result<T> = std::result::Result<T, Error>;

/// Checks that `data` holds `rows × cols` values.
pub(crate) fn check_len(what: &'static str, data: &[f32], rows: usize, cols: usize) -> Result<()> {
    let expected = rows.checked_mul(cols).ok_or_else(|| Error::Param {
        name: "n",
        reason: format!("{rows} x {cols} overflows"),
    })?;
    if data.len() != expected {
        return Err(Error::Shape {
            what,
            rows,
            cols,
            expected,
            actual: data.len(),
        });
    }
    Ok(())
}

/// Returns an error naming the first non-finite value in `data`.
pub(crate) fn check_finite(what: &'static str, data: &[f32]) -> Result<()> {
    match data.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            what,
            index,
            value: data[index],
        }),
        None => Ok(()),
    }
}
