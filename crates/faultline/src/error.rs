//! Errors of the analysis layer: each says what failed and where (file, sample, stage).

use std::path::PathBuf;

/// Everything that can go wrong in a faultline analysis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Model import failed.
    #[error(transparent)]
    Onnx(#[from] faultline_onnx::Error),
    /// Data loading failed.
    #[error(transparent)]
    Data(#[from] faultline_data::Error),
    /// The engine failed while running the model.
    #[error("running the model: {0}")]
    Engine(faultline_engine::Error),
    /// Reading or writing a run directory failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Settings, model and data do not fit together.
    #[error("{0}")]
    Invalid(String),
}

/// Result type of the analysis layer.
pub type Result<T> = std::result::Result<T, Error>;

impl From<faultline_attacks::Error> for Error {
    fn from(e: faultline_attacks::Error) -> Self {
        match e {
            faultline_attacks::Error::Engine(e) => Error::Engine(e),
            other => Error::Invalid(other.to_string()),
        }
    }
}

impl From<faultline_engine::Error> for Error {
    fn from(e: faultline_engine::Error) -> Self {
        Error::Engine(e)
    }
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_path_buf(),
        error,
    }
}
