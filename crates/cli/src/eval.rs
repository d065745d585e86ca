//! `faultline eval`: clean accuracy, per-class accuracy, confusion matrix and logit margins.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use faultline::corruption::{CorruptionPlan, CorruptionSummary};
use faultline::eval::EvalSummary;
use faultline::run::eval::{self, BrittleReport, EvalConfig};
use faultline::run::Loaded;

use crate::common::{load, Bar, DataArgs, ModelArgs, OutArgs};

/// Arguments of `faultline eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Images per forward pass
    #[arg(long, default_value_t = 128, value_name = "B")]
    pub batch_size: usize,
    #[command(flatten)]
    pub out: OutArgs,
    /// Also evaluate under common corruptions computed on the fly (no files written): all,
    /// standard (the 15 of CIFAR-10-C), extra (the other 4) or a list such as fog,snow
    /// [default: none]
    #[arg(long, value_name = "LIST")]
    pub corruptions: Option<String>,
    /// Corruption severities: a range such as 1-5 or a list such as 1,3,5
    #[arg(long, default_value = "1-5", value_name = "S")]
    pub severities: String,
    /// Seed of the random corruption families
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    /// Corruption parameter table: cifar or imagenet [default: by image size, cifar up to 84 px]
    #[arg(long, value_name = "T", value_parser = ["cifar", "imagenet"])]
    pub table: Option<String>,
    /// Earlier `eval --corruptions` run directory of a baseline model, for CE, mCE and
    /// relative mCE [default: none]
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// Flag brittle samples with the threshold of this earlier `margins` run: its saved
    /// pseudo-margin (from --pseudo-margin) or else its logit-margin threshold; samples.jsonl
    /// marks each sample `brittle: true|false`
    #[arg(long, value_name = "DIR")]
    pub flag_brittle: Option<PathBuf>,
    /// With --flag-brittle: the attack (at the margins run's norm and ε, in DIR/robust) that
    /// measures the robust accuracy of the flagged and the unflagged samples, or none
    #[arg(
        long,
        default_value = "pgd",
        value_name = "ATTACK",
        requires = "flag_brittle"
    )]
    pub robust_attack: String,
}

/// The corruption plan of `--corruptions`, `--severities`, `--table` and `--seed`.
pub fn plan(
    spec: &Option<String>,
    severities: &str,
    table: &Option<String>,
    seed: u64,
    image: (usize, usize),
) -> Result<Option<CorruptionPlan>> {
    let Some(spec) = spec else { return Ok(None) };
    Ok(Some(CorruptionPlan::parse(
        spec,
        severities,
        table.as_deref(),
        seed,
        image,
    )?))
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let loaded = load(&args.model, &args.data)?;
    let info = loaded.data.info();
    let cfg = EvalConfig {
        selection: args.data.selection(0)?,
        batch_size: args.batch_size,
        corruptions: plan(
            &args.corruptions,
            &args.severities,
            &args.table,
            args.seed,
            (info.height, info.width),
        )?,
        baseline: args.baseline.clone(),
        flag_brittle: args.flag_brittle.clone(),
        robust_attack: (args.robust_attack != "none").then(|| args.robust_attack.clone()),
    };
    let out = args.out.output("eval");
    let report = eval::run(&cfg, &loaded, &out, &Bar::new())
        .with_context(|| format!("evaluating on {}", loaded.data_path.display()))?;
    print_summary(&report.results, &loaded, &out.dir).context("writing to stdout")?;
    if let Some(c) = &report.corruptions {
        print_corruptions(c).context("writing to stdout")?;
    }
    if let Some(b) = &report.brittle {
        print_brittle(b).context("writing to stdout")?;
    }
    Ok(())
}

fn print_brittle(b: &BrittleReport) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "\nbrittle ({} ≤ {:.4}, from {}): {} of {} samples ({:.1} %)",
        b.score,
        b.flag_below,
        b.source.display(),
        b.flagged,
        b.samples,
        100.0 * b.brittle_fraction
    )?;
    if let (Some(t), Some(a)) = (&b.table, &b.attack) {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}", 100.0 * v));
        writeln!(
            o,
            "{:<10} {:>6} {:>8} {:>9}   ({a} {} {})",
            "",
            "n",
            "clean %",
            "robust %",
            b.norm.name(),
            faultline::eps::eps_label(b.eps)
        )?;
        for (name, g) in [("flagged", &t.flagged), ("unflagged", &t.unflagged)] {
            writeln!(
                o,
                "{name:<10} {:>6} {:>8} {:>9}",
                g.n,
                pct(g.clean_accuracy),
                pct(g.robust_accuracy)
            )?;
        }
    }
    Ok(())
}

fn print_corruptions(c: &CorruptionSummary) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    let sevs: Vec<u8> = {
        let mut v: Vec<u8> = c.table.iter().map(|r| r.severity).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    writeln!(o, "\naccuracy under corruptions (%)")?;
    write!(o, "{:<18}", "corruption")?;
    for s in &sevs {
        write!(o, " {:>6}", format!("s{s}"))?;
    }
    writeln!(o, " {:>6} {:>6} {:>6}", "mean", "CE", "rel CE")?;
    for f in &c.families {
        write!(o, "{:<18}", f.corruption)?;
        for s in &sevs {
            let a = c
                .table
                .iter()
                .find(|r| r.corruption == f.corruption && r.severity == *s)
                .map_or(f64::NAN, |r| r.accuracy);
            write!(o, " {:>6.2}", 100.0 * a)?;
        }
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}", 100.0 * v));
        writeln!(
            o,
            " {:>6.2} {:>6} {:>6}",
            100.0 * f.mean_accuracy,
            pct(f.ce),
            pct(f.relative_ce)
        )?;
    }
    writeln!(
        o,
        "\nmean corruption accuracy {:6.2} %   (clean {:.2} %)",
        100.0 * c.mean_corruption_accuracy,
        100.0 * c.clean_accuracy
    )?;
    if let (Some(m), Some(r)) = (c.mce, c.relative_mce) {
        writeln!(
            o,
            "mCE {:.1} %, relative mCE {:.1} % (standard families evaluated, against the baseline)",
            100.0 * m,
            100.0 * r
        )?;
    } else if let Some(m) = c.mce {
        writeln!(
            o,
            "mCE {:.1} % (relative mCE undefined: the baseline loses no accuracy)",
            100.0 * m
        )?;
    }
    Ok(())
}

fn print_summary(s: &EvalSummary, l: &Loaded, out: &std::path::Path) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    let info = l.data.info();
    writeln!(o, "model  {}", l.model_path.display())?;
    writeln!(
        o,
        "data   {} ({}, {} classes, {}x{}x{})",
        l.data_path.display(),
        info.format.name(),
        info.num_classes(),
        info.channels,
        info.height,
        info.width
    )?;
    writeln!(o)?;
    writeln!(
        o,
        "clean accuracy     {:6.2} %   ({} / {})",
        100.0 * s.clean_accuracy,
        s.correct,
        s.n
    )?;
    writeln!(o, "mean logit margin  {:8.3}", s.mean_logit_margin)?;
    writeln!(o)?;
    let w = s
        .per_class
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 24);
    writeln!(o, "{:<w$}  {:>6}  {:>9}", "class", "n", "accuracy")?;
    for c in &s.per_class {
        let acc = c
            .accuracy
            .map_or("-".to_string(), |a| format!("{:.2} %", 100.0 * a));
        writeln!(o, "{:<w$}  {:>6}  {:>9}", truncate(&c.name, w), c.n, acc)?;
    }
    if s.confusion.len() <= 20 {
        writeln!(o)?;
        writeln!(
            o,
            "confusion matrix (rows: true class, columns: predicted class)"
        )?;
        write!(o, "{:<w$}", "")?;
        for c in &s.per_class {
            write!(o, " {:>5}", truncate(&c.name, 5))?;
        }
        writeln!(o)?;
        for (c, row) in s.per_class.iter().zip(&s.confusion) {
            write!(o, "{:<w$}", truncate(&c.name, w))?;
            for v in row {
                write!(o, " {v:>5}")?;
            }
            writeln!(o)?;
        }
    } else {
        writeln!(
            o,
            "\n(confusion matrix of {} classes: see run.json)",
            s.confusion.len()
        )?;
    }
    writeln!(
        o,
        "\nwrote {}/run.json and {}/samples.jsonl",
        out.display(),
        out.display()
    )?;
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
