//! `faultline eval`: clean accuracy, per-class accuracy, confusion matrix and logit margins.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use faultline::corruption::{
    parse_kinds, parse_severities, summarize_corruptions, Baseline, CorruptionPlan,
    CorruptionSummary, ParamTable,
};
use faultline::eval::{evaluate_under, summarize, EvalRecord, EvalSummary};
use faultline::record::{whole_samples, RunDir};
use serde_json::json;

use crate::common::{load, progress, DataArgs, ModelArgs};

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
    /// Run directory for run.json and samples.jsonl; an interrupted run with the same settings
    /// resumes there [default: runs/eval]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace a different run already in --out instead of refusing
    #[arg(long)]
    pub overwrite: bool,
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
    /// Print nothing on success (used by commands that evaluate as a step)
    #[arg(skip)]
    pub quiet: bool,
}

pub fn run(args: &EvalArgs, threads: usize) -> Result<()> {
    let loaded = load(&args.model, &args.data)?;
    let info = loaded.data.info().clone();
    let total = args.data.limit.map_or(info.len, |l| l.min(info.len));
    let plan = match &args.corruptions {
        None => None,
        Some(spec) => Some(CorruptionPlan {
            kinds: parse_kinds(spec)?,
            severities: parse_severities(&args.severities)?,
            table: match args.table.as_deref() {
                Some(t) => t.parse::<ParamTable>()?,
                None => ParamTable::for_size(info.height, info.width),
            },
            seed: args.seed,
        }),
    };
    let baseline = match &args.baseline {
        None => None,
        Some(dir) => {
            let p = dir.join("run.json");
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("reading the baseline {}", p.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
            Some(Baseline::from_run(&v).with_context(|| format!("baseline {}", p.display()))?)
        }
    };
    let per_sample = 1 + plan.as_ref().map_or(0, |p| p.conditions().len());
    let settings = json!({
        "model": loaded.model_path,
        "model_sha256": loaded.model.card.sha256,
        "data": loaded.data_path,
        "format": info.format.name(),
        "split": args.data.split,
        "resize": args.data.resize,
        "center_crop": args.data.center_crop,
        "classes_file": args.data.classes,
        "limit": args.data.limit,
        "normalization": loaded.model.card.normalization,
        "corruptions": plan,
    });
    let (out, overwrite) = match &args.out {
        Some(o) => (o.clone(), args.overwrite),
        // The default directory is a scratch space: a run with other settings replaces it.
        None => (PathBuf::from("runs/eval"), true),
    };
    // Keep only whole samples (every condition present) of an interrupted run.
    let complete = |recs: &[EvalRecord]| whole_samples(recs, per_sample, total);
    let (mut rd, mut records) =
        RunDir::open_with::<EvalRecord>(&out, "eval", settings, overwrite, complete)?;
    let start = records.len() / per_sample;
    if start > 0 {
        eprintln!(
            "resuming {}: {start} of {total} samples already evaluated",
            out.display()
        );
    }
    if let Some(p) = &plan {
        eprintln!(
            "evaluating {} corruption{} x {} severit{} ({} table) on {total} images",
            p.kinds.len(),
            if p.kinds.len() == 1 { "" } else { "s" },
            p.severities.len(),
            if p.severities.len() == 1 { "y" } else { "ies" },
            p.table
        );
    }
    let bar = progress("eval", total, args.quiet);
    bar.set_position(start as u64);
    let t0 = Instant::now();
    let mut correct = records
        .iter()
        .filter(|r| r.is_clean() && r.label == r.prediction)
        .count();
    let mut seen = start;
    let model = &loaded.model.model;
    evaluate_under(
        model,
        loaded.data.as_ref(),
        start..total,
        args.batch_size,
        plan.as_ref(),
        |batch| {
            rd.append(batch)?;
            seen += batch.len() / per_sample;
            correct += batch
                .iter()
                .filter(|r| r.is_clean() && r.label == r.prediction)
                .count();
            bar.set_position(seen as u64);
            bar.set_message(format!(
                "clean accuracy {:.2} %",
                100.0 * correct as f64 / seen.max(1) as f64
            ));
            records.extend_from_slice(batch);
            Ok(())
        },
    )
    .with_context(|| format!("evaluating on {}", loaded.data_path.display()))?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let k = loaded.model.card.num_classes;
    let mut names = info.class_names.clone();
    names.resize_with(k.max(names.len()), String::new);
    for (i, n) in names.iter_mut().enumerate() {
        if n.is_empty() {
            *n = i.to_string();
        }
    }
    let summary = summarize(&records, &names, k);
    let corr = plan
        .as_ref()
        .map(|p| summarize_corruptions(&records, p, baseline.as_ref()));
    rd.write_run(json!({
        "status": "complete",
        "clean_accuracy": summary.clean_accuracy,
        "mean_logit_margin": summary.mean_logit_margin,
        "mean_corruption_accuracy": corr.as_ref().map(|c| c.mean_corruption_accuracy),
        "mce": corr.as_ref().and_then(|c| c.mce),
        "relative_mce": corr.as_ref().and_then(|c| c.relative_mce),
        "corruptions": corr,
        "baseline": args.baseline,
        "model": loaded.model.card,
        "data": {
            "path": loaded.data_path,
            "format": info.format.name(),
            "len": info.len,
            "image_shape": [info.channels, info.height, info.width],
            "class_names": info.class_names,
        },
        "runtime": { "threads": threads, "batch_size": args.batch_size, "seconds": secs,
                     "img_per_s": (total - start) as f64 / secs.max(1e-9), "resumed_from": start },
        "results": summary,
    }))?;
    if args.quiet {
        return Ok(());
    }
    print_summary(&summary, &loaded, &out).context("writing to stdout")?;
    if let Some(c) = &corr {
        print_corruptions(c).context("writing to stdout")?;
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

fn print_summary(
    s: &EvalSummary,
    l: &crate::common::Loaded,
    out: &std::path::Path,
) -> std::io::Result<()> {
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
