//! faultline-train: a small CPU training library for dense networks.
//!
//! It trains multi-layer perceptrons on host buffers: [`Mlp`] (dense layers with per-layer
//! activations, PyTorch's default initialisation, forward and full backward through the `gemm`
//! crate), the losses in [`loss`] (MSE and the pairwise ranking loss), the [`Adam`] optimizer,
//! the loop [`fit`] with its [`TrainParams`], an input [`Standardizer`] stored with the model,
//! and safetensors weights ([`Mlp::save`], [`Mlp::load`]). For other training loops (CNN
//! fine-tuning), [`optim`] has the optimisers ([`Optimizer`]: SGD with momentum, Adam, AdamW,
//! per-tensor weight decay, serializable state) and learning-rate [`Schedule`]s.
//!
//! Its first user is the learned pseudo-margin of the margin-consistency paper
//! (methods.md §5.5): [`MlpSpec::pseudo_margin`] builds that paper's network and
//! [`TrainParams::default`] is its training recipe.
//!
//! ```
//! use faultline_train::{fit, Mlp, MlpSpec, TrainParams};
//! let (n, d) = (64, 3);
//! let x: Vec<f32> = (0..n * d).map(|i| ((i * 7919 % 97) as f32) / 97.0).collect();
//! let t: Vec<f32> = x.chunks(d).map(|r| 0.5 * r[0] - r[1]).collect();
//! let spec = MlpSpec::uniform(d, vec![16], faultline_train::Activation::Tanh, 1,
//!                             faultline_train::Activation::Identity);
//! let mut model = Mlp::new(spec, 0).unwrap();
//! let params = TrainParams { epochs: 50, lr: 1e-2, ..TrainParams::default() };
//! let report = fit(&mut model, &x, &t, n, &params).unwrap();
//! assert!(report.train_loss[49] < report.train_loss[0]);
//! ```
#![warn(missing_docs)]

mod activation;
mod adam;
mod error;
mod fit;
mod io;
pub mod loss;
mod mlp;
pub mod optim;
mod rng;
mod standardize;

pub use activation::Activation;
pub use adam::{Adam, AdamParams};
pub use error::{Error, Result};
pub use fit::{evaluate, fit, fit_with_progress, TrainParams, TrainReport};
pub use loss::Loss;
pub use mlp::{Gradients, Linear, Mlp, MlpSpec, Trace, DEFAULT_FORWARD_CHUNK};
pub use optim::{Optimizer, OptimizerParams, Schedule};
pub use standardize::Standardizer;
