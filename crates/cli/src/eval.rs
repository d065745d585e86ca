//! `faultline eval`: clean accuracy, per-class accuracy, confusion matrix and logit margins.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use faultline::eval::{evaluate, summarize, EvalRecord, EvalSummary};
use faultline::record::RunDir;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::common::{load, DataArgs, ModelArgs};

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
}

pub fn run(args: &EvalArgs, threads: usize) -> Result<()> {
    let loaded = load(&args.model, &args.data)?;
    let info = loaded.data.info().clone();
    let total = args.data.limit.map_or(info.len, |l| l.min(info.len));
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
    });
    let (out, overwrite) = match &args.out {
        Some(o) => (o.clone(), args.overwrite),
        // The default directory is a scratch space: a run with other settings replaces it.
        None => (PathBuf::from("runs/eval"), true),
    };
    let (mut rd, mut records) = RunDir::open::<EvalRecord>(&out, "eval", settings, overwrite)?;
    records.retain(|r| r.index < total);
    let start = records.len();
    if start > 0 {
        eprintln!(
            "resuming {}: {start} of {total} samples already evaluated",
            out.display()
        );
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} eval [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_position(start as u64);
    let t0 = Instant::now();
    let mut correct = records.iter().filter(|r| r.label == r.prediction).count();
    let mut seen = records.len();
    evaluate(
        &loaded.model.model,
        loaded.data.as_ref(),
        start..total,
        args.batch_size,
        |batch| {
            rd.append(batch)?;
            seen += batch.len();
            correct += batch.iter().filter(|r| r.label == r.prediction).count();
            bar.set_position(seen as u64);
            bar.set_message(format!(
                "accuracy {:.2} %",
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
    rd.write_run(json!({
        "status": "complete",
        "clean_accuracy": summary.clean_accuracy,
        "mean_logit_margin": summary.mean_logit_margin,
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
    print_summary(&summary, &loaded, &out).context("writing to stdout")?;
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
