//! Errors of the analysis layer: each says what failed and where (file, sample, setting).

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
    /// An attack was misconfigured or failed.
    #[error(transparent)]
    Attack(faultline_attacks::Error),
    /// A corruption failed.
    #[error(transparent)]
    Corruption(#[from] faultline_corruptions::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A label the model cannot predict.
    #[error("{data}: label {label} of sample {index} is out of range for a model with {classes} outputs")]
    LabelOutOfRange {
        /// The data set.
        data: String,
        /// The sample.
        index: usize,
        /// Its label.
        label: usize,
        /// The model's outputs.
        classes: usize,
    },
    /// A NaN or infinite pixel.
    #[error("{data}: sample {index} has a non-finite pixel value")]
    NonFinitePixel {
        /// The data set.
        data: String,
        /// The sample.
        index: usize,
    },
    /// A setting outside its range, named by its command-line flag.
    #[error("{flag}: {why}")]
    Setting {
        /// The flag (`--eps`, `--batch-size`, …).
        flag: &'static str,
        /// What is wrong and what would be right.
        why: String,
    },
    /// A run directory holds something else.
    #[error("{path}: {why}")]
    RunDir {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong.
        why: String,
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
            other => Error::Attack(other),
        }
    }
}

impl From<faultline_engine::Error> for Error {
    fn from(e: faultline_engine::Error) -> Self {
        Error::Engine(e)
    }
}

/// The setting error for `flag`.
pub(crate) fn setting(flag: &'static str, why: impl Into<String>) -> Error {
    Error::Setting {
        flag,
        why: why.into(),
    }
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_path_buf(),
        error,
    }
}
