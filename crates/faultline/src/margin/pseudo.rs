//! Learned pseudo-margin for weakly margin-consistent models (methods.md §5.5): a small MLP maps
//! the clean logits (the released notebook's choice) or the penultimate features (the paper's
//! text) to `√d_in`, so that its output ranks samples by input margin better than the logit
//! margin does. It is then judged exactly like the logit margin (Kendall τ, AUROC, AUPR, FPR@95),
//! on attacked samples it was **not** fitted on.
//!
//! Procedure: the attacked samples are split by a seeded shuffle into a fit part
//! (`fit_fraction`) and a held-out part. Targets are `√d_in` divided by 1.05× the largest such
//! value in the fit part, so the sigmoid output can reach them; samples whose margin was not
//! found (beyond the attack's search) get the target 1. Inputs are standardised per feature on
//! the fit part. The network is the notebook's: `Linear(in,512) → Linear(512,512) → ReLU →
//! Linear(512,512) → ReLU → Linear(512,1) → sigmoid`, trained with Adam (lr 1e-4, 500 epochs,
//! batches of up to 5000, MSE; the pairwise ranking loss as an option).

use faultline_attacks::norm::sample_rng;
use faultline_train::{fit, Loss, Mlp, MlpSpec, TrainParams};
use rand_chacha::rand_core::Rng;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::margin::measure::MarginRow;
use crate::margin::report::{input_margin, score_report, ReportParams, ScoreReport};
use crate::stats::{kendall_tau_b, roc_curve};

/// What the pseudo-margin is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PseudoInput {
    /// The clean logits.
    Logits,
    /// The penultimate features (input of the final affine layer).
    Features,
}

impl std::fmt::Display for PseudoInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PseudoInput::Logits => "logits",
            PseudoInput::Features => "features",
        })
    }
}

/// Settings of the pseudo-margin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PseudoParams {
    /// Inputs of the network (default logits).
    pub input: PseudoInput,
    /// Share of the attacked samples fitted on (default 0.5; the rest evaluate).
    pub fit_fraction: f64,
    /// Epochs (default 500).
    pub epochs: usize,
    /// Adam learning rate (default 1e-4).
    pub lr: f32,
    /// Rows per step (default 5000: full batch for smaller sets).
    pub batch_size: usize,
    /// Width of the hidden layers (default 512, the notebook's).
    pub width: usize,
    /// Pairwise ranking loss instead of MSE (default false).
    pub ranking: bool,
    /// Seed of the split, the weights and the shuffles.
    pub seed: u64,
}

impl Default for PseudoParams {
    fn default() -> Self {
        PseudoParams {
            input: PseudoInput::Logits,
            fit_fraction: 0.5,
            epochs: 500,
            lr: 1e-4,
            batch_size: 5000,
            width: 512,
            ranking: false,
            seed: 0,
        }
    }
}

/// The pseudo-margin next to the logit margin.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PseudoReport {
    /// Inputs of the network.
    pub input: PseudoInput,
    /// Samples fitted on.
    pub fit_samples: usize,
    /// Held-out samples the figures below are computed on.
    pub eval_samples: usize,
    /// Training loss of the first and the last epoch.
    pub train_loss: [f64; 2],
    /// Kendall τ on the fit part: logit margin, then pseudo-margin.
    pub fit_kendall_tau: [Option<f64>; 2],
    /// Logit margin on the held-out samples.
    pub before: ScoreReport,
    /// Pseudo-margin on the held-out samples.
    pub after: ScoreReport,
    /// ROC curve of the pseudo-margin on the held-out samples.
    #[serde(skip)]
    pub roc: Vec<[f64; 2]>,
    /// Divisor of `√d_in` in the targets.
    pub target_scale: f64,
    /// Settings.
    pub params: PseudoParams,
}

/// Fits the pseudo-margin on part of the attacked records and evaluates it on the rest; returns
/// the report and the network as safetensors bytes.
pub fn pseudo_margin(
    records: &[MarginRow],
    p: &PseudoParams,
    rp: &ReportParams,
) -> Result<(PseudoReport, Vec<u8>)> {
    let mut att: Vec<&MarginRow> = records.iter().filter(|r| r.attacked).collect();
    // Seeded shuffle, then split.
    let mut rng = sample_rng(p.seed, 0, "pseudo-margin-split");
    for i in (1..att.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        att.swap(i, j);
    }
    let n_fit = ((att.len() as f64) * p.fit_fraction).round() as usize;
    if n_fit < 10 || att.len() - n_fit < 10 {
        return Err(Error::Invalid(format!(
            "a pseudo-margin needs at least 10 attacked samples to fit and 10 to evaluate; {} attacked with --fit-fraction {}",
            att.len(),
            p.fit_fraction
        )));
    }
    let (fit_part, eval_part) = att.split_at(n_fit);
    let inputs = |rs: &[&MarginRow]| -> Result<(Vec<f32>, usize)> {
        let mut x = Vec::new();
        let mut dim = 0;
        for r in rs {
            let v = match p.input {
                PseudoInput::Logits => &r.logits,
                PseudoInput::Features => r.features.as_ref().ok_or_else(|| {
                    Error::Invalid(format!(
                        "sample {} has no stored features (the run did not keep them)",
                        r.index
                    ))
                })?,
            };
            if dim == 0 {
                dim = v.len();
            } else if v.len() != dim {
                return Err(Error::Invalid(format!(
                    "sample {} has {} inputs, others {dim}",
                    r.index,
                    v.len()
                )));
            }
            x.extend_from_slice(v);
        }
        Ok((x, dim))
    };
    let (xf, dim) = inputs(fit_part)?;
    let (xe, _) = inputs(eval_part)?;
    let scale = 1.05
        * fit_part
            .iter()
            .filter_map(|r| r.input_margin)
            .map(|d| (d.max(0.0) as f64).sqrt())
            .fold(0.0f64, f64::max)
            .max(1e-12);
    let targets: Vec<f32> = fit_part
        .iter()
        .map(|r| {
            r.input_margin
                .map_or(1.0, |d| ((d.max(0.0) as f64).sqrt() / scale) as f32)
        })
        .collect();
    let train_err = |e: faultline_train::Error| Error::Invalid(format!("pseudo-margin: {e}"));
    let mut spec = MlpSpec::pseudo_margin(dim);
    spec.hidden = vec![p.width.max(1); spec.hidden.len()];
    let mut net = Mlp::new(spec, p.seed).map_err(train_err)?;
    let tp = TrainParams {
        epochs: p.epochs,
        batch_size: p.batch_size,
        lr: p.lr,
        seed: p.seed,
        loss: if p.ranking { Loss::Ranking } else { Loss::Mse },
        standardize: true,
        ..TrainParams::default()
    };
    let tr = fit(&mut net, &xf, &targets, fit_part.len(), &tp).map_err(train_err)?;
    let pf = net.forward(&xf, fit_part.len()).map_err(train_err)?;
    let pe = net.forward(&xe, eval_part.len()).map_err(train_err)?;
    let d_fit: Vec<f64> = fit_part.iter().map(|r| input_margin(r)).collect();
    let d_eval: Vec<f64> = eval_part.iter().map(|r| input_margin(r)).collect();
    let m = |rs: &[&MarginRow]| -> Vec<f64> {
        rs.iter().map(|r| r.scores.logit_margin as f64).collect()
    };
    let to64 = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| x as f64).collect() };
    let after_scores = to64(&pe);
    let pos: Vec<bool> = d_eval.iter().map(|&d| d <= rp.eps as f64).collect();
    let neg: Vec<f64> = after_scores.iter().map(|v| -v).collect();
    let report = PseudoReport {
        input: p.input,
        fit_samples: fit_part.len(),
        eval_samples: eval_part.len(),
        train_loss: [
            tr.train_loss.first().copied().unwrap_or(f64::NAN),
            tr.train_loss.last().copied().unwrap_or(f64::NAN),
        ],
        fit_kendall_tau: [
            kendall_tau_b(&d_fit, &m(fit_part)),
            kendall_tau_b(&d_fit, &to64(&pf)),
        ],
        before: score_report("logit_margin", &d_eval, &m(eval_part), rp),
        after: score_report("pseudo_margin", &d_eval, &after_scores, rp),
        roc: roc_curve(&neg, &pos),
        target_scale: scale,
        params: p.clone(),
    };
    let bytes = net.to_safetensors().map_err(train_err)?;
    Ok((report, bytes))
}
