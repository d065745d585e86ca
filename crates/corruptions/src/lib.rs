//! Common corruptions for robustness evaluation: the 19 families of CIFAR-10-C / ImageNet-C
//! (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
//! Perturbations", ICLR 2019, arXiv:1903.12261) at severities 1–5, with the CIFAR (32×32) and ImageNet
//! (224×224) parameter tables of the reference generator `hendrycks/robustness`.
//!
//! Design: each family is one module (`gaussian_noise.rs`, …) holding a faithful transcription of the
//! reference function, built on kernels in [`ops`] that reproduce, in integer or floating-point
//! arithmetic of the same order, the library routines the reference calls (SciPy, scikit-image,
//! OpenCV, Pillow, libjpeg-turbo, ImageMagick). On the stored CIFAR reference outputs the
//! deterministic families agree value for value, and the random ones do too when fed the reference's
//! own NumPy draws through [`corrupt_with_source`] (frost: within 1/255, its JPEG textures being
//! decoded by a different decoder). Random families normally draw from a per-sample stream (see
//! [`sample_seed`]), so the same seed gives the same bytes whatever the thread count or batch split.
//!
//! Registry: [`ALL`] / [`CorruptionKind::ALL`]. Tables: [`ParamTable`] ([`params`]). Entry points:
//! [`corrupt`], [`corrupt_batch`] (rayon), [`corrupt_with_source`].
//!
//! ```
//! use faultline_corruptions::{corrupt, CorruptionKind, ImageU8, ParamTable};
//! let img = ImageU8::filled(32, 32, 3, 128);
//! let kind: CorruptionKind = "fog".parse().unwrap();
//! let out = corrupt(kind, 3, ParamTable::for_size(32, 32), &img, 42, 0).unwrap();
//! assert_eq!((out.height(), out.width(), out.channels()), (32, 32, 3));
//! ```
#![warn(missing_docs)]

mod corruption;
mod error;
mod image;
pub mod ops;
pub mod params;
mod rng;

pub mod brightness;
pub mod contrast;
pub mod defocus_blur;
pub mod elastic_transform;
pub mod fog;
pub mod frost;
pub mod gaussian_blur;
pub mod gaussian_noise;
pub mod glass_blur;
pub mod impulse_noise;
pub mod jpeg_compression;
pub mod motion_blur;
pub mod pixelate;
pub mod saturate;
pub mod shot_noise;
pub mod snow;
pub mod spatter;
pub mod speckle_noise;
pub mod zoom_blur;

pub use corruption::{
    corrupt, corrupt_batch, corrupt_with_source, CorruptionKind, ParamTable, ALL,
};
pub use error::{Error, Result};
pub use image::ImageU8;
pub use rng::{sample_seed, Poisson, RandomSource, Rng};
