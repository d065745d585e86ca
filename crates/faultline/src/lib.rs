//! faultline: where an image classifier breaks, why, and what to do about it.
//!
//! A library first: each command of the `faultline` binary is a function of [`run`] from a
//! typed configuration to a typed report (the body of the run's `run.json`), writing one
//! [`record::SampleRecord`] per sample and condition to `samples.jsonl` as it goes so a killed
//! run resumes ([`rundir`]). The binary only parses arguments and prints reports; the Python
//! bindings call the same functions.
//!
//! Data flows one way: load ([`model`], `faultline-data`) → perturb (`faultline-attacks`,
//! [`corruption`]) → predict ([`eval`], [`robust`], [`margin::measure`]) → measure
//! ([`metrics`], [`classwise`], [`margin`], [`robust::summary`]) → report ([`run`], [`plot`]).
#![warn(missing_docs)]

pub mod classwise;
pub mod corruption;
pub mod eps;
mod error;
pub mod eval;
pub mod fair;
pub mod latent_shift;
pub mod margin;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod record;
pub mod report;
pub mod robust;
pub mod run;
pub mod rundir;
pub mod stats;
pub mod subset;

pub use error::{Error, Result};
pub use faultline_attacks as attacks;
pub use faultline_corruptions as corruptions;
pub use faultline_data as data;
pub use faultline_engine as engine;
pub use faultline_onnx as onnx;
pub use faultline_train as train;
