//! `faultline margins`: brittle-decision detection (Ngnawé et al., NeurIPS 2024). Input margins
//! from a minimum-norm attack against the predicted label, clean scores (logit margin,
//! probability margin, maximum probability, feature-space margin), their rank agreement
//! (Kendall τ-b, Spearman ρ with bootstrap intervals), detection of the non-robust samples
//! (AUROC, AUPR, FPR@95, a deployable threshold), the robust accuracy estimated from a small
//! attacked subset, and optionally a learned pseudo-margin. Per-sample records are appended as
//! batches finish, and a killed run resumes.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use faultline::attack::{eps_label, parse_eps};
use faultline::attacks::{DeepFoolParams, FabParams, Norm};
use faultline::margin::measure::{choose_subset, measure_batch, MarginAttack, MarginRecord};
use faultline::margin::pseudo::{pseudo_margin, PseudoInput, PseudoParams, PseudoReport};
use faultline::margin::report::{input_margin, report, MarginReport, ReportParams, ScoreReport};
use faultline::margin::roc_curve;
use faultline::margin::scores::RowGaps;
use faultline::plot::{xy_chart, Series};
use faultline::record::{whole_samples, RunDir};
use serde_json::json;

use crate::common::{load, progress, DataArgs, ModelArgs};

/// Arguments of `faultline margins`.
#[derive(Args, Debug)]
pub struct MarginsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Threat model of the margins: linf, l2 or l1 (l1: --attack fab only)
    #[arg(long, default_value = "linf", value_name = "N")]
    pub norm: Norm,
    /// A sample is non-robust when its input margin is at most ε [default: 8/255 for linf,
    /// 0.5 for l2, 12 for l1]
    #[arg(long, value_name = "EPS")]
    pub eps: Option<String>,
    /// Minimum-norm attack estimating the input margins: fab (the paper's) or deepfool (fast)
    #[arg(long, default_value = "fab", value_parser = ["fab", "deepfool"])]
    pub attack: String,
    /// Runs per sample for fab (the first from the clean image, the others at random)
    #[arg(long, default_value_t = 5, value_name = "R")]
    pub restarts: usize,
    /// Iterations per run [default: fab 100, deepfool 50]
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Attack only a random subset of this many samples (all are scored); the robust accuracy
    /// of the whole set is then estimated from it [default: attack all]
    #[arg(long, value_name = "N")]
    pub subset: Option<usize>,
    /// Attacked samples per round of the robust-accuracy estimate
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub estimate_size: usize,
    /// Learn a pseudo-margin from the logits or from the penultimate features
    #[arg(long, value_name = "FROM", num_args = 0..=1, default_missing_value = "logits", value_parser = ["logits", "features"])]
    pub pseudo_margin: Option<String>,
    /// Share of the attacked samples the pseudo-margin is fitted on (the rest evaluate it)
    #[arg(long, default_value_t = 0.5, value_name = "F")]
    pub fit_fraction: f64,
    /// Pseudo-margin training epochs (full batch, Adam)
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub epochs: usize,
    /// Pseudo-margin learning rate
    #[arg(long, default_value_t = 1e-4, value_name = "LR")]
    pub lr: f32,
    /// Pseudo-margin loss: mse (on √d_in) or ranking (pairwise)
    #[arg(long, default_value = "mse", value_parser = ["mse", "ranking"])]
    pub loss: String,
    /// Share of the non-robust samples the printed threshold must flag
    #[arg(long, default_value_t = 0.95, value_name = "R")]
    pub recall: f64,
    /// Bootstrap resamples for the confidence intervals
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub bootstrap: usize,
    /// Seed of all random choices
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    /// Images per batch
    #[arg(long, default_value_t = 128, value_name = "B")]
    pub batch_size: usize,
    /// Run directory [default: runs/margins]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace a different run already in --out instead of refusing
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(a: &MarginsArgs, threads: usize) -> Result<()> {
    let eps = match &a.eps {
        Some(s) => parse_eps(s)?,
        None => match a.norm {
            Norm::Linf => 8.0 / 255.0,
            Norm::L2 => 0.5,
            Norm::L1 => 12.0,
        },
    };
    if !(0.0..1.0).contains(&a.fit_fraction) || a.fit_fraction == 0.0 {
        bail!("--fit-fraction must lie in (0, 1)");
    }
    if !(0.0..=1.0).contains(&a.recall) || a.recall == 0.0 {
        bail!("--recall must lie in (0, 1]");
    }
    let attack = match a.attack.as_str() {
        "deepfool" => MarginAttack::DeepFool(DeepFoolParams {
            norm: a.norm,
            steps: a.steps.unwrap_or(50),
            ..DeepFoolParams::default()
        }),
        _ => MarginAttack::Fab(FabParams {
            norm: a.norm,
            eps: None,
            steps: a.steps.unwrap_or(100),
            restarts: a.restarts.max(1),
            seed: a.seed,
            ..FabParams::default()
        }),
    };
    let pseudo_input = match a.pseudo_margin.as_deref() {
        Some("features") => Some(PseudoInput::Features),
        Some(_) => Some(PseudoInput::Logits),
        None => None,
    };
    let loaded = load(&a.model, &a.data)?;
    let info = loaded.data.info().clone();
    let total = a.data.limit.map_or(info.len, |l| l.min(info.len));
    let model = &loaded.model.model;
    let k = model.num_classes();
    let head = model.head();
    let gaps = head.as_ref().map(|h| RowGaps::new(h, a.norm));
    let keep_features = pseudo_input == Some(PseudoInput::Features);
    if keep_features && model.penultimate_name().is_none() {
        bail!(
            "{}: no final Gemm/MatMul found, so there are no penultimate features to learn from; use --pseudo-margin logits",
            loaded.model_path.display()
        );
    }
    let settings = json!({
        "model": loaded.model_path, "model_sha256": loaded.model.card.sha256, "data": loaded.data_path,
        "format": info.format.name(), "split": a.data.split, "limit": a.data.limit,
        "normalization": loaded.model.card.normalization, "attack": attack, "subset": a.subset,
        "keep_features": keep_features, "seed": a.seed,
    });
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/margins"));
    let overwrite = a.overwrite || a.out.is_none();
    let complete = |recs: &[MarginRecord]| whole_samples(recs, 1, total);
    let (mut rd, mut records) =
        RunDir::open_with::<MarginRecord>(&out, "margins", settings, overwrite, complete)?;
    let start = records.len();
    if start > 0 {
        eprintln!(
            "resuming {}: {start} of {total} samples already measured",
            out.display()
        );
    }
    // Which samples are attacked: all, or the first `subset` of a seeded permutation.
    let chosen = choose_subset(total, a.subset, a.seed);
    let bar = progress("margins", total, false);
    bar.set_position(start as u64);
    let t0 = Instant::now();
    // Running share of non-robust samples among the attacked ones, for the progress bar.
    let (mut attacked, mut nonrobust) = records
        .iter()
        .filter(|r| r.attacked)
        .fold((0usize, 0usize), |(a, b), r| {
            (a + 1, b + usize::from(input_margin(r) <= eps as f64))
        });
    for batch in loaded.data.batches(a.batch_size.max(1), start..total)? {
        let batch = batch?;
        if let Some((i, y)) = batch
            .indices
            .iter()
            .zip(&batch.labels)
            .find(|(_, &y)| y >= k)
        {
            bail!(
                "{}: label {y} of sample {i} is out of range for a model with {k} outputs",
                loaded.data_path.display()
            );
        }
        let mask: Vec<bool> = batch.indices.iter().map(|&i| chosen[i]).collect();
        let recs = measure_batch(
            model,
            &batch.images,
            &batch.labels,
            &batch.indices,
            &attack,
            &mask,
            gaps.as_ref(),
            keep_features,
        )
        .with_context(|| format!("measuring samples {}..", batch.indices[0]))?;
        rd.append(&recs)?;
        for r in recs.iter().filter(|r| r.attacked) {
            attacked += 1;
            nonrobust += usize::from(input_margin(r) <= eps as f64);
        }
        records.extend(recs);
        bar.set_position(records.len() as u64);
        bar.set_message(format!(
            "non-robust {:.1} % at {}",
            100.0 * nonrobust as f64 / attacked.max(1) as f64,
            eps_label(eps)
        ));
    }
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let rp = ReportParams {
        norm: a.norm,
        eps,
        recall: a.recall,
        bootstrap: a.bootstrap,
        estimate_size: a.estimate_size,
        estimate_rounds: 10,
        seed: a.seed,
    };
    let rep = report(&records, &rp, gaps.as_ref().map(|g| g.range()));
    let pseudo = match pseudo_input {
        Some(input) => {
            let pp = PseudoParams {
                input,
                fit_fraction: a.fit_fraction,
                epochs: a.epochs,
                lr: a.lr,
                ranking: a.loss == "ranking",
                seed: a.seed,
                ..PseudoParams::default()
            };
            let (r, weights) = pseudo_margin(&records, &pp, &rp)?;
            let p = out.join("pseudo_margin.safetensors");
            std::fs::write(&p, weights).with_context(|| format!("writing {}", p.display()))?;
            Some(r)
        }
        None => None,
    };
    write_plots(&out, &records, &rep, pseudo.as_ref(), &rp)?;
    let logit = rep.score("logit_margin");
    let (fwd, bwd) = records.iter().fold((0u64, 0u64), |(f, b), r| {
        (f + r.forward as u64, b + r.backward as u64)
    });
    rd.write_run(json!({
        "status": "complete",
        "clean_accuracy": rep.clean_accuracy,
        "kendall_tau": logit.and_then(|s| s.kendall_tau.as_ref()).map(|e| e.value),
        "auroc": logit.and_then(|s| s.detection.auroc),
        "aupr": logit.and_then(|s| s.detection.aupr),
        "fpr_at_95_tpr": logit.and_then(|s| s.detection.fpr_at_95_tpr),
        "robust_accuracy": rep.robust_accuracy,
        "norm": a.norm, "eps": eps,
        "model": loaded.model.card,
        "data": { "path": loaded.data_path, "format": info.format.name(), "len": info.len,
                  "image_shape": [info.channels, info.height, info.width] },
        "runtime": { "threads": threads, "batch_size": a.batch_size, "seconds": secs, "resumed_from": start,
                     "forward_passes": fwd, "backward_passes": bwd },
        "report": rep,
        "pseudo_margin": pseudo,
        "plots": ["margins_scatter.svg", "roc.svg"],
    }))?;
    print_summary(a, eps, &loaded, &rep, pseudo.as_ref(), &out).context("writing to stdout")
}

/// The scatter of input margin against logit margin, and the ROC curve of each score.
fn write_plots(
    out: &std::path::Path,
    records: &[MarginRecord],
    rep: &MarginReport,
    pseudo: Option<&PseudoReport>,
    rp: &ReportParams,
) -> Result<()> {
    let write = |name: &str, svg: String| -> Result<()> {
        let p = out.join(name);
        std::fs::write(&p, svg).with_context(|| format!("writing {}", p.display()))
    };
    let pts = |correct: bool| -> Vec<[f64; 2]> {
        records
            .iter()
            .filter(|r| {
                r.attacked && r.input_margin.is_some() && (r.prediction == r.label) == correct
            })
            .map(|r| [r.scores.logit_margin as f64, input_margin(r)])
            .collect()
    };
    let eps = rp.eps as f64;
    let max_m = records
        .iter()
        .map(|r| r.scores.logit_margin as f64)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    write(
        "margins_scatter.svg",
        xy_chart(
            &format!(
                "input margin ({}) vs logit margin, τ = {}",
                rp.norm.name(),
                rep.score("logit_margin")
                    .and_then(|s| s.kendall_tau.as_ref())
                    .map_or("n/a".into(), |e| format!("{:.3}", e.value))
            ),
            "logit margin (top-1 − top-2)",
            &format!("input margin d_in ({})", rp.norm.name()),
            &[
                Series {
                    name: "correct".into(),
                    points: pts(true),
                    line: false,
                },
                Series {
                    name: "misclassified".into(),
                    points: pts(false),
                    line: false,
                },
                Series {
                    name: format!("ε = {}", eps_label(rp.eps)),
                    points: vec![[0.0, eps], [max_m, eps]],
                    line: true,
                },
            ],
            None,
        ),
    )?;
    let att: Vec<&MarginRecord> = records.iter().filter(|r| r.attacked).collect();
    let pos: Vec<bool> = att.iter().map(|r| input_margin(r) <= eps).collect();
    let mut series: Vec<Series> = rep
        .scores
        .iter()
        .map(|s| {
            let score: Vec<f64> = att
                .iter()
                .map(|r| -(r.scores.get(&s.name).unwrap_or(f32::NAN) as f64))
                .collect();
            Series {
                name: auroc_label(s),
                points: roc_curve(&score, &pos),
                line: true,
            }
        })
        .collect();
    if let Some(p) = pseudo {
        series.push(Series {
            name: format!("{} (held out)", auroc_label(&p.after)),
            points: p.roc.clone(),
            line: true,
        });
    }
    write(
        "roc.svg",
        xy_chart(
            &format!(
                "detecting non-robust samples (d_in ≤ {})",
                eps_label(rp.eps)
            ),
            "false-positive rate",
            "true-positive rate",
            &series,
            Some([0.0, 1.0, 0.0, 1.0]),
        ),
    )
}

fn auroc_label(s: &ScoreReport) -> String {
    format!(
        "{} {}",
        s.name,
        s.detection
            .auroc
            .map_or("".into(), |v| format!("({:.3})", v))
    )
}

fn print_summary(
    a: &MarginsArgs,
    eps: f32,
    l: &crate::common::Loaded,
    rep: &MarginReport,
    pseudo: Option<&PseudoReport>,
    out: &std::path::Path,
) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "model  {}", l.model_path.display())?;
    writeln!(o, "data   {} ({} samples)", l.data_path.display(), rep.n)?;
    writeln!(
        o,
        "input margins: {} ({}), {} of {} attacked samples with a margin found; median {}",
        a.attack,
        a.norm.name(),
        rep.found,
        rep.attacked,
        rep.median_input_margin
            .map_or("n/a".into(), |m| format!("{m:.5}"))
    )?;
    writeln!(
        o,
        "clean accuracy {:.2} %; non-robust at ε = {}: {} of {}",
        100.0 * rep.clean_accuracy,
        eps_label(eps),
        rep.non_robust,
        rep.attacked
    )?;
    if let Some([lo, hi]) = rep.row_gap_range {
        writeln!(o, "final-layer ‖w_i − w_j‖ from {lo:.4} to {hi:.4}")?;
    }
    writeln!(o)?;
    writeln!(
        o,
        "{:<16} {:>22} {:>8} {:>7} {:>7} {:>7} {:>11}",
        "score", "Kendall τ [95 % CI]", "Spearman", "AUROC", "AUPR", "FPR@95", "flag ≤"
    )?;
    let row = |o: &mut dyn Write, s: &ScoreReport| -> std::io::Result<()> {
        let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.2}", 100.0 * v));
        writeln!(
            o,
            "{:<16} {:>22} {:>8} {:>7} {:>7} {:>7} {:>11}",
            s.name,
            s.kendall_tau.as_ref().map_or("n/a".into(), |e| format!(
                "{:.3} [{:.3}, {:.3}]",
                e.value, e.low, e.high
            )),
            s.spearman
                .as_ref()
                .map_or("n/a".into(), |e| format!("{:.3}", e.value)),
            f(s.detection.auroc),
            f(s.detection.aupr),
            f(s.detection.fpr_at_95_tpr),
            s.flag_below.map_or("n/a".into(), |v| format!("{v:.4}"))
        )
    };
    for s in &rep.scores {
        row(&mut o, s)?;
    }
    if let Some(p) = pseudo {
        writeln!(
            o,
            "\npseudo-margin from {} ({} fitted, {} held out); on the held-out samples:",
            p.input, p.fit_samples, p.eval_samples
        )?;
        row(&mut o, &p.before)?;
        row(&mut o, &p.after)?;
    }
    writeln!(o)?;
    if let Some(r) = rep.robust_accuracy {
        writeln!(
            o,
            "robust accuracy at ε = {} from the margins: {:.2} % (attacked samples)",
            eps_label(eps),
            100.0 * r
        )?;
    }
    if let Some(e) = &rep.estimate {
        writeln!(
            o,
            "estimated from {} attacked samples × {} rounds and the logit margins of all {}: {:.2} % [{:.2}, {:.2}]",
            e.subset,
            e.rounds,
            e.population,
            100.0 * e.estimate,
            100.0 * e.low,
            100.0 * e.high
        )?;
    }
    writeln!(
        o,
        "\nwrote {0}/run.json, {0}/samples.jsonl, {0}/margins_scatter.svg and {0}/roc.svg",
        out.display()
    )?;
    Ok(())
}
