//! `faultline attack`: robust accuracy under an adversarial attack (one ε, or a curve over a
//! list of ε), with per-sample records appended as batches finish and resumption after a kill.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use faultline::attack::{
    attack_batch, eps_label, parse_eps, summarize_attack, AttackRecord, AttackSpec, AttackSummary,
};
use faultline::attacks::{ApgdParams, AttackLoss, DeepFoolParams, FabParams, Norm, PgdParams};
use faultline::record::{whole_samples, RunDir};
use serde_json::json;

use crate::common::{load, progress, DataArgs, ModelArgs};
use crate::npy_out::NpyRows;

/// Arguments of `faultline attack`.
#[derive(Args, Debug)]
pub struct AttackArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Attack: fgsm, pgd, mifgsm, apgd-ce, apgd-dlr, apgd-t, fab-t (bounded), deepfool or fab
    /// (minimum norm)
    #[arg(long, default_value = "pgd", value_parser = ["fgsm", "pgd", "mifgsm", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "deepfool", "fab"])]
    pub attack: String,
    /// Threat model: linf or l2 [default: linf, deepfool: l2]
    #[arg(long, value_name = "N")]
    pub norm: Option<Norm>,
    /// Radius or radii on the [0, 1] scale, e.g. 8/255 or 1/255,2/255,4/255,8/255 (a robust-
    /// accuracy curve); for deepfool, where to read the curve off the norms found [default:
    /// 8/255 for linf, 0.5 for l2]
    #[arg(long, value_delimiter = ',', value_name = "EPS")]
    pub eps: Option<Vec<String>>,
    /// Iterations [default: pgd 20, mifgsm 10, deepfool 50, apgd and fab 100]
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Absolute step size [default: ε/4 for pgd, ε/10 for mifgsm]
    #[arg(long, value_name = "A")]
    pub step_size: Option<String>,
    /// Runs per sample; runs after the first start at a random point [default: 1; fab 5]
    #[arg(long, value_name = "R")]
    pub restarts: Option<usize>,
    /// Start the first run at a random point of the ball too
    #[arg(long)]
    pub random_start: bool,
    /// Loss ascended by pgd/mifgsm/fgsm: ce, dlr or margin
    #[arg(long, default_value = "ce", value_name = "L")]
    pub loss: AttackLoss,
    /// Seed of all random choices
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    /// Images per batch
    #[arg(long, default_value_t = 128, value_name = "B")]
    pub batch_size: usize,
    /// Run directory [default: runs/attack]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace a different run already in --out instead of refusing
    #[arg(long)]
    pub overwrite: bool,
    /// Also write the returned images as DIR/adv_<k>.npy (float32 NCHW, one file per ε)
    #[arg(long)]
    pub save_adv: bool,
    /// Targeted attack toward this class index (success: classified as it) [default: untargeted]
    #[arg(long, value_name = "CLASS")]
    pub target: Option<usize>,
    /// Print nothing on success (used by commands that run attacks as a step)
    #[arg(skip)]
    pub quiet: bool,
}

fn spec(a: &AttackArgs, norm: Norm) -> Result<AttackSpec> {
    let step = a.step_size.as_deref().map(parse_eps).transpose()?;
    Ok(match a.attack.as_str() {
        "fgsm" => AttackSpec::Pgd(PgdParams {
            loss: a.loss,
            ..PgdParams::fgsm(norm, 0.0)
        }),
        "mifgsm" => {
            let base = PgdParams::mifgsm(norm, 0.0);
            AttackSpec::Pgd(PgdParams {
                steps: a.steps.unwrap_or(base.steps),
                step_size: step,
                loss: a.loss,
                restarts: a.restarts.unwrap_or(1),
                random_start: a.random_start,
                seed: a.seed,
                ..base
            })
        }
        "pgd" => AttackSpec::Pgd(PgdParams {
            norm,
            steps: a.steps.unwrap_or(20),
            step_size: step,
            loss: a.loss,
            restarts: a.restarts.unwrap_or(1),
            random_start: a.random_start,
            seed: a.seed,
            ..PgdParams::default()
        }),
        "deepfool" => AttackSpec::DeepFool(DeepFoolParams {
            norm,
            steps: a.steps.unwrap_or(50),
            ..DeepFoolParams::default()
        }),
        "apgd-ce" | "apgd-dlr" | "apgd-t" => {
            let base = if a.attack == "apgd-t" {
                ApgdParams::autoattack_t(norm, 0.0)
            } else {
                ApgdParams::autoattack_ce(norm, 0.0)
            };
            AttackSpec::Apgd(ApgdParams {
                steps: a.steps.unwrap_or(base.steps),
                restarts: a.restarts.unwrap_or(base.restarts),
                loss: if a.attack == "apgd-dlr" {
                    AttackLoss::Dlr
                } else {
                    base.loss
                },
                seed: a.seed,
                ..base
            })
        }
        "fab" | "fab-t" => {
            let base = if a.attack == "fab-t" {
                FabParams::autoattack_t(norm, 0.0)
            } else {
                FabParams {
                    norm,
                    ..FabParams::default()
                }
            };
            AttackSpec::Fab(FabParams {
                steps: a.steps.unwrap_or(base.steps),
                restarts: a.restarts.unwrap_or(base.restarts),
                seed: a.seed,
                ..base
            })
        }
        other => bail!("unknown attack '{other}'"),
    })
}

pub fn run(a: &AttackArgs, threads: usize) -> Result<()> {
    let norm = a.norm.unwrap_or(if a.attack == "deepfool" {
        Norm::L2
    } else {
        Norm::Linf
    });
    let spec = spec(a, norm)?;
    let eps: Vec<f32> = match &a.eps {
        Some(v) => v
            .iter()
            .map(|s| parse_eps(s))
            .collect::<std::result::Result<_, _>>()?,
        None => vec![if norm == Norm::Linf { 8.0 / 255.0 } else { 0.5 }],
    };
    if eps.is_empty() {
        bail!("--eps needs at least one radius");
    }
    let loaded = load(&a.model, &a.data)?;
    let info = loaded.data.info().clone();
    let total = a.data.limit.map_or(info.len, |l| l.min(info.len));
    let settings = json!({
        "model": loaded.model_path, "model_sha256": loaded.model.card.sha256, "data": loaded.data_path,
        "format": info.format.name(), "split": a.data.split, "limit": a.data.limit,
        "normalization": loaded.model.card.normalization, "attack": spec, "norm": norm, "eps": eps,
        "target": a.target,
    });
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/attack"));
    let overwrite = a.overwrite || a.out.is_none();
    let per_sample = if spec.is_min_norm() { 1 } else { eps.len() };
    let complete = |recs: &[AttackRecord]| whole_samples(recs, per_sample, total);
    let (mut rd, mut records) =
        RunDir::open_with::<AttackRecord>(&out, "attack", settings, overwrite, complete)?;
    let start = records.len() / per_sample;
    if start > 0 {
        eprintln!(
            "resuming {}: {start} of {total} samples already attacked",
            out.display()
        );
    }
    let [c, h, w] = [info.channels, info.height, info.width];
    let mut adv_files = Vec::new();
    if a.save_adv {
        for k in 0..if spec.is_min_norm() { 1 } else { eps.len() } {
            adv_files.push(NpyRows::open(
                &out.join(format!("adv_{k}.npy")),
                "<f4",
                4,
                &[total, c, h, w],
                start > 0,
            )?);
        }
    }
    let bar = progress("attack", total, a.quiet);
    bar.set_position(start as u64);
    let t0 = Instant::now();
    let model = &loaded.model.model;
    let k = model.num_classes();
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
        let (recs, images) = attack_batch(
            model,
            &batch.images,
            &batch.labels,
            &batch.indices,
            &spec,
            &eps,
            a.target,
        )
        .with_context(|| format!("attacking samples {}..", batch.indices[0]))?;
        for (f, img) in adv_files.iter_mut().zip(&images) {
            let bytes: Vec<u8> = img.iter().flat_map(|v| v.to_le_bytes()).collect();
            f.write_rows(batch.indices[0], &bytes)?;
        }
        rd.append(&recs)?;
        records.extend(recs);
        let done = records.len() / per_sample;
        bar.set_position(done as u64);
        // Running robust accuracy at the largest ε (or, for minimum-norm attacks, the share of
        // samples whose smallest perturbation found is larger than the largest ε).
        let s = summarize_attack(&records, &spec, &eps);
        if let Some(p) = s.curve.last() {
            bar.set_message(format!(
                "robust {:.1} % at {}",
                100.0 * p.robust_accuracy,
                eps_label(p.eps)
            ));
        }
    }
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let s = summarize_attack(&records, &spec, &eps);
    let robust = if s.curve.len() == 1 {
        json!(s.curve[0].robust_accuracy)
    } else {
        json!(s
            .curve
            .iter()
            .map(|p| (eps_label(p.eps), json!(p.robust_accuracy)))
            .collect::<serde_json::Map<String, serde_json::Value>>())
    };
    let (fwd, bwd) = records.iter().fold((0u64, 0u64), |(f, b), r| {
        (f + r.forward as u64, b + r.backward as u64)
    });
    rd.write_run(json!({
        "status": "complete",
        "clean_accuracy": s.clean_accuracy,
        "robust_accuracy": robust,
        "model": loaded.model.card,
        "data": { "path": loaded.data_path, "format": info.format.name(), "len": info.len, "image_shape": [c, h, w] },
        "runtime": { "threads": threads, "batch_size": a.batch_size, "seconds": secs, "resumed_from": start,
                     "forward_passes": fwd, "backward_passes": bwd },
        "results": s,
        "adversarial_files": (0..adv_files.len()).map(|k| format!("adv_{k}.npy")).collect::<Vec<_>>(),
    }))?;
    if a.quiet {
        return Ok(());
    }
    print_summary(&s, a, norm, &loaded, &out).context("writing to stdout")
}

fn print_summary(
    s: &AttackSummary,
    a: &AttackArgs,
    norm: Norm,
    l: &crate::common::Loaded,
    out: &std::path::Path,
) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "model  {}", l.model_path.display())?;
    writeln!(o, "data   {} ({} samples)", l.data_path.display(), s.n)?;
    writeln!(o, "attack {} ({})", a.attack, norm.name())?;
    writeln!(o)?;
    writeln!(o, "clean accuracy   {:6.2} %", 100.0 * s.clean_accuracy)?;
    for p in &s.curve {
        writeln!(
            o,
            "robust accuracy  {:6.2} %   at ε = {}",
            100.0 * p.robust_accuracy,
            eps_label(p.eps)
        )?;
    }
    if let Some(m) = s.median_min_norm {
        writeln!(
            o,
            "median smallest perturbation found: {m:.5} ({}); not found for {} samples",
            norm.name(),
            s.not_found
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
