//! `faultline calibrate`: a calibrator trained in front of a frozen (optionally quantized) model;
//! accuracy without and with it on corruption families it never trained on.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use faultline::corruption::parse_severities;
use faultline::eps::parse_fraction;
use faultline::run::calibrate::{self, CalibrateConfig, CalibrateReport};
use faultline::run::finetune::Validation;
use faultline::run::DataCard;

use crate::common::{load, Bar, DataArgs, ModelArgs, OutArgs};

/// Arguments of `faultline calibrate`.
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Training data (`--split train` for CIFAR/MNIST folders)
    #[command(flatten)]
    pub data: DataArgs,
    /// Test data (the format options of --data; the test split of a folder holding both)
    #[arg(long, value_name = "PATH")]
    pub test: PathBuf,
    /// Test samples, class-stratified
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub test_limit: usize,
    /// Corruption families to train on: a list such as fog,snow, or standard, extra
    /// [default: extra — speckle_noise, gaussian_blur, spatter, saturate, the four CIFAR-10-C
    /// holds out for validation]
    #[arg(long, value_name = "LIST")]
    pub seen: Option<String>,
    /// Families to test on, never trained on [default: every family not in --seen]
    #[arg(long, value_name = "LIST")]
    pub unseen: Option<String>,
    /// Severities of training and test corruptions: a range such as 1-5 or a list such as 1,3,5
    #[arg(long, default_value = "1-5", value_name = "S")]
    pub severities: String,
    /// Probability that a training image is corrupted by a seen family
    #[arg(long, default_value_t = 0.8, value_name = "P")]
    pub corrupt_prob: f32,
    /// Bound of the calibrator's perturbation on the [0, 1] pixel scale, e.g. 0.2 or 51/255
    #[arg(long, default_value = "0.2", value_name = "EPS")]
    pub eps: String,
    /// Channels of the calibrator's hidden layers
    #[arg(long, default_value_t = 16, value_name = "C")]
    pub width: usize,
    /// Residual blocks of the calibrator
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub blocks: usize,
    /// Passes over the training samples
    #[arg(long, default_value_t = 3, value_name = "E")]
    pub epochs: usize,
    /// Images per optimiser step and per test batch
    #[arg(long, default_value_t = 128, value_name = "B")]
    pub batch_size: usize,
    /// Adam's learning rate (cosine-annealed)
    #[arg(long, default_value_t = 0.001, value_name = "LR")]
    pub lr: f32,
    /// A quantized copy of the model (e.g. from `faultline quantize`): a second calibrator is
    /// trained in front of it
    #[arg(long, value_name = "ONNX")]
    pub quantized: Option<PathBuf>,
    /// Seed of every random choice
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    #[command(flatten)]
    pub out: OutArgs,
}

fn list(spec: &Option<String>) -> Vec<String> {
    spec.iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn run(a: &CalibrateArgs) -> Result<()> {
    let cfg = CalibrateConfig {
        seen: list(&a.seen),
        unseen: list(&a.unseen),
        severities: parse_severities(&a.severities)?,
        corrupt_prob: a.corrupt_prob,
        eps: parse_fraction("--eps", &a.eps)?,
        width: a.width,
        blocks: a.blocks,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        selection: a.data.selection(a.seed)?,
        test_limit: Some(a.test_limit),
        quantized: a.quantized.clone(),
        seed: a.seed,
    };
    cfg.check()?;
    let loaded = load(&a.model, &a.data)?;
    let test_data = faultline::data::open(&a.test, &a.data.held_out_options())
        .with_context(|| format!("opening --test {}", a.test.display()))?;
    if test_data.info().source == loaded.data.info().source {
        eprintln!(
            "note: --test is the training data ({}): the figures are not held out",
            a.test.display()
        );
    }
    let test = Validation {
        data: test_data.as_ref(),
        card: DataCard::of(test_data.as_ref(), &a.test),
    };
    let out = a.out.output("calibrate");
    let model = loaded.model_path.clone();
    let report = calibrate::run(&cfg, loaded, &test, &out, &Bar::new())
        .with_context(|| format!("calibrating {}", model.display()))?;
    print(&report, &out.dir).context("writing to stdout")
}

fn print(r: &CalibrateReport, dir: &std::path::Path) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    let pct = |v: f64| format!("{:.2}", 100.0 * v);
    writeln!(
        o,
        "calibrator: {} values, ε = {}; trained on {}; {} test images, severities {:?}",
        r.calibrator_params,
        r.eps,
        r.seen.join(", "),
        r.test_samples,
        r.severities
    )?;
    for m in &r.models {
        writeln!(o, "\n{} model ({})", m.name, m.model.display())?;
        writeln!(
            o,
            "{:<22} {:>9} {:>9} {:>8}",
            "condition", "without", "with", "gain"
        )?;
        let row = |o: &mut std::io::StdoutLock, name: &str, p: calibrate::Pair| {
            writeln!(
                o,
                "{:<22} {:>8}% {:>8}% {:>+8.2}",
                name,
                pct(p.without),
                pct(p.with),
                100.0 * p.gain()
            )
        };
        row(&mut o, "clean", m.clean)?;
        for f in &m.families {
            let tag = if f.seen { " (seen)" } else { "" };
            row(&mut o, &format!("{}{tag}", f.family), f.accuracy)?;
        }
        row(&mut o, "unseen mean", m.unseen_mean)?;
        row(&mut o, "seen mean", m.seen_mean)?;
        if let Some(t) = &m.float_calibrator {
            writeln!(
                o,
                "with the float model's calibrator: clean {}%, unseen mean {}%",
                pct(t.clean),
                pct(t.unseen_mean)
            )?;
        }
        writeln!(
            o,
            "unseen families raised by ≥ 2 points: {}",
            if m.improved_unseen.is_empty() {
                "none".to_string()
            } else {
                m.improved_unseen.join(", ")
            }
        )?;
        writeln!(
            o,
            "wrote {} and {}",
            m.calibrator.display(),
            m.combined.display()
        )?;
    }
    writeln!(o, "\nwrote {}/run.json", dir.display())?;
    Ok(())
}
