//! faultline: where an image classifier breaks, why, and what to do about it.
//!
//! This crate holds the analyses and the run records; it sits on the engine (`faultline-engine`,
//! `faultline-onnx`) and the loaders (`faultline-data`) and is driven by the `faultline` binary.
//! Data flows one way: load → perturb → predict → measure → report.
#![warn(missing_docs)]

pub mod attack;
pub mod classwise;
pub mod corruption;
pub mod ensemble;
mod error;
pub mod eval;
pub mod margin;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod record;

pub use error::{Error, Result};
pub use faultline_attacks as attacks;
pub use faultline_data as data;
pub use faultline_engine as engine;
pub use faultline_onnx as onnx;
