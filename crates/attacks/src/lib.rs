//! Adversarial attacks on faultline's engine.
//!
//! Two contracts ([`attack`]): a [`BoundedAttack`] searches within a radius ε given per call, a
//! [`MinNormAttack`] for the smallest perturbation. Each attack lives in its own file with its
//! parameters (and their defaults) in one struct — the struct *is* the attack — and a doc
//! comment giving the paper, the update rule, the reference implementation followed and the
//! cost. [`registry`] is the one table of attacks by name; [`ensemble`] runs registered bounded
//! attacks in turn (AutoAttack's standard version is the preset `standard`). Every attack
//! returns one image per sample inside [0, 1] (and the ε-ball for bounded attacks), and its
//! success flags come from re-predicting that image (`attack::finalize`).
#![warn(missing_docs)]

pub mod a3;
pub mod apgd;
pub mod attack;
pub mod cw;
pub mod deepfool;
pub mod ensemble;
pub mod fab;
pub mod loss;
pub mod minnorm;
pub mod norm;
pub mod pgd;
pub mod registry;
pub mod reverse;
pub mod square;

pub use a3::A3Params;
pub use apgd::ApgdParams;
pub use attack::{
    AttackOutput, BatchRef, BoundedAttack, Described, Goal, MinNormAttack, SampleResult, Selection,
    StageDone, Tick, Watch,
};
pub use cw::CwParams;
pub use deepfool::DeepFoolParams;
pub use ensemble::{Ensemble, PRESETS};
pub use fab::FabParams;
pub use loss::AttackLoss;
pub use norm::Norm;
pub use pgd::PgdParams;
pub use registry::{Attack, Method, Settings, ATTACKS};
pub use square::SquareParams;

/// Errors of the attacks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model failed.
    #[error(transparent)]
    Engine(#[from] faultline_engine::Error),
    /// No attack of that name is registered.
    #[error("unknown attack '{name}': choose one of {known}")]
    UnknownAttack {
        /// The name asked for.
        name: String,
        /// The registered names.
        known: String,
    },
    /// An attack was asked for a norm or a setting it does not have.
    #[error("{attack} does not support {what}")]
    Unsupported {
        /// The attack.
        attack: &'static str,
        /// What it lacks, and what it offers instead.
        what: String,
    },
    /// Inputs or parameters that do not fit.
    #[error("{0}")]
    Invalid(String),
}

/// Result type of the attacks.
pub type Result<T> = std::result::Result<T, Error>;
