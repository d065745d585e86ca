//! faultline's CPU engine: forward passes, input gradients and, for training, weight gradients
//! of image classifiers.
//!
//! The design follows what robustness analysis needs: a static graph with one image input and
//! one logits output, and reverse-mode gradients. The public interface — [`Model`] with
//! [`Model::logits`], [`Model::loss_grad`] and [`Model::forward`] for inference and attacks,
//! [`TrainModel`] with [`TrainModel::step`] for training — speaks in host buffers and never
//! exposes how kernels compute, so another backend can sit behind it later.
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
pub mod profile;
mod team;
mod tensor;
pub mod train;

pub use error::{Error, Result};
pub use graph::{Graph, GraphBuilder, ValueId};
pub use loss::{runner_up, Loss};
pub use model::{Forward, LinearHead, LossGrad, Model, Normalization};
pub use tensor::{Data, Tensor};
pub use train::{BatchNormMode, Param, ParamRole, Step, TrainModel};
