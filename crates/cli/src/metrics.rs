//! `faultline metrics`: the comprehensive metric suite (Guo et al., methods.md §3.4) of a model —
//! behaviour under a white-box and a black-box attack, imperceptibility, neuron coverage,
//! corruption and perturbation-sequence robustness, boundary distances and neuron statistics —
//! optionally against its defended version and a baseline; and `faultline compare` of such runs.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use faultline::attacks::registry::Settings;
use faultline::corruption::{parse_kinds, parse_severities};
use faultline::eps::parse_eps;
use faultline::metrics::boundary::BoundaryParams;
use faultline::metrics::flip::FlipParams;
use faultline::metrics::{Better, Suite, SUITE};
use faultline::run::compare::{self, CompareReport};
use faultline::run::metrics::{self, MetricsConfig, MetricsReport};
use serde_json::Value;

use crate::common::{load, Bar, DataArgs, ModelArgs, OutArgs};

/// Arguments of `faultline metrics`.
#[derive(Args, Debug)]
pub struct MetricsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Read the white-box adversarial images of an earlier `attack --save-adv` run (its first ε
    /// and its samples) instead of attacking here
    #[arg(long, value_name = "ATTACK_RUN_DIR", conflicts_with_all = ["eps", "steps"])]
    pub from: Option<PathBuf>,
    /// White-box attack (bounded): pgd, apgd-ce, fgsm, mifgsm, …
    #[arg(short, long, default_value = "pgd", value_parser = crate::attack::attack_names())]
    pub attack: String,
    /// Radius on the [0, 1] scale, e.g. 8/255 [default: 0.3 for MNIST-sized images, 8/255 for
    /// CIFAR-sized, 4/255 larger (L∞)]
    #[arg(long, value_name = "EPS")]
    pub eps: Option<String>,
    /// Iterations of the white-box attack [default: the attack's; pgd 20]
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Black-box attack for aab
    #[arg(long, default_value = "square", value_name = "A", value_parser = crate::attack::attack_names())]
    pub black_box: String,
    /// Queries per sample of the black-box attack (Square's own default is 5000)
    #[arg(long, default_value_t = 1000, value_name = "Q")]
    pub black_box_queries: usize,
    /// The defended version of the model: adds cav, crr, csr, ccv and cos
    #[arg(long, value_name = "ONNX")]
    pub defended: Option<PathBuf>,
    /// Baseline for mce, relative_mce and mfr: an ONNX model (evaluated on the same samples) or
    /// a run directory (`eval --corruptions` for mce, `metrics` for both)
    #[arg(long, value_name = "ONNX|DIR")]
    pub baseline: Option<PathBuf>,
    /// Metrics to compute: all, paper (the paper's list as reconstructed in methods.md §3.3, not
    /// verified against its table), or a comma-separated list of keys and modules (behaviour,
    /// imperceptibility, coverage, corruption, flip, boundary, neuron, defended); work only the
    /// others need is skipped and their keys are null
    #[arg(long, default_value = "all", value_name = "all|paper|LIST")]
    pub suite: String,
    /// Layers for coverage and neuron metrics: auto (every Conv and Gemm/MatMul output) or a
    /// comma-separated list of activation (value) names of the ONNX graph
    #[arg(long, default_value = "auto", value_name = "auto|NAMES")]
    pub layers: String,
    /// Corruption families of mce: standard (the 15 of CIFAR-10-C), all, or names
    #[arg(long, default_value = "standard", value_name = "C")]
    pub corruptions: String,
    /// Corruption severities, e.g. 1-5 or 1,3,5
    #[arg(long, default_value = "1-5", value_name = "S")]
    pub severities: String,
    /// Frames per perturbation sequence of mfr (CIFAR-10-P uses 30)
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub mfr_frames: usize,
    /// Random orthogonal directions of ebd and wbd (the reference draws 1000)
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub boundary_directions: usize,
    /// Samples (the first selected) the boundary metrics ebd, wbd and ebd2 scan
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub boundary_limit: usize,
    /// Step cap of ebd2
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub ebd2_steps: usize,
    /// Seed of every random choice (attacks, directions, sequences, corruptions)
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    /// Images per batch
    #[arg(long, default_value_t = 128, value_name = "B")]
    pub batch_size: usize,
    #[command(flatten)]
    pub out: OutArgs,
}

impl MetricsArgs {
    /// The library configuration these arguments describe.
    pub fn config(&self) -> Result<MetricsConfig> {
        let layers = match self.layers.trim() {
            "auto" => None,
            l => Some(l.split(',').map(|s| s.trim().to_string()).collect()),
        };
        Ok(MetricsConfig {
            from: self.from.clone(),
            attack: self.attack.clone(),
            settings: Settings {
                steps: self.steps,
                seed: self.seed,
                ..Settings::default()
            },
            eps: self.eps.as_deref().map(parse_eps).transpose()?,
            black_box: self.black_box.clone(),
            black_box_queries: self.black_box_queries,
            defended: self.defended.clone(),
            baseline: self.baseline.clone(),
            layers,
            boundary: BoundaryParams {
                directions: self.boundary_directions,
                ebd2_max_steps: self.ebd2_steps,
                seed: self.seed,
                ..BoundaryParams::default()
            },
            boundary_limit: self.boundary_limit,
            flip: FlipParams {
                frames: self.mfr_frames,
                seed: self.seed,
            },
            corruptions: parse_kinds(&self.corruptions)?,
            severities: parse_severities(&self.severities)?,
            corruption_seed: self.seed,
            suite: Suite::parse(&self.suite).map_err(|e| anyhow::anyhow!("--suite: {e}"))?,
            selection: self.data.selection(self.seed)?,
            batch_size: self.batch_size,
            ..MetricsConfig::default()
        })
    }
}

pub fn run(a: &MetricsArgs) -> Result<()> {
    let cfg = a.config()?;
    cfg.attacks()?;
    let loaded = load(&a.model, &a.data)?;
    let out = a.out.output("metrics");
    let report = metrics::run(&cfg, &loaded, &out, &Bar::new())?;
    print_metrics(&report, &out.dir).context("writing to stdout")
}

fn print_metrics(r: &MetricsReport, dir: &std::path::Path) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "model  {}", r.model.path.display())?;
    if let Some(d) = &r.defended {
        writeln!(o, "defended  {}", d.path.display())?;
    }
    writeln!(
        o,
        "data   {} ({} samples)\n",
        r.data.path.display(),
        r.corruptions.table.first().map_or(0, |t| t.n)
    )?;
    for m in SUITE {
        let Some(v) = r.metrics.get(m.key) else {
            continue;
        };
        let shown = match v {
            Value::Null => format!("—  ({})", r.notes.get(m.key).map_or("", String::as_str)),
            v => fmt(v),
        };
        writeln!(o, "{:<20} {:<12} {}", m.key, shown, m.definition)?;
    }
    writeln!(o, "\nwrote {}/run.json", dir.display())
}

fn fmt(v: &Value) -> String {
    let x = v.as_f64().or_else(|| v.get("mean").and_then(Value::as_f64));
    match (x, v.as_u64()) {
        (_, Some(n)) => n.to_string(),
        (Some(x), _) if x.fract() == 0.0 && x.abs() < 1e9 => format!("{x:.0}"),
        (Some(x), _) if x.abs() >= 1000.0 || (x != 0.0 && x.abs() < 1e-3) => format!("{x:.4e}"),
        (Some(x), _) => format!("{x:.4}"),
        _ => v.to_string(),
    }
}

/// Arguments of `faultline compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// `metrics` run directories (two or more)
    #[arg(required = true, num_args = 2.., value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Also write compare.csv and compare.svg here
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn compare(a: &CompareArgs) -> Result<()> {
    let r = compare::run(&a.runs, a.out.as_deref())?;
    print_compare(&r, a.out.as_deref()).context("writing to stdout")
}

fn print_compare(r: &CompareReport, out: Option<&std::path::Path>) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    let wcol = r
        .labels
        .iter()
        .map(|l| l.len())
        .max()
        .unwrap_or(8)
        .clamp(10, 28);
    write!(o, "{:<20}", "metric")?;
    for (i, l) in r.labels.iter().enumerate() {
        write!(
            o,
            " {:>wcol$}",
            format!("[{}] {}", i + 1, l)
                .chars()
                .take(wcol)
                .collect::<String>()
        )?;
    }
    writeln!(o, "  better  best")?;
    for row in &r.rows {
        write!(o, "{:<20}", row.metric)?;
        for v in &row.values {
            write!(
                o,
                " {:>wcol$}",
                v.map_or("—".to_string(), |x| fmt(&serde_json::json!(x)))
            )?;
        }
        let dir = match row.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
            Better::Neither => "",
        };
        let best = row.best.map_or(String::new(), |b| format!("[{}]", b + 1));
        writeln!(o, "  {dir:<6}  {best}")?;
    }
    if let Some(d) = out {
        writeln!(
            o,
            "\nwrote {}/compare.csv and {}/compare.svg",
            d.display(),
            d.display()
        )?;
    }
    Ok(())
}
