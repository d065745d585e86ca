//! Errors of the loaders. Every variant names the file involved and, where the problem sits
//! inside a file, the record or sample index, so that a user can go and look at the culprit
//! instead of guessing which of 10,000 images broke a run.

use std::path::PathBuf;

/// Everything that can go wrong while opening a data set or reading its batches.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path given (or a file a data set needs, such as the labels beside MNIST images)
    /// does not exist.
    #[error("file not found: {}", path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// No labels were found for a `.npy`/`.npz` images array.
    #[error(
        "no labels for {}: pass a labels file (LoadOptions::labels, --labels); looked for {}",
        path.display(),
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    MissingLabels {
        /// The images file.
        path: PathBuf,
        /// The places searched, in order.
        tried: Vec<PathBuf>,
    },
    /// An operating-system error while reading a file.
    // The OS error is part of the message rather than a chained source, so that a caller
    // printing the whole chain shows it once.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The format could not be detected from the path, or the path does not fit the format
    /// that was asked for.
    #[error("cannot load {}: {reason}; supported formats: {SUPPORTED}", path.display())]
    UnknownFormat {
        /// The path that was given.
        path: PathBuf,
        /// Why detection failed.
        reason: String,
    },
    /// A format name (as typed on a command line) that is not one of the known ones.
    #[error("unknown data format '{name}'; supported formats: {SUPPORTED}")]
    BadFormatName {
        /// The name given.
        name: String,
    },
    /// A CIFAR binary file whose size is not a whole number of records.
    #[error(
        "CIFAR file {} has {size} bytes, not a multiple of the {record_size}-byte record \
         ({kind}); is it the binary version, and the right CIFAR variant?",
        path.display()
    )]
    BadLength {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The record size of the format (3073 for CIFAR-10, 3074 for CIFAR-100).
        record_size: usize,
        /// "CIFAR-10" or "CIFAR-100".
        kind: &'static str,
    },
    /// A file whose header or structure is not what the format requires (bad magic number,
    /// unsupported element type, wrong number of dimensions, ...).
    #[error("{}: {reason}", path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An IDX file that ends before the number of items its header declares.
    #[error(
        "truncated IDX file {}: header says {declared} {what}, data ends after {complete}",
        path.display()
    )]
    TruncatedIdx {
        /// The file.
        path: PathBuf,
        /// Item count from the header.
        declared: usize,
        /// What the items are, e.g. "images of 28x28" or "labels".
        what: String,
        /// How many complete items the file actually holds.
        complete: usize,
    },
    /// A label that is negative or not below the number of classes.
    #[error(
        "{}: label {label} at sample {index} is out of range for {classes} classes",
        path.display()
    )]
    LabelOutOfRange {
        /// The file holding the label.
        path: PathBuf,
        /// Sample (record) index inside that file.
        index: usize,
        /// The offending label.
        label: i64,
        /// The class count it was checked against.
        classes: usize,
    },
    /// Image and label counts that do not match, or other inconsistencies between two files.
    #[error("{}: {reason}", path.display())]
    Mismatch {
        /// The file at fault (usually the labels file).
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// An image in a folder whose size differs from the first image's (after any resize and
    /// crop), which would make batches ragged.
    #[error(
        "{} is {width}x{height}, expected {expected_width}x{expected_height} like the first image; {hint}",
        path.display()
    )]
    ImageSize {
        /// The image file.
        path: PathBuf,
        /// Its width (after resize, if one was asked for).
        width: usize,
        /// Its height (after resize, if one was asked for).
        height: usize,
        /// Width of the first image.
        expected_width: usize,
        /// Height of the first image.
        expected_height: usize,
        /// What to do about it.
        hint: &'static str,
    },
    /// An image file that cannot be decoded.
    #[error("cannot decode image {}: {reason}", path.display())]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's complaint.
        reason: String,
    },
    /// A pixel value that is NaN, infinite or outside [0, 1].
    #[error("{}: sample {index}: {reason}", path.display())]
    BadPixel {
        /// The file.
        path: PathBuf,
        /// Sample index inside the file.
        index: usize,
        /// What is wrong, with a hint on how to fix it.
        reason: String,
    },
    /// A bad argument from the caller (batch size 0, empty classes file, ...).
    #[error("{0}")]
    Invalid(String),
}

/// The formats listed in error messages.
pub(crate) const SUPPORTED: &str = "CIFAR-10/100 binary (.bin or cifar-10-batches-bin directory), \
MNIST/Fashion-MNIST IDX (*-images-idx3-ubyte[.gz] or a directory holding them), \
image folder (one sub-folder of PNG/JPEG files per class), .npy/.npz arrays";

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Wraps an `io::Error` with the path, turning "not found" into [`Error::NotFound`].
pub(crate) fn io_err(path: &std::path::Path, source: std::io::Error) -> Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        Error::Io {
            path: path.to_path_buf(),
            error: source,
        }
    }
}
