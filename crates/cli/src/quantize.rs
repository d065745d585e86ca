//! `faultline quantize`: post-training static quantization into an ONNX QDQ model, with float
//! and quantized accuracy.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use faultline::run::quantize::{self, Calibration, QuantizeConfig, QuantizeReport};
use faultline::subset::{Selection, Subset};

use crate::common::{load, Bar, DataArgs, ModelArgs, OutArgs};

/// Arguments of `faultline quantize`.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Test data for the float and quantized accuracy (--data; --limit etc. pick its samples)
    /// [default: the calibration samples]
    #[command(flatten)]
    pub data: DataArgs,
    /// Calibration data (same formats as --data)
    #[arg(long, value_name = "PATH")]
    pub calibration: PathBuf,
    /// Calibration samples, class-stratified
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub calibration_limit: usize,
    /// Bits of weights and activations: 8, or 4 (fake quantization: the 4-bit grid stored as
    /// int8 QDQ)
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(4..=8))]
    pub bits: u8,
    /// One weight scale per output channel [default: one per tensor]
    #[arg(long)]
    pub per_channel: bool,
    /// Activation ranges: minmax or percentile
    #[arg(long, default_value = "minmax", value_parser = ["minmax", "percentile"])]
    pub activations: String,
    /// With --activations percentile: the percentile kept
    #[arg(long, default_value_t = 99.99, value_name = "P")]
    pub percentile: f64,
    /// Images per forward pass
    #[arg(long, default_value_t = 128, value_name = "B")]
    pub batch_size: usize,
    #[command(flatten)]
    pub out: OutArgs,
}

pub fn run(a: &QuantizeArgs) -> Result<()> {
    let cal_data = DataArgs {
        data: Some(a.calibration.clone()),
        limit: None,
        indices: None,
        ..a.data.clone()
    };
    let mut model = a.model.clone();
    if model.model.is_none() {
        model.model = Some(crate::common::demo_model());
    }
    let calibration = load(&model, &cal_data)
        .with_context(|| format!("opening --calibration {}", a.calibration.display()))?;
    let test = match &a.data.data {
        Some(_) => Some(load(&model, &a.data)?),
        None => None,
    };
    let cfg = QuantizeConfig {
        bits: a.bits,
        per_channel: a.per_channel,
        activations: match a.activations.as_str() {
            "percentile" => Calibration::Percentile(a.percentile),
            _ => Calibration::MinMax,
        },
        calibration: Selection {
            limit: Some(a.calibration_limit),
            subset: Subset::Stratified,
            ..Selection::default()
        },
        test: a.data.selection(0)?,
        batch_size: a.batch_size,
    };
    let out = a.out.output("quantize");
    std::fs::create_dir_all(&out.dir).with_context(|| format!("creating {}", out.dir.display()))?;
    let report = quantize::run(&cfg, &calibration, test.as_ref(), &out, &Bar::new())?;
    print_summary(&report, &out.dir).context("writing to stdout")
}

fn print_summary(r: &QuantizeReport, out: &std::path::Path) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "{}-bit {} quantization: {} weights, {} activations ({} calibration samples)",
        r.bits,
        if r.per_channel {
            "per-channel"
        } else {
            "per-tensor"
        },
        r.weights_quantized,
        r.activations_quantized,
        r.calibration_samples
    )?;
    writeln!(o, "float accuracy      {:6.2} %", 100.0 * r.float_accuracy)?;
    writeln!(
        o,
        "quantized accuracy  {:6.2} %  ({:+.2} points; same prediction on {:.2} % of {} samples)",
        100.0 * r.quantized_accuracy,
        100.0 * r.accuracy_change,
        100.0 * r.agreement,
        r.test_samples
    )?;
    writeln!(
        o,
        "\nwrote {}/model.onnx and {}/run.json",
        out.display(),
        out.display()
    )?;
    Ok(())
}
