//! Adversarial attacks on faultline's engine.
//!
//! Each attack lives in its own file with its parameters (and their defaults) in one struct and
//! a doc comment giving the paper, the update rule, the reference implementation followed and
//! the cost. Every attack returns one image per sample inside [0, 1] (and the ε-ball for bounded
//! attacks), and its success flags come from re-predicting that image (`attack::finalize`).
#![warn(missing_docs)]

pub mod apgd;
pub mod attack;
pub mod cw;
pub mod deepfool;
pub mod fab;
pub mod minnorm;
pub mod norm;
pub mod pgd;
pub mod square;

pub use apgd::{apgd, ApgdParams};
pub use attack::{AttackLoss, AttackOutput, Goal, SampleResult};
pub use cw::{cw, CwParams};
pub use deepfool::{deepfool, DeepFoolParams};
pub use fab::{fab, FabParams};
pub use norm::Norm;
pub use pgd::{pgd, PgdParams};
pub use square::{square, SquareParams};

/// Errors of the attacks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model failed.
    #[error(transparent)]
    Engine(#[from] faultline_engine::Error),
    /// Inputs or parameters that do not fit.
    #[error("{0}")]
    Invalid(String),
}

/// Result type of the attacks.
pub type Result<T> = std::result::Result<T, Error>;
