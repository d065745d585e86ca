//! `calibrate`: a small calibrator network trained in front of a frozen, possibly quantized
//! classifier, so that the classifier recovers accuracy on corruptions it was never trained on
//! (Ye et al. 2019, "Brain-inspired reverse adversarial examples", methods.md §4.3 B: +19.02 %
//! on unseen transformations and +30.78 % on quantized models in the abstract).
//!
//! The calibrator G ([`faultline_onnx::calibrator`]: a stem convolution, residual blocks and a
//! head convolution) feeds the model `clip(x + ε·tanh(G(x)))`, and is trained with the model
//! frozen: `min_G E[CE(f(clip(x + ε·tanh(G(x)))), y)]` over the training images, each corrupted
//! with probability `corrupt_prob` by one of the *seen* families at a random severity. Training
//! is `finetune` on the combined graph (G then f) with only G's tensors learnable and batch norms
//! frozen ([`FinetuneConfig::train_prefix`]): the same engine gradients, checkpoints and resume.
//! G starts as the identity (its head is zero), so an untrained calibrator changes nothing.
//!
//! Evaluation: on the test samples (class-stratified), clean and under every *unseen* family
//! (never used in training) and every seen one, at each severity, the accuracy of the frozen
//! model without and with its calibrator. With a quantized model (`quantized`), a second
//! calibrator is trained in front of it (the paper's pipeline: compress and deploy, then train a
//! calibrator for the deployed model), and the float model's calibrator is evaluated in front of
//! it too. Counts are appended to `samples.jsonl` per test batch, so a killed run resumes.
//!
//! Writes `calibrator.onnx` (G alone), `combined.onnx` (G then the model, one graph taking the
//! model's input: a drop-in replacement, loadable by ONNX Runtime and faultline), the training
//! run under `train/`, the same under `quantized/` for a quantized model, and `run.json`.
//!
//! Defaults marked [U] are ours (methods.md: the paper's settings are unknown).

use std::path::{Path, PathBuf};
use std::time::Instant;

use faultline_attacks::attack::argmax;
use faultline_onnx::calibrator::{self, CalibratorSpec, ParamSpec, PREFIX};
use faultline_seed::Stream;
use faultline_train::{OptimizerParams, Schedule};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::corruption::{parse_kinds_for, CorruptionKind, CorruptionPlan, ParamTable};
use crate::error::{io, setting, Error, Result};
use crate::eval::check_batch;
use crate::model::{load_model, LoadedModel, ModelCard, NormalizationCard};
use crate::run::finetune::{self, Augment, BatchNormChoice, FinetuneConfig, Validation};
use crate::run::{check_batch_size, threads, DataCard, Loaded, Output, Progress};
use crate::rundir::RunDir;
use crate::subset::{read_batches, select, Selection, Subset};

/// Settings of `calibrate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrateConfig {
    /// Corruption families the calibrator trains on [default: `extra`, the four families
    /// CIFAR-10-C holds out for validation: speckle noise, Gaussian blur, spatter, saturate].
    pub seen: Vec<String>,
    /// Families it is evaluated on and never trained on [default: every other registered
    /// family, the 15 of the CIFAR-10-C benchmark with the default `seen`].
    pub unseen: Vec<String>,
    /// Severities of the training and test corruptions [default 1–5].
    pub severities: Vec<u8>,
    /// Probability that a training image is corrupted by one seen family (the rest stay clean,
    /// so the calibrator also learns to leave clean images alone) [default 0.8, U].
    pub corrupt_prob: f32,
    /// Bound of the perturbation per pixel in [0, 1] units [default 0.2, U: the follow-up
    /// code's L∞ 0.4 on [−1, 1] images].
    pub eps: f32,
    /// Channels of the calibrator's hidden layers [default 16, U].
    pub width: usize,
    /// Residual blocks of the calibrator [default 2, U].
    pub blocks: usize,
    /// Passes over the training samples [default 3].
    pub epochs: usize,
    /// Images per optimiser step and per test batch [default 128].
    pub batch_size: usize,
    /// Adam's learning rate, cosine-annealed [default 0.001, U: the follow-up's 0.0001 is for
    /// 200 epochs].
    pub lr: f32,
    /// Training samples [default: all; `limit` class-stratified].
    pub selection: Selection,
    /// Test samples, class-stratified [default 1000].
    pub test_limit: Option<usize>,
    /// A quantized copy of the model (e.g. from `faultline quantize`) to calibrate too.
    pub quantized: Option<PathBuf>,
    /// Seed of every random choice (initial weights, shuffles, corruptions).
    pub seed: u64,
}

impl Default for CalibrateConfig {
    fn default() -> Self {
        CalibrateConfig {
            seen: Vec::new(),
            unseen: Vec::new(),
            severities: vec![1, 2, 3, 4, 5],
            corrupt_prob: 0.8,
            eps: 0.2,
            width: 16,
            blocks: 2,
            epochs: 3,
            batch_size: 128,
            lr: 0.001,
            selection: Selection::default(),
            test_limit: Some(1000),
            quantized: None,
            seed: 0,
        }
    }
}

impl CalibrateConfig {
    /// The seen and unseen families, resolved: defaults filled in, names checked, no family in
    /// both lists.
    pub fn families(&self) -> Result<(Vec<CorruptionKind>, Vec<CorruptionKind>)> {
        let seen = if self.seen.is_empty() {
            parse_kinds_for("--seen", "extra")?
        } else {
            parse_kinds_for("--seen", &self.seen.join(","))?
        };
        let unseen = if self.unseen.is_empty() {
            CorruptionKind::ALL
                .iter()
                .copied()
                .filter(|k| !seen.contains(k))
                .collect()
        } else {
            parse_kinds_for("--unseen", &self.unseen.join(","))?
        };
        if let Some(k) = unseen.iter().find(|k| seen.contains(k)) {
            return Err(setting(
                "--unseen",
                format!(
                    "{} is also a seen family; unseen ones must never be trained on",
                    k.name()
                ),
            ));
        }
        Ok((seen, unseen))
    }

    /// Checks the settings before anything runs.
    pub fn check(&self) -> Result<()> {
        check_batch_size(self.batch_size)?;
        self.families()?;
        if self.severities.is_empty() || self.severities.iter().any(|s| !(1..=5).contains(s)) {
            return Err(setting("--severities", "use severities 1 to 5"));
        }
        if !(0.0..=1.0).contains(&self.corrupt_prob) {
            return Err(setting("--corrupt-prob", "must lie in [0, 1]"));
        }
        if !(self.eps.is_finite() && self.eps > 0.0 && self.eps <= 1.0) {
            return Err(setting(
                "--eps",
                format!(
                    "{} is not a bound in (0, 1] on the [0, 1] pixel scale",
                    self.eps
                ),
            ));
        }
        if self.width == 0 {
            return Err(setting("--width", "must be at least 1"));
        }
        if self.epochs == 0 {
            return Err(setting("--epochs", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(setting("--lr", "must be a positive number"));
        }
        if self.test_limit == Some(0) {
            return Err(setting("--test-limit", "0 selects no test samples"));
        }
        Ok(())
    }
}

/// Accuracy without and with a calibrator.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Pair {
    /// The frozen model alone.
    pub without: f64,
    /// With the calibrator in front.
    pub with: f64,
}

impl Pair {
    /// `with − without`, in accuracy (0–1).
    pub fn gain(&self) -> f64 {
        self.with - self.without
    }
}

/// One corruption family: accuracy averaged over the severities, and per severity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FamilyResult {
    /// Registry name.
    pub family: String,
    /// Whether the calibrator trained on it.
    pub seen: bool,
    /// Mean over the severities.
    pub accuracy: Pair,
    /// Per severity, in the order of the settings.
    pub by_severity: Vec<Pair>,
}

/// A frozen model and its calibrator.
#[derive(Debug, Clone, Serialize)]
pub struct Calibrated {
    /// `float`, or `quantized`.
    pub name: String,
    /// The frozen model.
    pub model: PathBuf,
    /// The calibrator alone.
    pub calibrator: PathBuf,
    /// Calibrator then model, one graph.
    pub combined: PathBuf,
    /// Clean accuracy.
    pub clean: Pair,
    /// Mean over the unseen families.
    pub unseen_mean: Pair,
    /// Mean over the seen families.
    pub seen_mean: Pair,
    /// Every family, unseen ones first.
    pub families: Vec<FamilyResult>,
    /// Unseen families whose accuracy the calibrator raised by at least 2 points.
    pub improved_unseen: Vec<String>,
    /// The quantized model with the *float* model's calibrator in front (quantized only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub float_calibrator: Option<Transfer>,
    /// Mean training loss of the last epoch.
    pub final_train_loss: f64,
    /// Training images per second in the last epoch.
    pub images_per_second: f64,
}

/// Accuracies of a model with another model's calibrator in front.
#[derive(Debug, Clone, Serialize)]
pub struct Transfer {
    /// Clean accuracy.
    pub clean: f64,
    /// Mean over the unseen families.
    pub unseen_mean: f64,
}

/// The body of `calibrate`'s `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrateReport {
    /// Families trained on.
    pub seen: Vec<String>,
    /// Families evaluated only.
    pub unseen: Vec<String>,
    /// Severities.
    pub severities: Vec<u8>,
    /// Perturbation bound in [0, 1] pixel units.
    pub eps: f32,
    /// Learnable values of one calibrator.
    pub calibrator_params: usize,
    /// The float model, then the quantized one if given.
    pub models: Vec<Calibrated>,
    /// Test samples.
    pub test_samples: usize,
    /// The test data.
    pub test: DataCard,
    /// The model.
    pub model: ModelCard,
    /// The training data.
    pub data: DataCard,
    /// Worker threads.
    pub threads: usize,
    /// Wall-clock seconds of this invocation.
    pub seconds: f64,
}

/// Counts of one test batch for one model variant (a line of `samples.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchCounts {
    /// `float`, `float+calibrator`, `quantized`, `quantized+calibrator`,
    /// `quantized+float-calibrator`.
    pub variant: String,
    /// Position of the batch among the test batches.
    pub batch: usize,
    /// Samples in it.
    pub n: usize,
    /// Correct predictions per condition: clean, then each family × severity in report order.
    pub right: Vec<usize>,
}

/// The calibrator's shape and bounds for a model of `channels` channels whose input is
/// normalized by `norm` outside the graph: bounds are in the model's input units.
fn spec(
    cfg: &CalibrateConfig,
    channels: usize,
    norm: Option<&NormalizationCard>,
) -> CalibratorSpec {
    let at = |v: &[f32], c: usize, d: f32| {
        if v.is_empty() {
            d
        } else {
            v[c.min(v.len() - 1)]
        }
    };
    let (mut eps, mut lo, mut hi) = (Vec::new(), Vec::new(), Vec::new());
    for c in 0..channels {
        let (m, s) = norm.map_or((0.0, 1.0), |n| (at(&n.mean, c, 0.0), at(&n.std, c, 1.0)));
        eps.push(cfg.eps / s);
        lo.push((0.0 - m) / s);
        hi.push((1.0 - m) / s);
    }
    CalibratorSpec {
        channels,
        width: cfg.width,
        blocks: cfg.blocks,
        eps,
        lo,
        hi,
    }
}

/// PyTorch's default initialization of a convolution: weights and biases uniform in
/// ±1/√fan_in; the head (fan-in 0 in [`ParamSpec`]) zero. Seeded per tensor.
fn initial(seed: u64) -> impl FnMut(&ParamSpec) -> Vec<f32> {
    let mut i = 0u64;
    move |p: &ParamSpec| {
        i += 1;
        let n = p.shape.iter().product();
        if p.fan_in == 0 {
            return vec![0.0; n];
        }
        let bound = 1.0 / (p.fan_in as f32).sqrt();
        let mut r = Stream::new(seed, i, "calibrate:init");
        (0..n).map(|_| (2.0 * r.unit() - 1.0) * bound).collect()
    }
}

/// What [`train`] leaves: the training data back (with the caller's model), the combined model
/// written, the calibrator's trained tensors by name, and the final epoch's loss and speed.
struct Trained {
    loaded: Loaded,
    combined: PathBuf,
    weights: std::collections::HashMap<String, Vec<f32>>,
    loss: f64,
    speed: f64,
}

/// Trains a calibrator in front of the model at `frozen` into `out` (its `train/` holds the
/// training run); writes `combined.onnx` and `calibrator.onnx` there.
fn train(
    cfg: &CalibrateConfig,
    spec: &CalibratorSpec,
    seen: &[CorruptionKind],
    frozen: &Path,
    loaded: Loaded,
    out: &Output,
    progress: &dyn Progress,
) -> Result<Trained> {
    std::fs::create_dir_all(&out.dir).map_err(io(&out.dir))?;
    let init = out.file("init.onnx");
    let bytes = calibrator::prepend(spec, &mut initial(cfg.seed), frozen)?;
    std::fs::write(&init, bytes).map_err(io(&init))?;
    let info = loaded.data.info();
    let image = [info.channels, info.height, info.width];
    let norm = loaded
        .model
        .card
        .normalization
        .as_ref()
        .map(NormalizationCard::to_normalization);
    let model = load_model(&init, image, norm)?;
    let Loaded {
        data,
        data_path,
        options,
        notes,
        model: original,
        ..
    } = loaded;
    let combined = Loaded {
        model,
        data,
        model_path: init.clone(),
        data_path,
        options,
        notes,
    };
    let ft = FinetuneConfig {
        epochs: cfg.epochs,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        optimizer: OptimizerParams::adam(),
        schedule: Schedule::Cosine { min_factor: 0.0 },
        batch_norm: BatchNormChoice::Frozen,
        train_prefix: Some(PREFIX.into()),
        augment: seen
            .iter()
            .map(|k| Augment::Corruption {
                name: k.name().into(),
                severities: cfg.severities.clone(),
            })
            .collect(),
        corrupt_prob: cfg.corrupt_prob,
        selection: cfg.selection.clone(),
        seed: cfg.seed,
        ..FinetuneConfig::default()
    };
    let report = finetune::run(&ft, &combined, None, &out.sub("train"), progress)?;
    let last = report.epochs.last();
    let (loss, speed) = last.map_or((f64::NAN, 0.0), |e| (e.loss, e.images_per_second));
    let trained = report.model_out.clone();
    let done = out.file("combined.onnx");
    std::fs::copy(&trained, &done).map_err(io(&done))?;
    let weights = calibrator::float_initializers(&trained, PREFIX)?;
    let g = calibrator::standalone(spec, &mut |p: &ParamSpec| {
        weights.get(&p.name).cloned().unwrap_or_default()
    })
    .map_err(Error::Invalid)?;
    let gp = out.file("calibrator.onnx");
    std::fs::write(&gp, g).map_err(io(&gp))?;
    Ok(Trained {
        loaded: Loaded {
            model: original,
            ..combined
        },
        combined: done,
        weights,
        loss,
        speed,
    })
}

/// Evaluates `variants` (name and model) on the test batches, resuming from `done` records;
/// returns the right-counts per variant and condition.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    variants: &[(&str, &LoadedModel)],
    test: &Validation,
    indices: &[usize],
    conds: &[Option<(CorruptionKind, u8)>],
    plan: &CorruptionPlan,
    batch_size: usize,
    rd: &mut RunDir,
    records: &mut Vec<BatchCounts>,
    progress: &dyn Progress,
) -> Result<Vec<Vec<usize>>> {
    let batches = indices.len().div_ceil(batch_size);
    let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
    let done = |b: usize| {
        names.iter().all(|n| {
            records
                .iter()
                .any(|r| r.variant == *n && r.batch == b && r.right.len() == conds.len())
        })
    };
    let first = (0..batches).find(|&b| !done(b)).unwrap_or(batches);
    progress.start(
        &format!("testing {}", names.join(", ")),
        indices.len(),
        (first * batch_size).min(indices.len()),
    );
    let k = variants.first().map_or(0, |(_, m)| m.card.num_classes);
    let source = test.card.path.display().to_string();
    let start = first * batch_size;
    for (i, batch) in
        read_batches(test.data, &indices[start.min(indices.len())..], batch_size)?.enumerate()
    {
        let b = first + i;
        let batch = batch?;
        check_batch(&batch, k, &source)?;
        let mut right = vec![vec![0usize; conds.len()]; variants.len()];
        for (ci, c) in conds.iter().enumerate() {
            let images = match c {
                Some((kind, sev)) => plan.corrupt(&batch, *kind, *sev)?,
                None => batch.images.clone(),
            };
            for (vi, (_, m)) in variants.iter().enumerate() {
                let preds = m.model.logits(&images)?;
                right[vi][ci] = preds
                    .chunks(m.card.num_classes)
                    .zip(&batch.labels)
                    .filter(|(z, &y)| argmax(z) == y)
                    .count();
            }
        }
        let recs: Vec<BatchCounts> = variants
            .iter()
            .zip(right)
            .map(|((name, _), right)| BatchCounts {
                variant: name.to_string(),
                batch: b,
                n: batch.len(),
                right,
            })
            .collect();
        rd.append(&recs)?;
        records.extend(recs);
        progress.advance(((b + 1) * batch_size).min(indices.len()));
    }
    progress.finish();
    Ok(names
        .iter()
        .map(|n| {
            let mut acc = vec![0usize; conds.len()];
            for r in records.iter().filter(|r| r.variant == *n) {
                acc.iter_mut().zip(&r.right).for_each(|(a, x)| *a += x);
            }
            acc
        })
        .collect())
}

/// Per-condition accuracies of a variant (counts over `n`) into the report's figures.
fn summarize(
    without: &[usize],
    with: &[usize],
    n: usize,
    families: &[(CorruptionKind, bool)],
    severities: &[u8],
) -> (Pair, Vec<FamilyResult>) {
    let acc = |c: &[usize], i: usize| c[i] as f64 / n.max(1) as f64;
    let clean = Pair {
        without: acc(without, 0),
        with: acc(with, 0),
    };
    let s = severities.len();
    let fams = families
        .iter()
        .enumerate()
        .map(|(fi, &(k, seen))| {
            let by: Vec<Pair> = (0..s)
                .map(|si| {
                    let i = 1 + fi * s + si;
                    Pair {
                        without: acc(without, i),
                        with: acc(with, i),
                    }
                })
                .collect();
            FamilyResult {
                family: k.name().into(),
                seen,
                accuracy: mean(&by),
                by_severity: by,
            }
        })
        .collect();
    (clean, fams)
}

fn mean(pairs: &[Pair]) -> Pair {
    let n = pairs.len().max(1) as f64;
    Pair {
        without: pairs.iter().map(|p| p.without).sum::<f64>() / n,
        with: pairs.iter().map(|p| p.with).sum::<f64>() / n,
    }
}

/// Runs `calibrate`: `loaded` holds the model and the training data, `test` the test data.
pub fn run(
    cfg: &CalibrateConfig,
    loaded: Loaded,
    test: &Validation,
    out: &Output,
    progress: &dyn Progress,
) -> Result<CalibrateReport> {
    cfg.check()?;
    crate::run::refuse_shard(&cfg.selection, "calibrate")?;
    let t0 = Instant::now();
    let (seen, unseen) = cfg.families()?;
    let info = loaded.data.info().clone();
    let image = [info.channels, info.height, info.width];
    let tinfo = test.data.info();
    if [tinfo.channels, tinfo.height, tinfo.width] != image {
        return Err(Error::Invalid(format!(
            "{}: test images are {}x{}x{}, training images {}x{}x{}",
            test.card.path.display(),
            tinfo.channels,
            tinfo.height,
            tinfo.width,
            image[0],
            image[1],
            image[2]
        )));
    }
    let k = loaded.model.card.num_classes;
    let norm_card = loaded.model.card.normalization.clone();
    let norm = norm_card.as_ref().map(NormalizationCard::to_normalization);
    let quantized = cfg
        .quantized
        .as_ref()
        .map(|p| load_model(p, image, norm.clone()))
        .transpose()?;
    if let Some(q) = &quantized {
        if q.card.num_classes != k {
            return Err(Error::Invalid(format!(
                "{}: {} outputs, the model {k}",
                q.card.path.display(),
                q.card.num_classes
            )));
        }
    }
    let indices = select(test.data, cfg.test_limit, Subset::Stratified, cfg.seed)?;
    let base = loaded.select(&cfg.selection)?;
    let mut settings = loaded.settings(&cfg.selection, &base)?;
    settings["calibrate"] = serde_json::to_value(cfg).unwrap_or_default();
    settings["test"] = json!(test.card.path);
    settings["quantized_sha256"] = json!(quantized.as_ref().map(|q| q.card.sha256.clone()));
    let (mut rd, mut records): (RunDir, Vec<BatchCounts>) =
        RunDir::open(&out.dir, "calibrate", settings, out.mode())?;
    if let Some(line) = rd.replaced() {
        progress.note(line);
    }
    let families: Vec<(CorruptionKind, bool)> = unseen
        .iter()
        .map(|&k| (k, false))
        .chain(seen.iter().map(|&k| (k, true)))
        .collect();
    let plan = CorruptionPlan {
        kinds: families.iter().map(|(k, _)| *k).collect(),
        severities: cfg.severities.clone(),
        table: ParamTable::for_size(info.height, info.width),
        seed: cfg.seed,
    };
    // Clean, then each family × severity in the plan's (the report's) order.
    let conds: Vec<Option<(CorruptionKind, u8)>> = std::iter::once(None)
        .chain(plan.conditions().into_iter().map(Some))
        .collect();
    let g = spec(cfg, info.channels, norm_card.as_ref());
    let calibrator_params: usize = g
        .params()
        .iter()
        .map(|p| p.shape.iter().product::<usize>())
        .sum();
    let model_path = loaded.model_path.clone();
    let model_card = loaded.model.card.clone();
    let data_card = loaded.data_card();

    progress.note(&format!(
        "training a calibrator ({calibrator_params} values, ε = {}) in front of {} on {} seen families",
        cfg.eps,
        model_path.display(),
        seen.len()
    ));
    let float = train(cfg, &g, &seen, &model_path, loaded, out, progress)?;
    let (loaded, combined_path) = (float.loaded, float.combined);
    let combined = load_model(&combined_path, image, norm.clone())?;
    let counts = evaluate(
        &[("float", &loaded.model), ("float+calibrator", &combined)],
        test,
        &indices,
        &conds,
        &plan,
        cfg.batch_size,
        &mut rd,
        &mut records,
        progress,
    )?;
    let n = indices.len();
    let improved = |fams: &[FamilyResult]| {
        fams.iter()
            .filter(|f| !f.seen && f.accuracy.gain() >= 0.02)
            .map(|f| f.family.clone())
            .collect::<Vec<_>>()
    };
    let means = |fams: &[FamilyResult], seen: bool| {
        mean(
            &fams
                .iter()
                .filter(|f| f.seen == seen)
                .map(|f| f.accuracy)
                .collect::<Vec<_>>(),
        )
    };
    let (clean, fams) = summarize(&counts[0], &counts[1], n, &families, &cfg.severities);
    let mut models = vec![Calibrated {
        name: "float".into(),
        model: model_path.clone(),
        calibrator: out.file("calibrator.onnx"),
        combined: combined_path,
        clean,
        unseen_mean: means(&fams, false),
        seen_mean: means(&fams, true),
        improved_unseen: improved(&fams),
        families: fams,
        float_calibrator: None,
        final_train_loss: float.loss,
        images_per_second: float.speed,
    }];

    if let (Some(qpath), Some(q)) = (&cfg.quantized, &quantized) {
        let qout = out.sub("quantized");
        progress.note(&format!(
            "training a calibrator in front of the quantized {}",
            qpath.display()
        ));
        let qt = train(cfg, &g, &seen, qpath, loaded, &qout, progress)?;
        let qcombined = load_model(&qt.combined, image, norm.clone())?;
        // The float model's calibrator in front of the quantized model.
        let transfer_path = qout.file("with-float-calibrator.onnx");
        let bytes = calibrator::prepend(
            &g,
            &mut |p: &ParamSpec| float.weights.get(&p.name).cloned().unwrap_or_default(),
            qpath,
        )?;
        std::fs::write(&transfer_path, bytes).map_err(io(&transfer_path))?;
        let transfer = load_model(&transfer_path, image, norm.clone())?;
        let counts = evaluate(
            &[
                ("quantized", q),
                ("quantized+calibrator", &qcombined),
                ("quantized+float-calibrator", &transfer),
            ],
            test,
            &indices,
            &conds,
            &plan,
            cfg.batch_size,
            &mut rd,
            &mut records,
            progress,
        )?;
        let (clean, fams) = summarize(&counts[0], &counts[1], n, &families, &cfg.severities);
        let (tclean, tfams) = summarize(&counts[0], &counts[2], n, &families, &cfg.severities);
        models.push(Calibrated {
            name: "quantized".into(),
            model: qpath.clone(),
            calibrator: qout.file("calibrator.onnx"),
            combined: qt.combined,
            clean,
            unseen_mean: means(&fams, false),
            seen_mean: means(&fams, true),
            improved_unseen: improved(&fams),
            families: fams,
            float_calibrator: Some(Transfer {
                clean: tclean.with,
                unseen_mean: means(&tfams, false).with,
            }),
            final_train_loss: qt.loss,
            images_per_second: qt.speed,
        });
    }
    let report = CalibrateReport {
        seen: seen.iter().map(|k| k.name().to_string()).collect(),
        unseen: unseen.iter().map(|k| k.name().to_string()).collect(),
        severities: cfg.severities.clone(),
        eps: cfg.eps,
        calibrator_params,
        models,
        test_samples: n,
        test: test.card.clone(),
        model: model_card,
        data: data_card,
        threads: threads(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    rd.finish(&report)?;
    Ok(report)
}
