//! `faultline audit`: every analysis in one process with an HTML report, and `faultline report`:
//! the page rebuilt from earlier run directories.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use faultline::attacks::Norm;
use faultline::data::Split;
use faultline::run::audit::{self, AuditConfig, Preset};

use crate::common::{load, parse_radii, source, Bar, DataArgs, ModelArgs, OutArgs};

/// Samples the demo audits when neither --model, --data nor --limit is given (class-stratified):
/// the quick preset then takes about a minute on 2 cores (README).
pub const DEMO_LIMIT: usize = 100;

/// Arguments of `faultline audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Training set of the same model, for the weak-robust training samples (weak/) [default:
    /// none]
    #[arg(long, value_name = "TRAIN")]
    pub train: Option<PathBuf>,
    /// Cost against strength: quick (about a minute on the demo), standard (AutoAttack's
    /// ensemble, the metric suite) or thorough (restarts, longer Square, escape for vanishing
    /// gradients); README gives each one's cost in passes
    #[arg(long, default_value = "quick", value_parser = ["quick", "standard", "thorough"])]
    pub preset: String,
    /// Radii on the [0, 1] scale, e.g. 2/255,4/255,8/255 [default: the preset's fractions of
    /// the data set's radius (8/255 linf, 0.5 l2 on CIFAR-sized images; 0.3, 2 on MNIST)]
    #[arg(long, value_delimiter = ',', value_name = "EPS")]
    pub eps: Option<Vec<String>>,
    /// Threat model: linf or l2
    #[arg(long, default_value = "linf", value_name = "N")]
    pub norm: Norm,
    /// Images per batch
    #[arg(long, default_value_t = 128, value_name = "B")]
    pub batch_size: usize,
    /// Seed of the attacks, corruptions and resampling
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    /// Print the cost estimate (from a short measured warm-up) and exit
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub out: OutArgs,
}

pub fn run(a: &AuditArgs) -> Result<()> {
    let demo = a.model.model.is_none() && a.data.data.is_none();
    let mut data = a.data.clone();
    if demo && data.limit.is_none() && data.indices.is_none() {
        data.limit = Some(DEMO_LIMIT);
        eprintln!("note: the demo audits {DEMO_LIMIT} class-stratified test images; pass --limit to choose");
    }
    let cfg = AuditConfig {
        preset: Preset::parse(&a.preset)?,
        norm: a.norm,
        eps: parse_radii(&a.eps)?,
        selection: data.selection(a.seed)?,
        batch_size: a.batch_size,
        seed: a.seed,
    };
    let loaded = load(&a.model, &data)?;
    let train = match &a.train {
        Some(t) => {
            let mut src = source(&a.model, &data)?;
            src.data = t.clone();
            src.load.split = Split::Train;
            Some(faultline::run::load(&src).with_context(|| format!("loading {}", t.display()))?)
        }
        None => None,
    };
    if a.dry_run {
        let e = audit::estimate(&cfg, &loaded, train.as_ref())?;
        let mut o = std::io::stdout().lock();
        for l in e.lines() {
            writeln!(o, "{l}")?;
        }
        return Ok(());
    }
    let out = a.out.output("audit");
    let r = audit::run(&cfg, &loaded, train.as_ref(), &out, &Bar::new())
        .with_context(|| format!("auditing {}", loaded.model_path.display()))?;
    let mut o = std::io::stdout().lock();
    let f = &r.findings;
    let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.1} %", 100.0 * v));
    writeln!(o, "clean accuracy            {}", pct(f.clean_accuracy))?;
    for p in &f.robust {
        writeln!(
            o,
            "robust accuracy ε={:<7} {}",
            p.label,
            pct(Some(p.robust_accuracy))
        )?;
    }
    writeln!(
        o,
        "mean corruption accuracy  {}",
        pct(f.mean_corruption_accuracy)
    )?;
    writeln!(o, "\nrecommendations:")?;
    for (i, rec) in f.recommendations.iter().enumerate() {
        writeln!(o, "{:>2}. {rec}", i + 1)?;
    }
    writeln!(
        o,
        "\n{} samples, {} preset, {} ({} estimated at most)\nwrote {} and {}",
        r.samples,
        r.preset.name(),
        audit::duration(r.seconds),
        audit::duration(r.estimate.seconds),
        out.file("run.json").display(),
        out.file("report.html").display()
    )?;
    Ok(())
}

/// Arguments of `faultline report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run directories: an audit directory, or eval, attack, classwise, margins, metrics and
    /// weak runs
    #[arg(required = true, value_name = "RUN_DIR")]
    pub dirs: Vec<PathBuf>,
    /// The page to write [default: report.html in the first directory]
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn report(a: &ReportArgs) -> Result<()> {
    let page = a
        .out
        .clone()
        .unwrap_or_else(|| a.dirs[0].join("report.html"));
    faultline::report::html::build(&a.dirs, &page)?;
    println!("wrote {}", page.display());
    Ok(())
}
