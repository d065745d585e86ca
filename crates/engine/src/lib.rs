//! faultline's CPU engine: forward passes and input gradients of image classifiers.
//!
//! The design follows what robustness analysis needs and nothing more: a static graph with one
//! image input and one logits output, inference-mode operators, and reverse-mode gradients with
//! respect to the *input* only (attacks never need weight gradients). The public interface —
//! [`Model`] with [`Model::logits`], [`Model::loss_grad`] and [`Model::forward`] — speaks in host
//! buffers and never exposes how kernels compute, so another backend can sit behind it later.
#![warn(missing_docs)]

mod alloc;
#[doc(hidden)]
pub mod bench_support;
mod error;
mod exec;
pub mod graph;
mod kernels;
mod loss;
mod model;
pub mod ops;
mod passes;
mod tensor;

pub use error::{Error, Result};
pub use graph::{Graph, GraphBuilder, ValueId};
pub use loss::{runner_up, Loss};
pub use model::{Forward, LinearHead, LossGrad, Model, Normalization};
pub use tensor::{Data, Tensor};
