//! Error type of the corruptions crate: every bad input is reported as a variant, nothing panics.

/// Everything that can go wrong when corrupting an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Severity outside `1..=5`.
    #[error("severity {0} is out of range: corruptions have severities 1 to 5")]
    BadSeverity(u8),
    /// Only grayscale (1) and RGB (3) images are supported.
    #[error("unsupported channel count {0}: expected 1 (grayscale) or 3 (RGB)")]
    UnsupportedChannels(usize),
    /// Height or width is zero.
    #[error("empty image: {height}x{width}")]
    EmptyImage {
        /// Image height in pixels.
        height: usize,
        /// Image width in pixels.
        width: usize,
    },
    /// The pixel buffer length does not match `height * width * channels`.
    #[error("buffer holds {actual} bytes but {height}x{width}x{channels} needs {expected}")]
    BufferSize {
        /// Image height in pixels.
        height: usize,
        /// Image width in pixels.
        width: usize,
        /// Channels per pixel.
        channels: usize,
        /// `height * width * channels`.
        expected: usize,
        /// Length of the buffer given.
        actual: usize,
    },
    /// A corruption or parameter-table name that is not in the registry.
    #[error("unknown {what} `{name}`")]
    UnknownName {
        /// What kind of name was looked up ("corruption", "parameter table").
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A bundled frost texture failed to decode (a corrupted build).
    #[error("frost texture {index} failed to decode: {message}")]
    Texture {
        /// Index of the texture (0-based).
        index: usize,
        /// Decoder message.
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
