//! `finetune`: (adversarial) fine-tuning of an ONNX classifier in faultline's engine, written
//! back as ONNX.
//!
//! The model trains as loaded ([`TrainModel`]: weight gradients through the same operators
//! that run inference; batch norms in training mode by default). Each epoch shuffles the
//! selected training samples (seeded), augments them (random crop with zero padding and
//! horizontal flip, registered corruptions), replaces a fraction of each batch by adversarial
//! examples against the current weights, and takes one optimiser step per batch on the
//! cross-entropy (per-class weights optional) or the TRADES loss.
//!
//! Adversarial examples (Madry et al. 2018, PGD-AT) are computed against the current weights
//! in inference mode (batch norms at their running statistics), from a random start in the
//! ε-ball, with `steps` signed-gradient steps of α = 2.5·ε/steps (Madry's ratio) and no early
//! stop: `pgd` runs that loop directly (one forward and one backward pass per step, nothing
//! else); any other registered bounded attack runs through the attack registry. With
//! `trades` = β the loss is TRADES (Zhang et al. 2019): `CE(f(x), y) + β·KL(f(x) ‖ f(x'))`, with
//! x' ascending that KL term as in the reference code (which starts at x + 0.001·N(0, 1); here
//! the start is uniform in the ε-ball like PGD's, [U]).
//!
//! After every epoch the run keeps a checkpoint (the trained tensors and the optimiser state)
//! and appends the epoch's record, so a killed run resumes from the last completed epoch with
//! the same numbers. At the end it writes `model.onnx` (the source file with the trained
//! initializers replaced), `loss.svg` and `run.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use faultline_attacks::attack::argmax;
use faultline_attacks::{registry, BatchRef, Goal};
use faultline_corruptions::{CorruptionKind, ParamTable};
use faultline_engine::{BatchNormMode, Loss, Model, ParamRole, Tensor, TrainModel};
use faultline_seed::Stream;
use faultline_train::{Optimizer, OptimizerParams, Schedule};
use serde::{Deserialize, Serialize};

use crate::corruption::{parse_kinds, parse_severities, to_chw, to_image};
use crate::data::{Batch, Dataset};
use crate::error::{io, setting, Error, Result};
use crate::eval::{accuracy_under, check_batch, Perturbation};
use crate::model::{ModelCard, NormalizationCard};
use crate::plot::{xy_chart, Series};
use crate::run::{check_batch_size, threads, write_file, DataCard, Loaded, Output, Progress};
use crate::rundir::RunDir;
use crate::subset::{select, Selection, Subset};

/// One augmentation of the training images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Augment {
    /// Random crop of the image padded by `pad` zero pixels on each side (CIFAR recipe: 4).
    Crop {
        /// Padding in pixels.
        pad: usize,
    },
    /// Horizontal flip with probability ½.
    Flip,
    /// A registered corruption at one of `severities`, each drawn uniformly; applied to a
    /// sample with probability [`FinetuneConfig::corrupt_prob`], one family among those listed.
    Corruption {
        /// The family's registry name.
        name: String,
        /// Severities to draw from (1–5).
        severities: Vec<u8>,
    },
}

/// The augmentation a run uses without `--augment`: a horizontal flip for colour images and
/// none for grey ones (digits and letters are not mirror-symmetric; a flipped "2" is no "2").
pub fn default_augment(image: [usize; 3]) -> Vec<Augment> {
    if image[0] == 1 {
        Vec::new()
    } else {
        vec![Augment::Flip]
    }
}

/// The adversarial-training radius without `--eps`: a quarter of the data set's evaluation
/// radius ([`super::attack::default_eps`], L∞), so fine-tuning from a clean model does not
/// collapse its accuracy: 2/255 for CIFAR-sized images, 0.075 for MNIST-like, 1/255 above
/// 64 px. The factor is a choice [U], not a published default; pass --eps to set it.
pub fn default_adversarial_eps(image: [usize; 3]) -> f32 {
    super::attack::default_eps(faultline_attacks::Norm::Linf, image) / 4.0
}

/// Parses `--augment`: a comma-separated list of `crop` (or `crop:PAD`), `flip`, and
/// corruption names, each optionally `:SEVERITIES` (`gaussian_noise:1-3`; all five by default).
pub fn parse_augment(spec: &str) -> Result<Vec<Augment>> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, arg) = match item.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (item, None),
        };
        out.push(match name {
            "crop" => Augment::Crop {
                pad: arg.map_or(Ok(4), |a| {
                    a.parse().map_err(|_| {
                        setting("--augment", format!("crop padding '{a}' is not a number"))
                    })
                })?,
            },
            "flip" => Augment::Flip,
            "none" => continue,
            _ => {
                let kinds = parse_kinds(name).map_err(|e| setting("--augment", e.to_string()))?;
                let severities = parse_severities(arg.unwrap_or("1-5"))?;
                for k in kinds {
                    out.push(Augment::Corruption {
                        name: k.name().to_string(),
                        severities: severities.clone(),
                    });
                }
                continue;
            }
        });
    }
    Ok(out)
}

/// Adversarial examples mixed into training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adversarial {
    /// A registered bounded attack (`pgd`: Madry's loop; see the module documentation).
    pub attack: String,
    /// L∞ radius in [0, 1] pixel units.
    pub eps: f32,
    /// Attack iterations [default: 3 during training].
    pub steps: usize,
    /// Fraction of each batch replaced by adversarial examples [default 1: all, as PGD-AT].
    pub fraction: f32,
    /// Fraction of the run over which ε grows linearly from 0 to `eps` (ε scheduling, as in
    /// Gowal et al. 2020 and fast adversarial training) [default 0.5]. A model trained without
    /// adversarial examples starts at a huge adversarial loss (17 for the shipped ResNet-20 at
    /// 2/255): with the full ε from the first step, one epoch of PGD fine-tuning on 10,000
    /// images collapsed toward a constant prediction (11–17 % clean accuracy) at learning rates
    /// 0.0001 and 0.001, and at 0.01 with the gradient clipped to norm 1; PyTorch on the same
    /// model and settings followed the same loss curve (21 → 3.4 in 8 steps at 0.001). With ε
    /// ramped over half the run it did not collapse.
    pub warmup: f32,
}

/// Settings of `finetune`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// Passes over the selected training samples.
    pub epochs: usize,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// Base learning rate [default 0.002]. Fine-tuning starts from trained weights: the CIFAR
    /// training recipe's 0.1 (or 0.01) makes SGD diverge within a few steps on the shared
    /// ResNet-20, whose batch norms the exporter folded into its convolutions (PyTorch's loss
    /// was NaN by the 7th step at 0.01, faultline's the same); 0.002 with an ε warm-up gave the
    /// best adversarial fine-tune of 0.0005–0.003 (see the finetune note in docs/benchmarks.md).
    pub lr: f32,
    /// Optimiser and its hyper-parameters.
    pub optimizer: OptimizerParams,
    /// Learning-rate schedule over all steps of the run.
    pub schedule: Schedule,
    /// Batch norms learn batch statistics (`Train`, momentum 0.1, PyTorch's) or stay frozen.
    pub batch_norm: BatchNormChoice,
    /// Train only the parameters of the last k operators with parameters [default: all].
    pub train_last: Option<usize>,
    /// Train only the initializers whose names start with this (`calibrate` trains its
    /// calibrator in front of a frozen model so) [default: all].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_prefix: Option<String>,
    /// Scale the gradient down to this global L2 norm when it is larger (PyTorch's
    /// `clip_grad_norm_`) [default: no clipping].
    pub clip_grad_norm: Option<f32>,
    /// Augmentations, applied in the listed order (crop and flip before corruptions)
    /// [default: flip]. A random crop is the CIFAR training recipe's, but one epoch of
    /// adversarial fine-tuning of the shared ResNet-20 gave 69.8 % clean / 25.8 % robust with
    /// crop + flip against 71.8 % / 30.4 % with flip alone (500 test JPEGs, PGD-20 at 2/255).
    pub augment: Vec<Augment>,
    /// Probability that a sample takes one of the corruption augmentations.
    pub corrupt_prob: f32,
    /// Adversarial training.
    pub adversarial: Option<Adversarial>,
    /// TRADES β (needs `adversarial`).
    pub trades: Option<f32>,
    /// Per-class weights of the cross-entropy (weighted mean, as PyTorch's `weight=`); from a
    /// class-wise run see [`crate::fair`].
    pub class_weights: Option<Vec<f32>>,
    /// Per-class factors of the adversarial radius, `ε_c = factor_c · ε` (FAIR-TAT's
    /// class-adaptive ε, [`crate::fair`]; `pgd` only) [default: one ε for all].
    #[serde(default)]
    pub class_eps: Option<Vec<f32>>,
    /// The training samples [default: all] (`limit` class-stratified by default; `indices` a
    /// file of them; the command line seeds a random subset with `--seed` unless
    /// `--subset-seed` is given).
    pub selection: Selection,
    /// Samples added to the selection, repeats allowed (over-weighting by repetition; `harden`
    /// adds the weak samples) [default: none].
    #[serde(default)]
    pub extra: Vec<usize>,
    /// Validation samples (of the `--val` data set), class-stratified.
    pub val_limit: Option<usize>,
    /// PGD iterations of the robust validation accuracy.
    pub val_steps: usize,
    /// Seed of every random choice (shuffles, augmentation, attack starts).
    pub seed: u64,
}

/// What batch normalization does during fine-tuning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchNormChoice {
    /// Batch statistics; running statistics updated with this momentum.
    Train {
        /// PyTorch's momentum (weight of the batch).
        momentum: f32,
    },
    /// Running statistics kept; γ and β still learn.
    Frozen,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            epochs: 1,
            batch_size: 128,
            lr: 0.002,
            optimizer: OptimizerParams::sgd(),
            schedule: Schedule::Cosine { min_factor: 0.0 },
            batch_norm: BatchNormChoice::Train { momentum: 0.1 },
            train_last: None,
            train_prefix: None,
            clip_grad_norm: None,
            augment: vec![Augment::Flip],
            corrupt_prob: 0.5,
            adversarial: None,
            trades: None,
            class_weights: None,
            class_eps: None,
            selection: Selection::default(),
            extra: Vec::new(),
            val_limit: None,
            val_steps: 20,
            seed: 0,
        }
    }
}

/// One completed epoch (a line of `samples.jsonl`, which holds epochs for this command).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (weighted by batch size).
    pub loss: f64,
    /// Accuracy on the images trained on (adversarial ones included).
    pub train_accuracy: f64,
    /// Loss of each batch, in order (the curve of `loss.svg`).
    pub batch_loss: Vec<f32>,
    /// Learning rate at the epoch's last step.
    pub lr: f32,
    /// Validation clean accuracy after the epoch (with `--val`).
    pub val_clean_accuracy: Option<f64>,
    /// Validation robust accuracy after the epoch (with `--val` and `--adversarial`).
    pub val_robust_accuracy: Option<f64>,
    /// Training images per second over the epoch (augmentation, attacks and steps; no
    /// validation).
    pub images_per_second: f64,
}

/// Validation accuracies of one model.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Scores {
    /// Clean accuracy.
    pub clean_accuracy: f64,
    /// Robust accuracy under the validation attack (with `--adversarial`).
    pub robust_accuracy: Option<f64>,
}

/// The body of `finetune`'s `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneReport {
    /// Validation clean accuracy of the fine-tuned model (with `--val`).
    pub clean_accuracy: Option<f64>,
    /// Validation robust accuracy of the fine-tuned model (with `--val` and `--adversarial`):
    /// PGD with `val_steps` steps at the training ε, random start.
    pub robust_accuracy: Option<f64>,
    /// The same figures for the model before fine-tuning.
    pub before: Option<Scores>,
    /// Training images per second over this invocation's epochs.
    pub images_per_second: f64,
    /// The fine-tuned model.
    pub model_out: PathBuf,
    /// Trained tensors and their element count; frozen ones.
    pub trained_params: usize,
    /// Parameters left frozen by `train_last`.
    pub frozen_params: usize,
    /// Every epoch, resumed ones included.
    pub epochs: Vec<EpochRecord>,
    /// Peak resident memory of the process in MiB (Linux), when known.
    pub peak_memory_mib: Option<f64>,
    /// Epochs already done by an interrupted run this one resumed.
    pub resumed_from: usize,
    /// Worker threads.
    pub threads: usize,
    /// Wall-clock seconds of this invocation.
    pub seconds: f64,
    /// The source model.
    pub model: ModelCard,
    /// The training data.
    pub data: DataCard,
    /// The validation data.
    pub val: Option<DataCard>,
}

/// A validation data set and the samples of it to use.
pub struct Validation<'a> {
    /// The data set.
    pub data: &'a dyn Dataset,
    /// Its description.
    pub card: DataCard,
}

impl FinetuneConfig {
    /// Checks the settings before anything runs.
    pub fn check(&self) -> Result<()> {
        check_batch_size(self.batch_size)?;
        if self.epochs == 0 {
            return Err(setting("--epochs", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(setting("--lr", "must be a positive number"));
        }
        self.optimizer
            .validate()
            .map_err(|e| setting("--optimizer", e.to_string()))?;
        self.schedule
            .validate()
            .map_err(|e| setting("--schedule", e.to_string()))?;
        if matches!(self.batch_norm, BatchNormChoice::Train { .. }) && self.batch_size < 2 {
            return Err(setting(
                "--batch-size",
                "training batch norms needs at least 2 images per batch (or --batch-norm frozen)",
            ));
        }
        if let BatchNormChoice::Train { momentum } = self.batch_norm {
            if !(0.0..=1.0).contains(&momentum) {
                return Err(setting("--bn-momentum", "must be in [0, 1]"));
            }
        }
        if self
            .clip_grad_norm
            .is_some_and(|c| !(c.is_finite() && c > 0.0))
        {
            return Err(setting("--clip-grad-norm", "must be a positive number"));
        }
        if self.train_last == Some(0) {
            return Err(setting("--train-last", "0 layers leaves nothing to train"));
        }
        if !(0.0..=1.0).contains(&self.corrupt_prob) {
            return Err(setting("--corrupt-prob", "must be in [0, 1]"));
        }
        if let Some(a) = &self.adversarial {
            if !(a.eps > 0.0 && a.eps <= 1.0) {
                return Err(setting(
                    "--eps",
                    "must be in (0, 1] (pixel units; 2/255 is written 2/255)",
                ));
            }
            if a.steps == 0 {
                return Err(setting("--steps", "must be at least 1"));
            }
            if !(0.0..=1.0).contains(&a.warmup) {
                return Err(setting("--eps-warmup", "must be in [0, 1]"));
            }
            if !(a.fraction > 0.0 && a.fraction <= 1.0) {
                return Err(setting("--adv-fraction", "must be in (0, 1]"));
            }
            let e =
                registry::entry(&a.attack).map_err(|e| setting("--adversarial", e.to_string()))?;
            if e.kind != registry::Kind::Bounded {
                return Err(setting(
                    "--adversarial",
                    format!(
                        "{} is a minimum-norm attack; training needs a bounded one",
                        a.attack
                    ),
                ));
            }
        }
        if let Some(b) = self.trades {
            if self.adversarial.is_none() {
                return Err(setting(
                    "--trades",
                    "needs --adversarial (the attack and its ε)",
                ));
            }
            if !(b.is_finite() && b >= 0.0) {
                return Err(setting("--trades", "β must be ≥ 0"));
            }
        }
        if let Some(w) = &self.class_weights {
            if w.iter().any(|v| !(v.is_finite() && *v >= 0.0)) || w.iter().all(|v| *v == 0.0) {
                return Err(setting(
                    "--class-weights",
                    "weights must be ≥ 0 and not all 0",
                ));
            }
        }
        if let Some(f) = &self.class_eps {
            if self.adversarial.as_ref().is_none_or(|a| a.attack != "pgd") {
                return Err(setting("--class-eps", "needs --adversarial pgd"));
            }
            if f.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(setting("--class-eps", "factors must be > 0"));
            }
        }
        if self.val_limit == Some(0) {
            return Err(setting("--val-limit", "0 selects no samples"));
        }
        if self.val_steps == 0 {
            return Err(setting("--val-steps", "must be at least 1"));
        }
        Ok(())
    }
}

/// The seeded permutation of `n` positions for `epoch` (Fisher–Yates).
fn shuffle(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut r = Stream::new(seed, epoch as u64, "finetune:shuffle");
    for i in (1..n).rev() {
        order.swap(i, r.below(i + 1));
    }
    order
}

/// Augments each image of `batch` in place. Sample `i`'s draws depend only on the seed, the
/// epoch and its data-set index.
fn augment(cfg: &FinetuneConfig, batch: &mut Batch, epoch: usize, table: ParamTable) -> Result<()> {
    let (c, h, w) = (batch.channels, batch.height, batch.width);
    let per = c * h * w;
    let corruptions: Vec<(CorruptionKind, &[u8])> = cfg
        .augment
        .iter()
        .filter_map(|a| match a {
            Augment::Corruption { name, severities } => CorruptionKind::ALL
                .iter()
                .find(|k| k.name() == name)
                .map(|&k| (k, severities.as_slice())),
            _ => None,
        })
        .collect();
    use rayon::prelude::*;
    let indices = batch.indices.clone();
    batch
        .images
        .par_chunks_mut(per)
        .zip(indices.par_iter())
        .try_for_each(|(img, &index)| -> Result<()> {
            let key = (epoch as u64) << 40 ^ index as u64;
            let mut r = Stream::new(cfg.seed, key, "finetune:augment");
            for a in &cfg.augment {
                match a {
                    Augment::Crop { pad } => {
                        let (dy, dx) = (r.below(2 * pad + 1), r.below(2 * pad + 1));
                        let src = img.to_vec();
                        for ch in 0..c {
                            for y in 0..h {
                                for x in 0..w {
                                    let (sy, sx) = (
                                        (y + dy) as isize - *pad as isize,
                                        (x + dx) as isize - *pad as isize,
                                    );
                                    img[(ch * h + y) * w + x] = if sy >= 0
                                        && sx >= 0
                                        && (sy as usize) < h
                                        && (sx as usize) < w
                                    {
                                        src[(ch * h + sy as usize) * w + sx as usize]
                                    } else {
                                        0.0
                                    };
                                }
                            }
                        }
                    }
                    Augment::Flip => {
                        if r.unit() < 0.5 {
                            for row in img.chunks_mut(w) {
                                row.reverse();
                            }
                        }
                    }
                    Augment::Corruption { .. } => {}
                }
            }
            if !corruptions.is_empty() && r.unit() < cfg.corrupt_prob {
                let (kind, sev) = corruptions[r.below(corruptions.len())];
                let severity = sev[r.below(sev.len())];
                let u8img = to_image(img, c, h, w)?;
                let out = faultline_corruptions::corrupt(
                    kind,
                    severity,
                    table,
                    &u8img,
                    cfg.seed ^ (epoch as u64),
                    index as u64,
                )
                .map_err(|e| {
                    Error::Invalid(format!(
                        "{} severity {severity}, sample {index}: {e}",
                        kind.name()
                    ))
                })?;
                img.copy_from_slice(&to_chw(&out));
            }
            Ok(())
        })
}

/// Per-sample softmax probabilities and log-probabilities of one logit row.
fn softmax(z: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
    let logp: Vec<f32> = z.iter().map(|v| v - lse).collect();
    (logp.iter().map(|l| l.exp()).collect(), logp)
}

/// Weighted mean cross-entropy of `z` (N·K) against `labels`: per-sample losses and the
/// gradient with respect to the logits, `w_y (p − onehot(y)) / Σ w_y`.
fn cross_entropy(
    z: &[f32],
    k: usize,
    labels: &[usize],
    weights: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let w = |y: usize| weights.map_or(1.0, |w| w.get(y).copied().unwrap_or(1.0));
    let total: f32 = labels.iter().map(|&y| w(y)).sum::<f32>().max(1e-12);
    let mut seed = vec![0.0f32; z.len()];
    let mut losses = Vec::with_capacity(labels.len());
    for (i, row) in z.chunks(k).enumerate() {
        let (p, logp) = softmax(row);
        let y = labels[i];
        losses.push(-logp[y]);
        for j in 0..k {
            seed[i * k + j] = w(y) * (p[j] - f32::from(j == y)) / total;
        }
    }
    (losses, seed)
}

/// The TRADES objective over a batch laid out as N clean then N adversarial images:
/// `mean CE(z, y) + β·mean KL(softmax z ‖ softmax z')`, and its logit gradient (both halves).
fn trades_loss(
    z: &[f32],
    k: usize,
    labels: &[usize],
    weights: Option<&[f32]>,
    beta: f32,
) -> (Vec<f32>, Vec<f32>) {
    let n = labels.len();
    let (clean, adv) = z.split_at(n * k);
    let (mut losses, seed_ce) = cross_entropy(clean, k, labels, weights);
    let mut seed = vec![0.0f32; z.len()];
    seed[..n * k].copy_from_slice(&seed_ce);
    for i in 0..n {
        let (p, logp) = softmax(&clean[i * k..(i + 1) * k]);
        let (q, logq) = softmax(&adv[i * k..(i + 1) * k]);
        let a: Vec<f32> = (0..k).map(|j| logp[j] - logq[j]).collect();
        let kl: f32 = (0..k).map(|j| p[j] * a[j]).sum();
        losses[i] += beta * kl;
        for j in 0..k {
            // ∂KL/∂z_j = p_j (a_j − KL); ∂KL/∂z'_j = q_j − p_j.
            seed[i * k + j] += beta * p[j] * (a[j] - kl) / n as f32;
            seed[(n + i) * k + j] += beta * (q[j] - p[j]) / n as f32;
        }
    }
    (losses, seed)
}

/// Madry's PGD (L∞, random start, α = 2.5·ε/steps, no early stop) against `model`, ascending
/// the cross-entropy, or with `clean_probs` the KL divergence from those probabilities (TRADES).
#[allow(clippy::too_many_arguments)]
fn pgd_train(
    model: &Model,
    x: &[f32],
    labels: &[usize],
    indices: &[usize],
    eps: &[f32],
    steps: usize,
    clean_probs: Option<&[f32]>,
    seed: u64,
) -> Result<Vec<f32>> {
    let per = x.len() / labels.len().max(1);
    let mut adv: Vec<f32> = Vec::with_capacity(x.len());
    for (i, &index) in indices.iter().enumerate() {
        let mut r = Stream::new(seed, index as u64, "finetune:pgd");
        adv.extend(
            x[i * per..(i + 1) * per]
                .iter()
                .map(|&v| (v + eps[i] * (2.0 * r.unit() - 1.0)).clamp(0.0, 1.0)),
        );
    }
    let k = model.num_classes();
    for _ in 0..steps {
        let g = match clean_probs {
            None => model.loss_grad(&adv, &Loss::CrossEntropy { labels })?.grad,
            Some(p) => {
                let f = model.forward(&adv)?;
                let w: Vec<f32> = f
                    .logits()
                    .chunks(k)
                    .enumerate()
                    .flat_map(|(i, row)| {
                        let (q, _) = softmax(row);
                        (0..k).map(move |j| q[j] - p[i * k + j]).collect::<Vec<_>>()
                    })
                    .collect();
                f.input_grad(&w)?
            }
        };
        for (i, (a, gv)) in adv.iter_mut().zip(&g).enumerate() {
            let (x0, e) = (x[i], eps[i / per.max(1)]);
            *a = (*a + 2.5 * e / steps as f32 * gv.signum())
                .clamp(x0 - e, x0 + e)
                .clamp(0.0, 1.0);
        }
    }
    Ok(adv)
}

/// Validation accuracies of `model` on `data` samples `indices`: clean, and with `adv` robust
/// (PGD with `steps` steps at its ε through the attack registry, random start).
fn validate(
    model: &Model,
    data: &dyn Dataset,
    indices: &[usize],
    adv: Option<&Adversarial>,
    steps: usize,
    batch_size: usize,
    seed: u64,
) -> Result<Scores> {
    let mut kinds = vec![Perturbation::Clean];
    kinds.extend(adv.map(|a| Perturbation::Attack {
        name: "pgd".into(),
        eps: a.eps,
        steps: Some(steps),
    }));
    let acc = accuracy_under(model, data, indices, &kinds, batch_size, seed)?;
    Ok(Scores {
        clean_accuracy: acc[0],
        robust_accuracy: acc.get(1).copied(),
    })
}

/// Checkpoint of epoch `e`: the trained tensors and the optimiser.
fn checkpoint_paths(dir: &Path, e: usize) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("checkpoint-{e}.safetensors")),
        dir.join(format!("checkpoint-{e}.optimizer.json")),
    )
}

fn save_checkpoint(dir: &Path, e: usize, tm: &TrainModel, opt: &Optimizer) -> Result<()> {
    let (tp, op) = checkpoint_paths(dir, e);
    let state = tm.state();
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = state
        .iter()
        .map(|(n, t)| {
            let b: Vec<u8> = t
                .as_f32()
                .unwrap_or(&[])
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (n.to_string(), b, t.shape().to_vec())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, b, s)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Invalid(format!("checkpoint tensor '{n}': {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    // safetensors writes a sibling temporary file and renames it: the write is atomic.
    safetensors::serialize_to_file(views, None, &tp)
        .map_err(|e| Error::Invalid(format!("{}: {e}", tp.display())))?;
    let json =
        serde_json::to_vec(opt).map_err(|e| Error::Invalid(format!("optimizer state: {e}")))?;
    let tmp = op.with_extension("tmp");
    std::fs::write(&tmp, json).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &op).map_err(io(&op))?;
    Ok(())
}

/// Removes every checkpoint file but epoch `keep`'s, stale ones included, and the temporary
/// files safetensors writes before renaming (`.tmp…`): a run killed between writing one
/// checkpoint and removing the previous, or inside a write, leaves files the resumed run must
/// not keep (both found by the soak test).
fn prune_checkpoints(dir: &Path, keep: usize) {
    let (tp, op) = checkpoint_paths(dir, keep);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.starts_with("checkpoint-") || name.starts_with(".tmp")) && p != tp && p != op {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn load_checkpoint(dir: &Path, e: usize, tm: &mut TrainModel) -> Result<Optimizer> {
    let (tp, op) = checkpoint_paths(dir, e);
    let bytes = std::fs::read(&tp).map_err(io(&tp))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::Invalid(format!("{}: {e}", tp.display())))?;
    for (name, view) in st.tensors() {
        let vals: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tm.set_state(&name, &vals).map_err(Error::Engine)?;
    }
    let text = std::fs::read(&op).map_err(io(&op))?;
    serde_json::from_slice(&text).map_err(|e| Error::Invalid(format!("{}: {e}", op.display())))
}

/// Runs `finetune` on `loaded` (the training data and the model as prepared for it), with an
/// optional validation set.
pub fn run(
    cfg: &FinetuneConfig,
    loaded: &Loaded,
    val: Option<&Validation>,
    out: &Output,
    progress: &dyn Progress,
) -> Result<FinetuneReport> {
    cfg.check()?;
    crate::run::refuse_shard(&cfg.selection, "finetune")?;
    let t_start = Instant::now();
    let data = loaded.data.as_ref();
    let info = data.info();
    let image = [info.channels, info.height, info.width];
    let k = loaded.model.card.num_classes;
    for (flag, w) in [
        ("--class-weights", &cfg.class_weights),
        ("--class-eps", &cfg.class_eps),
    ] {
        if let Some(w) = w {
            if w.len() != k {
                return Err(setting(flag, format!("{} values for {k} classes", w.len())));
            }
        }
    }
    let base = loaded.select(&cfg.selection)?;
    if let Some(&bad) = cfg.extra.iter().find(|&&i| i >= info.len) {
        return Err(Error::Invalid(format!(
            "extra training sample {bad} is past the last of {} in {}",
            info.len,
            info.source.display()
        )));
    }
    let mut selected = base.clone();
    selected.extend_from_slice(&cfg.extra);
    let val_indices = match val {
        Some(v) => Some(select(v.data, cfg.val_limit, Subset::Stratified, cfg.seed)?),
        None => None,
    };
    let mut settings = loaded.settings(&cfg.selection, &base)?;
    settings["finetune"] = serde_json::to_value(cfg).unwrap_or_default();
    settings["val"] = serde_json::json!(val.map(|v| v.card.path.clone()));
    let (mut rd, mut epochs): (RunDir, Vec<EpochRecord>) =
        RunDir::open(&out.dir, "finetune", settings, out.mode())?;
    if let Some(line) = rd.replaced() {
        progress.note(line);
    }
    // Keep only epochs whose checkpoint is there (a kill between the two writes).
    while !epochs.is_empty() && !checkpoint_paths(&out.dir, epochs.len()).0.exists() {
        epochs.pop();
    }
    let start_epoch = epochs.len();

    let norm = loaded
        .model
        .card
        .normalization
        .as_ref()
        .map(NormalizationCard::to_normalization);
    let (source, _) = faultline_onnx::load(&loaded.model_path)?;
    // Only the file's initializers can be trained and written back.
    let inits: std::collections::HashSet<String> =
        faultline_onnx::initializer_names(&loaded.model_path)?
            .into_iter()
            .collect();
    let bn = match cfg.batch_norm {
        BatchNormChoice::Train { momentum } => BatchNormMode::Train { momentum },
        BatchNormChoice::Frozen => BatchNormMode::Frozen,
    };
    let learnable =
        |n: &str| inits.contains(n) && cfg.train_prefix.as_deref().is_none_or(|p| n.starts_with(p));
    let mut tm = TrainModel::new(source, image, norm, bn, &learnable).map_err(Error::Engine)?;
    if tm.params().is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no trainable parameters found (Conv/Gemm/MatMul weights, biases, batch-norm scales as initializers)",
            loaded.model_path.display()
        )));
    }
    let layers = tm
        .params()
        .iter()
        .map(|p| p.layer)
        .max()
        .map_or(0, |m| m + 1);
    let trained: Vec<bool> = tm
        .params()
        .iter()
        .map(|p| cfg.train_last.is_none_or(|l| p.layer + l >= layers))
        .collect();
    let sizes: Vec<usize> = tm
        .params()
        .iter()
        .zip(&trained)
        .filter(|(_, t)| **t)
        .map(|(p, _)| p.shape.iter().product())
        .collect();
    let decay: Vec<bool> = tm
        .params()
        .iter()
        .zip(&trained)
        .filter(|(_, t)| **t)
        .map(|(p, _)| p.role == ParamRole::Weight)
        .collect();
    let trained_params: usize = sizes.iter().sum();
    let frozen_params: usize = tm
        .params()
        .iter()
        .map(|p| p.shape.iter().product::<usize>())
        .sum::<usize>()
        - trained_params;
    let mut opt = if start_epoch > 0 {
        progress.note(&format!(
            "resuming {}: {start_epoch} of {} epochs already done",
            out.dir.display(),
            cfg.epochs
        ));
        let opt = load_checkpoint(&out.dir, start_epoch, &mut tm)?;
        prune_checkpoints(&out.dir, start_epoch);
        opt
    } else {
        Optimizer::new(cfg.optimizer, &sizes).map_err(|e| setting("--optimizer", e.to_string()))?
    };

    let before = match (val, &val_indices) {
        (Some(v), Some(ix)) if start_epoch == 0 => {
            progress.note(&format!(
                "validating the original model on {} samples",
                ix.len()
            ));
            let s = validate(
                &loaded.model.model,
                v.data,
                ix,
                cfg.adversarial.as_ref(),
                cfg.val_steps,
                cfg.batch_size,
                cfg.seed,
            )?;
            // Kept beside the checkpoints: a resumed run does not validate the original again.
            let p = out.file("before.json");
            std::fs::write(&p, serde_json::to_vec(&s).unwrap_or_default()).map_err(io(&p))?;
            Some(s)
        }
        _ => None,
    };

    let table = ParamTable::for_size(info.height, info.width);
    let steps_per_epoch = selected.len().div_ceil(cfg.batch_size);
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut trained_images = 0usize;
    let mut train_secs = 0.0f64;
    for epoch in start_epoch..cfg.epochs {
        let t0 = Instant::now();
        let order = shuffle(selected.len(), cfg.seed, epoch);
        progress.start(
            &format!("epoch {}/{}", epoch + 1, cfg.epochs),
            selected.len(),
            0,
        );
        let (mut loss_sum, mut right, mut seen) = (0.0f64, 0usize, 0usize);
        let mut batch_loss = Vec::with_capacity(steps_per_epoch);
        let mut lr = cfg.lr;
        for (b, pos) in order.chunks(cfg.batch_size).enumerate() {
            if pos.len() < 2 && matches!(bn, BatchNormMode::Train { .. }) {
                // A last batch of one image has no batch statistics: skip it (PyTorch's
                // drop_last for that case).
                continue;
            }
            let idx: Vec<usize> = pos.iter().map(|&p| selected[p]).collect();
            let mut batch = data.read(&idx)?;
            check_batch(&batch, k, &info.source.display().to_string())?;
            augment(cfg, &mut batch, epoch, table)?;
            let n = batch.len();
            let (images, trades_clean) = match &cfg.adversarial {
                None => (batch.images.clone(), None),
                Some(a) => {
                    let model = tm.inference().map_err(Error::Engine)?;
                    let m = ((a.fraction * n as f32).ceil() as usize).clamp(1, n);
                    let per = batch.images.len() / n;
                    let (xa, la, ia) = (
                        &batch.images[..m * per],
                        &batch.labels[..m],
                        &batch.indices[..m],
                    );
                    let clean_probs = match cfg.trades {
                        Some(_) => Some(
                            model
                                .logits(xa)?
                                .chunks(k)
                                .flat_map(|r| softmax(r).0)
                                .collect::<Vec<f32>>(),
                        ),
                        None => None,
                    };
                    let attack_seed =
                        faultline_seed::derive(cfg.seed, epoch as u64, "finetune:attack");
                    let step_no = epoch * steps_per_epoch + b;
                    let ramp = a.warmup * total_steps as f32;
                    let eps = if ramp > 0.0 {
                        a.eps * ((step_no + 1) as f32 / ramp).min(1.0)
                    } else {
                        a.eps
                    };
                    let adv = if a.attack == "pgd" {
                        let radii: Vec<f32> = la
                            .iter()
                            .map(|&y| eps * cfg.class_eps.as_ref().map_or(1.0, |f| f[y]))
                            .collect();
                        pgd_train(
                            &model,
                            xa,
                            la,
                            ia,
                            &radii,
                            a.steps,
                            clean_probs.as_deref(),
                            attack_seed,
                        )?
                    } else {
                        let at = registry::build(
                            &a.attack,
                            &registry::Settings {
                                steps: Some(a.steps),
                                seed: attack_seed,
                                ..Default::default()
                            },
                        )
                        .map_err(Error::Attack)?;
                        let registry::Method::Bounded(m) = &at.method else {
                            unreachable!("checked bounded")
                        };
                        m.run(
                            &model,
                            BatchRef::new(xa, ia),
                            Goal {
                                labels: la,
                                targets: None,
                            },
                            eps,
                        )
                        .map_err(Error::Attack)?
                        .adv
                    };
                    let mut imgs = batch.images.clone();
                    imgs[..m * per].copy_from_slice(&adv);
                    (imgs, cfg.trades.map(|beta| (beta, m)))
                }
            };
            let labels = batch.labels.clone();
            let weights = cfg.class_weights.clone();
            let mut step = match trades_clean {
                Some((beta, m)) => {
                    // Clean images of the attacked part first, then the whole batch as trained.
                    let per = images.len() / n;
                    let mut both = batch.images[..m * per].to_vec();
                    both.extend_from_slice(&images[..m * per]);
                    let rest = &images[m * per..];
                    both.extend_from_slice(rest);
                    let la = labels.clone();
                    tm.step(&both, move |z, k| {
                        let (mut l, mut s) =
                            trades_loss(&z[..2 * m * k], k, &la[..m], weights.as_deref(), beta);
                        if n > m {
                            // Clean remainder of a mixed batch: plain cross-entropy, weighted
                            // by its share of the batch.
                            let (l2, s2) =
                                cross_entropy(&z[2 * m * k..], k, &la[m..], weights.as_deref());
                            let share = (n - m) as f32 / n as f32;
                            s.iter_mut().for_each(|v| *v *= 1.0 - share);
                            s.extend(s2.iter().map(|v| v * share));
                            l.extend(l2);
                        }
                        Ok((l, s))
                    })
                }
                None => tm.step(&images, move |z, k| {
                    Ok(cross_entropy(z, k, &labels, weights.as_deref()))
                }),
            }
            .map_err(Error::Engine)?;
            let step_no = epoch * steps_per_epoch + b;
            lr = cfg.schedule.lr(cfg.lr, step_no, total_steps);
            {
                let mut values = tm.values_mut();
                let mut params: Vec<&mut [f32]> = values
                    .drain(..)
                    .zip(&trained)
                    .filter(|(_, t)| **t)
                    .map(|(v, _)| v)
                    .collect();
                let norm = step
                    .grads
                    .iter()
                    .zip(&trained)
                    .filter(|(_, t)| **t)
                    .flat_map(|(g, _)| g.iter())
                    .map(|v| (*v as f64) * (*v as f64))
                    .sum::<f64>()
                    .sqrt();
                if let Some(c) = cfg.clip_grad_norm {
                    if norm > c as f64 {
                        let s = (c as f64 / norm) as f32;
                        step.grads
                            .iter_mut()
                            .for_each(|g| g.iter_mut().for_each(|v| *v *= s));
                    }
                }
                let grads: Vec<&[f32]> = step
                    .grads
                    .iter()
                    .zip(&trained)
                    .filter(|(_, t)| **t)
                    .map(|(g, _)| g.as_slice())
                    .collect();
                opt.step(lr, &mut params, &grads, &decay)
                    .map_err(|e| Error::Invalid(format!("optimizer step: {e}")))?;
            }
            // The last n logits rows are those of the trained batch (TRADES puts clean first).
            let zl = &step.logits[step.logits.len() - n * k..];
            right += zl
                .chunks(k)
                .zip(&batch.labels)
                .filter(|(row, &y)| argmax(row) == y)
                .count();
            let mean: f64 =
                step.loss.iter().map(|&v| v as f64).sum::<f64>() / step.loss.len().max(1) as f64;
            if !mean.is_finite() {
                return Err(Error::Invalid(format!(
                    "the training loss became {mean} at epoch {} step {}; lower --lr",
                    epoch + 1,
                    b + 1
                )));
            }
            loss_sum += mean * n as f64;
            seen += n;
            batch_loss.push(mean as f32);
            progress.advance(seen);
            let secs = t0.elapsed().as_secs_f64().max(1e-9);
            progress.message(&format!(
                "loss {:.3}  acc {:.1} %  {:.0} img/s",
                loss_sum / seen as f64,
                100.0 * right as f64 / seen as f64,
                seen as f64 / secs
            ));
        }
        progress.finish();
        let secs = t0.elapsed().as_secs_f64();
        train_secs += secs;
        trained_images += seen;
        let scores = match (val, &val_indices) {
            (Some(v), Some(ix)) => {
                let model = tm.inference().map_err(Error::Engine)?;
                Some(validate(
                    &model,
                    v.data,
                    ix,
                    cfg.adversarial.as_ref(),
                    cfg.val_steps,
                    cfg.batch_size,
                    cfg.seed,
                )?)
            }
            _ => None,
        };
        let rec = EpochRecord {
            epoch: epoch + 1,
            loss: loss_sum / seen.max(1) as f64,
            train_accuracy: right as f64 / seen.max(1) as f64,
            batch_loss,
            lr,
            val_clean_accuracy: scores.map(|s| s.clean_accuracy),
            val_robust_accuracy: scores.and_then(|s| s.robust_accuracy),
            images_per_second: seen as f64 / secs.max(1e-9),
        };
        save_checkpoint(&out.dir, epoch + 1, &tm, &opt)?;
        rd.append(std::slice::from_ref(&rec))?;
        prune_checkpoints(&out.dir, epoch + 1);
        progress.note(&format!(
            "epoch {}: loss {:.4}, train accuracy {:.2} %{}",
            rec.epoch,
            rec.loss,
            100.0 * rec.train_accuracy,
            match (rec.val_clean_accuracy, rec.val_robust_accuracy) {
                (Some(c), Some(r)) =>
                    format!(", val clean {:.2} %, robust {:.2} %", 100.0 * c, 100.0 * r),
                (Some(c), None) => format!(", val clean {:.2} %", 100.0 * c),
                _ => String::new(),
            }
        ));
        epochs.push(rec);
    }

    let model_out = out.file("model.onnx");
    let state = tm.state();
    let replace: Vec<(&str, &Tensor)> = state.iter().map(|(n, t)| (*n, *t)).collect();
    faultline_onnx::export(
        &loaded.model_path,
        &replace,
        &model_out,
        &faultline_onnx::ExportOptions::default(),
    )?;
    let series: Vec<Series> = {
        let mut points = Vec::new();
        for e in &epochs {
            let nb = e.batch_loss.len().max(1) as f64;
            for (i, l) in e.batch_loss.iter().enumerate() {
                points.push([(e.epoch - 1) as f64 + (i + 1) as f64 / nb, *l as f64]);
            }
        }
        vec![Series {
            name: "batch loss".into(),
            points,
            line: true,
        }]
    };
    write_file(
        &out.file("loss.svg"),
        &xy_chart("Fine-tuning loss", "epoch", "loss", &series, None),
    )?;
    let last = epochs.last();
    let report = FinetuneReport {
        clean_accuracy: last.and_then(|e| e.val_clean_accuracy),
        robust_accuracy: last.and_then(|e| e.val_robust_accuracy),
        before: before.or_else(|| read_before(&out.dir)),
        images_per_second: if train_secs > 0.0 {
            trained_images as f64 / train_secs
        } else {
            0.0
        },
        model_out,
        trained_params,
        frozen_params,
        epochs,
        peak_memory_mib: crate::run::bench::peak_rss_mib(),
        resumed_from: start_epoch,
        threads: threads(),
        seconds: t_start.elapsed().as_secs_f64(),
        model: loaded.model.card.clone(),
        data: loaded.data_card(),
        val: val.map(|v| v.card.clone()),
    };
    rd.finish(&report)?;
    Ok(report)
}

/// The original model's scores saved by an interrupted run (a resumed run does not validate
/// the original model again).
fn read_before(dir: &Path) -> Option<Scores> {
    let text = std::fs::read(dir.join("before.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central finite differences of the TRADES objective (sum of per-sample losses / n) with
    /// respect to every logit.
    #[test]
    fn trades_and_cross_entropy_logit_gradients_match_finite_differences() {
        let k = 4;
        let labels = [1usize, 3];
        let z: Vec<f32> = (0..2 * 2 * k)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let weights = [1.0f32, 2.0, 0.5, 1.5];
        let f = |z: &[f32]| -> f64 {
            let (l, _) = trades_loss(z, k, &labels, Some(&weights), 0.7);
            // The objective: weighted-mean CE + β·mean KL; rebuild it from its parts.
            let (ce, _) = cross_entropy(&z[..2 * k], k, &labels, Some(&weights));
            let wsum: f64 = labels.iter().map(|&y| weights[y] as f64).sum();
            let wce: f64 = ce
                .iter()
                .zip(&labels)
                .map(|(c, &y)| *c as f64 * weights[y] as f64)
                .sum::<f64>()
                / wsum;
            let kl: f64 = l
                .iter()
                .zip(&ce)
                .map(|(a, b)| (*a - *b) as f64)
                .sum::<f64>()
                / labels.len() as f64;
            wce + kl
        };
        let (_, seed) = trades_loss(&z, k, &labels, Some(&weights), 0.7);
        for i in 0..z.len() {
            let h = 1e-2f32;
            let mut zp = z.clone();
            zp[i] += h;
            let mut zm = z.clone();
            zm[i] -= h;
            let fd = (f(&zp) - f(&zm)) / (2.0 * h as f64);
            assert!(
                (fd - seed[i] as f64).abs() < 2e-3,
                "logit {i}: fd {fd} vs {}",
                seed[i]
            );
        }
    }

    #[test]
    fn augment_spec_parses_and_rejects() {
        let a = parse_augment("crop,flip,gaussian_noise:1-2").unwrap();
        assert_eq!(a[0], Augment::Crop { pad: 4 });
        assert_eq!(a[1], Augment::Flip);
        assert_eq!(
            a[2],
            Augment::Corruption {
                name: "gaussian_noise".into(),
                severities: vec![1, 2]
            }
        );
        assert!(parse_augment("crop:x").is_err());
        assert!(parse_augment("no_such_corruption").is_err());
    }

    #[test]
    fn shuffles_are_seeded_permutations() {
        let a = shuffle(100, 3, 0);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(a, shuffle(100, 3, 0));
        assert_ne!(a, shuffle(100, 3, 1));
        assert_ne!(a, shuffle(100, 4, 0));
    }
}
