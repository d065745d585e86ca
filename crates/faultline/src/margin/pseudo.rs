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
//!
//! Deployed use: [`fit`] on the attacked samples of one set (e.g. training images), [`PseudoMargin::save`]
//! writes the network with its input standardisation (`pseudo_margin.safetensors`) and its
//! settings with the brittleness threshold chosen on the fit samples (`pseudo_margin.json`);
//! [`PseudoMargin::load`] brings it back and [`judge`] compares it with the logit margin on any
//! other attacked set.

use faultline_attacks::norm::sample_rng;
use std::path::Path;

use faultline_attacks::Norm;
use faultline_train::{Loss, Mlp, MlpSpec, TrainParams};
use rand_chacha::rand_core::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{io, Error, Result};
use crate::margin::measure::MarginRow;
use crate::margin::report::{input_margin, score_report, ReportParams, ScoreReport};
use crate::stats::{kendall_tau_b, roc_curve, threshold_for_recall};

/// What the pseudo-margin is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Where it was fitted: `split` (a share of this run's attacked samples), `fit data`
    /// (every attacked sample of another set) or `loaded` (a saved one applied as is).
    pub source: String,
    /// Samples fitted on.
    pub fit_samples: usize,
    /// Held-out samples the figures below are computed on.
    pub eval_samples: usize,
    /// Training loss of the first and the last epoch.
    pub train_loss: [f64; 2],
    /// Kendall τ on the fit part: logit margin, then pseudo-margin.
    pub fit_kendall_tau: [Option<f64>; 2],
    /// The deployable threshold chosen on the fit samples: flag a sample brittle when its
    /// pseudo-margin is at most this.
    pub flag_below: Option<f64>,
    /// Share of the held-out non-robust samples that threshold flags, and share of the
    /// held-out robust ones it flags too.
    pub held_out_flagged: [Option<f64>; 2],
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

/// The settings a fitted pseudo-margin is deployed with (`pseudo_margin.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PseudoMeta {
    /// Inputs of the network.
    pub input: PseudoInput,
    /// Threat model of the input margins it was fitted on.
    pub norm: Norm,
    /// A sample is non-robust when its input margin is at most this.
    pub eps: f32,
    /// Flag a sample brittle when its pseudo-margin is at most this (chosen on the fit samples).
    pub flag_below: Option<f64>,
    /// Share of the non-robust fit samples that threshold flags.
    pub recall: f64,
    /// Divisor of `√d_in` in the targets.
    pub target_scale: f64,
    /// Attacked samples fitted on.
    pub fit_samples: usize,
    /// Training loss of the first and the last epoch.
    pub train_loss: [f64; 2],
}

/// A fitted pseudo-margin: the network (with its input standardisation) and its settings.
#[derive(Debug, Clone)]
pub struct PseudoMargin {
    /// The network.
    pub net: Mlp,
    /// Its settings and threshold.
    pub meta: PseudoMeta,
}

/// The file names of a saved pseudo-margin inside a run directory.
pub const WEIGHTS_FILE: &str = "pseudo_margin.safetensors";
/// See [`WEIGHTS_FILE`].
pub const META_FILE: &str = "pseudo_margin.json";

fn train_err(e: faultline_train::Error) -> Error {
    Error::Invalid(format!("pseudo-margin: {e}"))
}

/// The network inputs of `rows` (logits or features), row-major, and their width.
fn inputs(rows: &[&MarginRow], input: PseudoInput) -> Result<(Vec<f32>, usize)> {
    let mut x = Vec::new();
    let mut dim = 0;
    for r in rows {
        let v = match input {
            PseudoInput::Logits => r.logits,
            PseudoInput::Features => r.features.ok_or_else(|| {
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
}

impl PseudoMargin {
    /// The pseudo-margin of `n` rows of network inputs (logits or features, as fitted).
    pub fn score_inputs(&self, x: &[f32], n: usize) -> Result<Vec<f64>> {
        if n > 0 && x.len() != n * self.net.input() {
            return Err(Error::Invalid(format!(
                "the pseudo-margin takes {} {} per sample, got {}",
                self.net.input(),
                self.meta.input,
                x.len() / n
            )));
        }
        let y = self.net.forward(x, n).map_err(train_err)?;
        Ok(y.into_iter().map(f64::from).collect())
    }

    /// The pseudo-margin of `rows`.
    pub fn scores(&self, rows: &[&MarginRow]) -> Result<Vec<f64>> {
        let (x, _) = inputs(rows, self.meta.input)?;
        self.score_inputs(&x, rows.len())
    }

    /// Flags a score as brittle (at most the threshold; nothing without one).
    pub fn brittle(&self, score: f64) -> bool {
        self.meta.flag_below.is_some_and(|t| score <= t)
    }

    /// Writes [`WEIGHTS_FILE`] and [`META_FILE`] into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let w = dir.join(WEIGHTS_FILE);
        let bytes = self.net.to_safetensors().map_err(train_err)?;
        std::fs::write(&w, bytes).map_err(io(&w))?;
        let m = dir.join(META_FILE);
        let text = serde_json::to_string_pretty(&self.meta).unwrap_or_default();
        std::fs::write(&m, text).map_err(io(&m))
    }

    /// Reads a pseudo-margin [`Self::save`] wrote into `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let m = dir.join(META_FILE);
        let text = std::fs::read_to_string(&m).map_err(|e| Error::RunDir {
            path: m.clone(),
            why: format!(
                "no saved pseudo-margin ({e}); fit one with `faultline margins --pseudo-margin --fit-data`"
            ),
        })?;
        let meta: PseudoMeta = serde_json::from_str(&text).map_err(|e| Error::RunDir {
            path: m.clone(),
            why: format!("not a pseudo-margin description ({e})"),
        })?;
        let w = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&w).map_err(io(&w))?;
        let net = Mlp::from_safetensors(&bytes).map_err(|e| Error::RunDir {
            path: w,
            why: format!("not a pseudo-margin network ({e})"),
        })?;
        Ok(PseudoMargin { net, meta })
    }
}

/// Fits a pseudo-margin on every attacked row of `fit_rows` and chooses its threshold there
/// (flag at most the value that catches `rp.recall` of the non-robust fit samples).
pub fn fit(fit_rows: &[&MarginRow], p: &PseudoParams, rp: &ReportParams) -> Result<PseudoMargin> {
    let fit_rows: Vec<&MarginRow> = fit_rows.iter().copied().filter(|r| r.attacked).collect();
    if fit_rows.len() < 10 {
        return Err(Error::Invalid(format!(
            "a pseudo-margin needs at least 10 attacked samples to fit on; got {}",
            fit_rows.len()
        )));
    }
    let (xf, dim) = inputs(&fit_rows, p.input)?;
    let scale = 1.05
        * fit_rows
            .iter()
            .filter_map(|r| r.input_margin)
            .map(|d| (d.max(0.0) as f64).sqrt())
            .fold(0.0f64, f64::max)
            .max(1e-12);
    let targets: Vec<f32> = fit_rows
        .iter()
        .map(|r| {
            r.input_margin
                .map_or(1.0, |d| ((d.max(0.0) as f64).sqrt() / scale) as f32)
        })
        .collect();
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
    let tr =
        faultline_train::fit(&mut net, &xf, &targets, fit_rows.len(), &tp).map_err(train_err)?;
    let mut pm = PseudoMargin {
        net,
        meta: PseudoMeta {
            input: p.input,
            norm: rp.norm,
            eps: rp.eps,
            flag_below: None,
            recall: rp.recall,
            target_scale: scale,
            fit_samples: fit_rows.len(),
            train_loss: [
                tr.train_loss.first().copied().unwrap_or(f64::NAN),
                tr.train_loss.last().copied().unwrap_or(f64::NAN),
            ],
        },
    };
    let s = pm.scores(&fit_rows)?;
    let pos: Vec<bool> = fit_rows
        .iter()
        .map(|r| input_margin(r) <= rp.eps as f64)
        .collect();
    let neg: Vec<f64> = s.iter().map(|v| -v).collect();
    pm.meta.flag_below = threshold_for_recall(&neg, &pos, rp.recall).map(|t| -t);
    Ok(pm)
}

/// The pseudo-margin `pm` next to the logit margin on the attacked rows of `eval_rows` (and, when
/// given, its rank agreement on the rows it was fitted on).
pub fn judge(
    pm: &PseudoMargin,
    source: &str,
    fit_rows: Option<&[&MarginRow]>,
    eval_rows: &[&MarginRow],
    p: &PseudoParams,
    rp: &ReportParams,
) -> Result<PseudoReport> {
    let eval_rows: Vec<&MarginRow> = eval_rows.iter().copied().filter(|r| r.attacked).collect();
    if eval_rows.len() < 10 {
        return Err(Error::Invalid(format!(
            "judging a pseudo-margin needs at least 10 attacked samples; got {}",
            eval_rows.len()
        )));
    }
    let logit = |rs: &[&MarginRow]| -> Vec<f64> {
        rs.iter().map(|r| r.scores.logit_margin as f64).collect()
    };
    let d_of = |rs: &[&MarginRow]| -> Vec<f64> { rs.iter().map(|r| input_margin(r)).collect() };
    let fit_kendall_tau = match fit_rows {
        Some(f) => {
            let f: Vec<&MarginRow> = f.iter().copied().filter(|r| r.attacked).collect();
            let d = d_of(&f);
            [
                kendall_tau_b(&d, &logit(&f)),
                kendall_tau_b(&d, &pm.scores(&f)?),
            ]
        }
        None => [None, None],
    };
    let d_eval = d_of(&eval_rows);
    let after_scores = pm.scores(&eval_rows)?;
    let pos: Vec<bool> = d_eval.iter().map(|&d| d <= rp.eps as f64).collect();
    let neg: Vec<f64> = after_scores.iter().map(|v| -v).collect();
    let share = |want: bool| -> Option<f64> {
        let of: Vec<f64> = after_scores
            .iter()
            .zip(&pos)
            .filter(|(_, &p)| p == want)
            .map(|(s, _)| *s)
            .collect();
        (pm.meta.flag_below.is_some() && !of.is_empty())
            .then(|| of.iter().filter(|&&s| pm.brittle(s)).count() as f64 / of.len() as f64)
    };
    Ok(PseudoReport {
        input: pm.meta.input,
        source: source.into(),
        fit_samples: pm.meta.fit_samples,
        eval_samples: eval_rows.len(),
        train_loss: pm.meta.train_loss,
        fit_kendall_tau,
        flag_below: pm.meta.flag_below,
        held_out_flagged: [share(true), share(false)],
        before: score_report("logit_margin", &d_eval, &logit(&eval_rows), rp),
        after: score_report("pseudo_margin", &d_eval, &after_scores, rp),
        roc: roc_curve(&neg, &pos),
        target_scale: pm.meta.target_scale,
        params: p.clone(),
    })
}

/// Fits the pseudo-margin on part of the attacked records and evaluates it on the rest.
pub fn pseudo_margin(
    records: &[MarginRow],
    p: &PseudoParams,
    rp: &ReportParams,
) -> Result<(PseudoReport, PseudoMargin)> {
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
    let pm = fit(fit_part, p, rp)?;
    let report = judge(&pm, "split", Some(fit_part), eval_part, p, rp)?;
    Ok((report, pm))
}
