//! Brittle-decision detection after Ngnawé et al., *Detecting Brittle Decisions for Free:
//! Leveraging Margin Consistency in Deep Robust Classifiers* (NeurIPS 2024, arXiv 2406.18451).
//!
//! A sample's **input margin** `d_in(x)` is the smallest perturbation (L∞ or L2) that changes the
//! *predicted* label, estimated by a minimum-norm attack ([`measure`]). Cheap **scores** come from
//! the clean forward pass alone ([`scores`]): the logit margin `z_(1) − z_(2)`, the probability
//! margin, the maximum probability and the feature-space margin
//! `min_{j≠i} (z_i − z_j)/‖w_i − w_j‖_*`. The model is **margin consistent** when a score orders
//! samples like `d_in` (Kendall τ-b, [`crate::stats`]); a consistent score flags the non-robust samples
//! (`d_in ≤ ε`) without attacking them (AUROC, AUPR, FPR@95). Where the logit margin is not
//! consistent, a small network learns a **pseudo-margin** ([`pseudo`]); and the margins of a
//! small attacked subset turn the logit margins of a whole set into a robust-accuracy estimate
//! ([`estimate`]). [`report`] gathers all figures of a run.

pub mod brittle;
pub mod estimate;
pub mod measure;
pub mod pseudo;
pub mod report;
pub mod scores;

pub use crate::stats::{
    bootstrap, detection, kendall_tau_b, roc_curve, spearman_rho, threshold_for_recall, Detection,
    Estimate,
};
