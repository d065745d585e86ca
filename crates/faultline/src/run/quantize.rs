//! `quantize`: post-training static quantization of a float model into an ONNX QDQ model
//! (`DIR/model.onnx`, [`faultline_onnx::qdq`]), loadable by ONNX Runtime and faultline, with the
//! float and quantized accuracy (and their agreement) in `run.json`.
//!
//! Weights of every Conv, Gemm and MatMul: symmetric int8 (zero point 0), per tensor or per
//! output channel (`--per-channel`), `scale = max|w| / 127` (4 bits: `/ 7`, fake quantization
//! on the 4-bit grid stored as int8). The activation each of them reads: asymmetric int8 from a
//! range calibrated on `--calibration` data: `minmax` (the range seen) or `percentile` (the
//! `percentile`-th and `(100 − percentile)`-th percentiles, from a 2048-bin histogram over the
//! range seen; default 99.99 [U], ORT's calibrator uses 99.999 of |x|), widened to contain 0.
//! Everything else stays float, as in ONNX Runtime's `quantize_static` QDQ output.
//!
//! `samples.jsonl` holds one record per test sample (condition `quantized`): the quantized
//! model's prediction and margin, the float model's prediction as `clean_prediction`. An
//! interrupted run resumes: calibration (deterministic) and the model are redone, the samples
//! already recorded are kept.

use std::time::Instant;

use faultline_onnx::qdq::{activation_quant, targets, write_qdq, QdqPlan};
use serde::Serialize;

use crate::error::{setting, Error, Result};
use crate::model::{load_model, ModelCard};
use crate::record::{Condition, SampleRecord};
use crate::run::{check_batch_size, open_records, DataCard, Loaded, Output, Progress};
use crate::rundir::RunDir;
use crate::subset::{read_batches, Selection};

/// How activation ranges are calibrated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Calibration {
    /// The smallest and largest value seen.
    MinMax,
    /// The given percentile of the values seen (and its mirror for the low end).
    Percentile(f64),
}

/// Settings of `quantize`.
#[derive(Debug, Clone, Serialize)]
pub struct QuantizeConfig {
    /// 8 or 4.
    pub bits: u8,
    /// One weight scale per output channel.
    pub per_channel: bool,
    /// Activation calibration [default: minmax].
    pub activations: Calibration,
    /// Calibration samples (of the calibration data) [default: 500, stratified].
    pub calibration: Selection,
    /// Test samples (accuracy) [default: all].
    pub test: Selection,
    /// Images per forward pass.
    pub batch_size: usize,
}

impl Default for QuantizeConfig {
    fn default() -> Self {
        QuantizeConfig {
            bits: 8,
            per_channel: false,
            activations: Calibration::MinMax,
            calibration: Selection {
                limit: Some(500),
                ..Selection::default()
            },
            test: Selection::default(),
            batch_size: 128,
        }
    }
}

/// One calibrated activation.
#[derive(Debug, Clone, Serialize)]
pub struct ActivationRange {
    /// Tensor name.
    pub name: String,
    /// Calibrated range.
    pub range: [f32; 2],
    /// Scale.
    pub scale: f32,
    /// int8 zero point.
    pub zero_point: i8,
}

/// The body of `quantize`'s `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct QuantizeReport {
    /// Bits of weights and activations.
    pub bits: u8,
    /// Per-channel weight scales.
    pub per_channel: bool,
    /// Calibration method.
    pub activations: Calibration,
    /// The quantized model written.
    pub model_out: std::path::PathBuf,
    /// Weights quantized.
    pub weights_quantized: usize,
    /// Activations quantized.
    pub activations_quantized: usize,
    /// Calibration samples used.
    pub calibration_samples: usize,
    /// Accuracy of the float model on the test samples.
    pub float_accuracy: f64,
    /// Accuracy of the quantized model on them.
    pub quantized_accuracy: f64,
    /// `quantized_accuracy − float_accuracy`.
    pub accuracy_change: f64,
    /// Share of test samples on which both predict the same class.
    pub agreement: f64,
    /// Test samples.
    pub test_samples: usize,
    /// The calibrated activations.
    pub ranges: Vec<ActivationRange>,
    /// The float model.
    pub model: ModelCard,
    /// The calibration data.
    pub calibration_data: DataCard,
    /// The test data.
    pub test_data: DataCard,
    /// Seconds.
    pub seconds: f64,
}

/// Runs `quantize`: calibrates on `calibration` (the float model bound to the calibration
/// data), writes `DIR/model.onnx` and measures both models on `test` (its data; None: the
/// calibration samples).
pub fn run(
    cfg: &QuantizeConfig,
    calibration: &Loaded,
    test: Option<&Loaded>,
    out: &Output,
    progress: &dyn Progress,
) -> Result<QuantizeReport> {
    check_batch_size(cfg.batch_size)?;
    if cfg.bits != 8 && cfg.bits != 4 {
        return Err(setting("--bits", format!("{}: use 8 or 4", cfg.bits)));
    }
    if let Calibration::Percentile(p) = cfg.activations {
        if !(50.0..=100.0).contains(&p) {
            return Err(setting(
                "--percentile",
                format!("{p}: use a value in [50, 100]"),
            ));
        }
    }
    let t0 = Instant::now();
    let src = &calibration.model_path;
    let tgs = targets(src)?;
    if tgs.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no Conv, Gemm or MatMul with float weights to quantize",
            src.display()
        )));
    }
    crate::run::refuse_shard(&cfg.calibration, "quantize")?;
    crate::run::refuse_shard(&cfg.test, "quantize")?;
    let cal_idx = calibration.select(&cfg.calibration)?;
    let mut settings = calibration.settings(&cfg.calibration, &cal_idx)?;
    settings["quantize"] = serde_json::to_value(cfg).unwrap_or_default();
    settings["test"] = serde_json::json!(test.map(|t| t.data_path.clone()));
    // The test samples (or the calibration ones), one record each.
    let eval_on = test.unwrap_or(calibration);
    let idx = match test {
        Some(t) => t.select(&cfg.test)?,
        None => cal_idx.clone(),
    };
    let (mut rd, mut records, start) = open_records(out, "quantize", settings, 1, &idx, progress)?;
    let mut names: Vec<String> = tgs.iter().map(|t| t.activation.clone()).collect();
    names.sort();
    names.dedup();
    let ranges = calibrate(calibration, &cal_idx, &names, cfg, progress)?;
    let acts: Vec<_> = names
        .iter()
        .zip(&ranges)
        .map(|(n, r)| activation_quant(n, r[0], r[1], cfg.bits))
        .collect();
    let plan = QdqPlan {
        targets: tgs,
        weight_bits: cfg.bits,
        per_channel: cfg.per_channel,
        activations: acts.clone(),
    };
    let model_out = out.file("model.onnx");
    let (nw, na) = write_qdq(src, &plan, &model_out)?;
    progress.note(&format!(
        "wrote {} ({nw} weights, {na} activations quantized to {} bits)",
        model_out.display(),
        cfg.bits
    ));
    // Measure both models on the test samples (or the calibration ones).
    let info = eval_on.data.info();
    let image = [info.channels, info.height, info.width];
    let norm = eval_on
        .model
        .card
        .normalization
        .as_ref()
        .map(|n| n.to_normalization());
    let quantized = load_model(&model_out, image, norm)?;
    let condition = Condition::Quantized {
        bits: cfg.bits,
        per_channel: cfg.per_channel,
    };
    compare(
        eval_on,
        (&idx, start),
        &quantized.model,
        (cfg.batch_size, &condition),
        (&mut rd, &mut records),
        progress,
    )?;
    let n = records.len().max(1) as f64;
    let share =
        |f: &dyn Fn(&SampleRecord) -> bool| records.iter().filter(|r| f(r)).count() as f64 / n;
    let float_acc = share(&|r| r.clean_prediction == Some(r.label));
    let q_acc = share(&|r| r.correct());
    let agree = share(&|r| r.clean_prediction == Some(r.prediction));
    let report = QuantizeReport {
        bits: cfg.bits,
        per_channel: cfg.per_channel,
        activations: cfg.activations,
        model_out,
        weights_quantized: nw,
        activations_quantized: na,
        calibration_samples: cal_idx.len(),
        float_accuracy: float_acc,
        quantized_accuracy: q_acc,
        accuracy_change: q_acc - float_acc,
        agreement: agree,
        test_samples: idx.len(),
        ranges: acts
            .iter()
            .zip(&ranges)
            .map(|(a, r)| ActivationRange {
                name: a.name.clone(),
                range: *r,
                scale: a.scale,
                zero_point: a.zero_point,
            })
            .collect(),
        model: calibration.model.card.clone(),
        calibration_data: calibration.data_card(),
        test_data: eval_on.data_card(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    rd.finish(&report)?;
    Ok(report)
}

/// The calibrated range of each activation in `names`.
fn calibrate(
    loaded: &Loaded,
    idx: &[usize],
    names: &[String],
    cfg: &QuantizeConfig,
    progress: &dyn Progress,
) -> Result<Vec<[f32; 2]>> {
    let model = &loaded.model.model;
    let taps: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut mm = vec![[f32::INFINITY, f32::NEG_INFINITY]; names.len()];
    progress.start("calibrate", idx.len(), 0);
    let mut seen = 0;
    for b in read_batches(loaded.data.as_ref(), idx, cfg.batch_size)? {
        let b = b?;
        let (_, ts) = model.features(&b.images, &taps)?;
        for (r, t) in mm.iter_mut().zip(ts) {
            for &v in t.as_f32()? {
                r[0] = r[0].min(v);
                r[1] = r[1].max(v);
            }
        }
        seen += b.len();
        progress.advance(seen);
    }
    progress.finish();
    let Calibration::Percentile(p) = cfg.activations else {
        return Ok(mm);
    };
    const BINS: usize = 2048;
    let mut hist = vec![vec![0u64; BINS]; names.len()];
    for b in read_batches(loaded.data.as_ref(), idx, cfg.batch_size)? {
        let b = b?;
        let (_, ts) = model.features(&b.images, &taps)?;
        for ((h, r), t) in hist.iter_mut().zip(&mm).zip(ts) {
            let w = (r[1] - r[0]).max(f32::MIN_POSITIVE);
            for &v in t.as_f32()? {
                let i = (((v - r[0]) / w) * BINS as f32) as usize;
                h[i.min(BINS - 1)] += 1;
            }
        }
    }
    Ok(hist
        .iter()
        .zip(&mm)
        .map(|(h, r)| {
            let total: u64 = h.iter().sum();
            let at = |q: f64| {
                let want = (q / 100.0 * total as f64).ceil() as u64;
                let mut acc = 0;
                for (i, &c) in h.iter().enumerate() {
                    acc += c;
                    if acc >= want.max(1) {
                        return r[0] + (r[1] - r[0]) * (i + 1) as f32 / BINS as f32;
                    }
                }
                r[1]
            };
            [at(100.0 - p).min(r[1]).max(r[0]), at(p).min(r[1])]
        })
        .collect())
}

/// Predicts samples `idx[start..]` of `loaded`'s data with its float model and the quantized
/// `b`, appending one record each (`condition`: b's prediction and margin, the float model's
/// prediction as `clean_prediction`) to the run directory and to `records`.
fn compare(
    loaded: &Loaded,
    (idx, start): (&[usize], usize),
    b: &faultline_engine::Model,
    (batch_size, condition): (usize, &Condition),
    (rd, records): (&mut RunDir, &mut Vec<SampleRecord>),
    progress: &dyn Progress,
) -> Result<()> {
    let a = &loaded.model.model;
    let k = a.num_classes();
    let source = loaded.data_path.display().to_string();
    progress.start("evaluate", idx.len(), start);
    for batch in read_batches(loaded.data.as_ref(), &idx[start..], batch_size)? {
        let batch = batch?;
        crate::eval::check_batch(&batch, k, &source)?;
        let (za, zb) = (a.logits(&batch.images)?, b.logits(&batch.images)?);
        let recs: Vec<SampleRecord> = batch
            .labels
            .iter()
            .enumerate()
            .map(|(i, &y)| {
                let (ra, rb) = (&za[i * k..(i + 1) * k], &zb[i * k..(i + 1) * k]);
                SampleRecord {
                    index: batch.indices[i],
                    label: y,
                    condition: condition.clone(),
                    prediction: faultline_attacks::attack::argmax(rb),
                    logit_margin: rb[y] - rb[faultline_engine::runner_up(rb, y)],
                    clean_prediction: Some(faultline_attacks::attack::argmax(ra)),
                    attack: None,
                    margin: None,
                    flag: None,
                }
            })
            .collect();
        rd.append(&recs)?;
        records.extend(recs);
        progress.advance(records.len());
    }
    progress.finish();
    Ok(())
}
