//! `faultline attack`: robust accuracy under an adversarial attack (one ε, or a curve over a
//! list of ε), with per-sample records appended as batches finish and resumption after a kill.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use faultline::attack::{
    attack_batch, eps_label, parse_eps, sanity_report, summarize_attack, AttackOptions,
    AttackRecord, AttackSpec, AttackSummary, SanityReport, StageProgress, SANITY_SAMPLES,
};
use faultline::attacks::{
    ApgdParams, AttackLoss, CwParams, DeepFoolParams, FabParams, Norm, PgdParams, SquareParams,
};
use faultline::ensemble;
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
    /// Attack: fgsm, pgd, mifgsm, apgd-ce, apgd-dlr, apgd-t, fab-t, square (bounded), deepfool,
    /// fab or cw (minimum norm; cw is L2 only)
    #[arg(long, default_value = "pgd", value_parser = ["fgsm", "pgd", "mifgsm", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square", "deepfool", "fab", "cw"])]
    pub attack: String,
    /// An attack ensemble instead of --attack: standard = AutoAttack's standard version
    /// (APGD-CE → APGD-T → FAB-T → Square, each on the points still robust, AutoAttack's
    /// parameters; robust accuracy after each stage)
    #[arg(long, value_name = "P", value_parser = ["standard"])]
    pub preset: Option<String>,
    /// Skip the sanity checks for gradient masking (robust accuracy monotone in ε, an unbounded
    /// attack breaking every sample, non-zero gradients), which cost a few % more passes
    #[arg(long)]
    pub no_sanity: bool,
    /// Threat model: linf, l2 or l1 (l1: fgsm, pgd, mifgsm, fab and fab-t only) [default: linf;
    /// deepfool and cw: l2]
    #[arg(long, value_name = "N")]
    pub norm: Option<Norm>,
    /// Radius or radii on the [0, 1] scale, e.g. 8/255 or 1/255,2/255,4/255,8/255 (a robust-
    /// accuracy curve); for deepfool, where to read the curve off the norms found [default:
    /// 8/255 for linf, 0.5 for l2, 12 for l1 (RobustBench's CIFAR-10 L1 radius)]
    #[arg(long, value_delimiter = ',', value_name = "EPS")]
    pub eps: Option<Vec<String>>,
    /// Iterations [default: pgd 20, mifgsm 10, deepfool 50, apgd and fab 100, cw 100 per
    /// binary-search step; square: queries, 5000]
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
    if let Some(p) = &a.preset {
        let given: Vec<&str> = [
            (a.attack != "pgd", "--attack"),
            (a.steps.is_some(), "--steps"),
            (a.step_size.is_some(), "--step-size"),
            (a.restarts.is_some(), "--restarts"),
            (a.random_start, "--random-start"),
            (a.loss != AttackLoss::Ce, "--loss"),
            (a.target.is_some(), "--target"),
        ]
        .iter()
        .filter(|g| g.0)
        .map(|g| g.1)
        .collect();
        if !given.is_empty() {
            bail!(
                "--preset {p} fixes every attack parameter (and is untargeted): drop {}",
                given.join(", ")
            );
        }
        return Ok(AttackSpec::Ensemble(ensemble::preset(p, norm, a.seed)?));
    }
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
        "square" => {
            let base = SquareParams::default();
            AttackSpec::Square(SquareParams {
                norm,
                queries: a.steps.unwrap_or(base.queries),
                restarts: a.restarts.unwrap_or(base.restarts),
                seed: a.seed,
                ..base
            })
        }
        "cw" => {
            if norm != Norm::L2 {
                bail!("--attack cw is an L2 attack: use --norm l2 (the default for cw)");
            }
            let base = CwParams::default();
            AttackSpec::Cw(CwParams {
                steps: a.steps.unwrap_or(base.steps),
                ..base
            })
        }
        other => bail!("unknown attack '{other}'"),
    })
}

pub fn run(a: &AttackArgs, threads: usize) -> Result<()> {
    let norm = a.norm.unwrap_or(
        if a.preset.is_none() && (a.attack == "deepfool" || a.attack == "cw") {
            Norm::L2
        } else {
            Norm::Linf
        },
    );
    if norm == Norm::L1
        && (a.preset.is_some()
            || !["fgsm", "pgd", "mifgsm", "fab", "fab-t"].contains(&a.attack.as_str()))
    {
        bail!("--norm l1 is supported by --attack fgsm, pgd, mifgsm, fab and fab-t only");
    }
    let spec = spec(a, norm)?;
    let sanity = !a.no_sanity && !spec.is_min_norm();
    let eps: Vec<f32> = match &a.eps {
        Some(v) => v
            .iter()
            .map(|s| parse_eps(s))
            .collect::<std::result::Result<_, _>>()?,
        None => vec![match norm {
            Norm::Linf => 8.0 / 255.0,
            Norm::L2 => 0.5,
            Norm::L1 => 12.0,
        }],
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
        "target": a.target, "sanity": sanity,
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
    let mut unbounded_left = SANITY_SAMPLES.saturating_sub(
        records
            .iter()
            .filter(|r| r.unbounded_success.is_some())
            .count(),
    );
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
        // Running robust accuracy while an ensemble's stages finish within the batch: the
        // completed batches plus this batch's samples still robust after the stage.
        let done = records.len() / per_sample;
        let before = summarize_attack(&records, &spec, &eps);
        let bar2 = bar.clone();
        let mut show = |p: StageProgress| {
            let prev = before
                .curve
                .iter()
                .find(|c| c.eps == p.eps)
                .map_or(0.0, |c| c.robust_accuracy * done as f64);
            let robust = prev + p.robust as f64;
            bar2.set_message(format!(
                "robust ≤ {:.1} % at {} after {} ({}/{})",
                100.0 * robust / (done + batch.labels.len()).max(1) as f64,
                eps_label(p.eps),
                p.stage,
                p.position.0 + 1,
                p.position.1
            ));
        };
        let mut opts = AttackOptions {
            target: a.target,
            sanity,
            unbounded_left,
            progress: Some(&mut show),
        };
        let (recs, images) = attack_batch(
            model,
            &batch.images,
            &batch.labels,
            &batch.indices,
            &spec,
            &eps,
            &mut opts,
        )
        .with_context(|| format!("attacking samples {}..", batch.indices[0]))?;
        unbounded_left = opts.unbounded_left;
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
    let by_eps = |v: Vec<serde_json::Value>| {
        if s.curve.len() == 1 {
            v.into_iter().next().unwrap_or_default()
        } else {
            json!(s
                .curve
                .iter()
                .zip(v)
                .map(|(p, x)| (eps_label(p.eps), x))
                .collect::<serde_json::Map<String, serde_json::Value>>())
        }
    };
    let robust = by_eps(s.curve.iter().map(|p| json!(p.robust_accuracy)).collect());
    let stages = s.curve[0]
        .stages
        .is_some()
        .then(|| by_eps(s.curve.iter().map(|p| json!(p.stages)).collect()));
    let sane = if sanity {
        sanity_report(&records, &spec, &eps)
    } else {
        None
    };
    let (fwd, bwd) = records.iter().fold((0u64, 0u64), |(f, b), r| {
        (f + r.forward as u64, b + r.backward as u64)
    });
    let mut run = json!({
        "status": "complete",
        "clean_accuracy": s.clean_accuracy,
        "robust_accuracy": robust,
        "model": loaded.model.card,
        "data": { "path": loaded.data_path, "format": info.format.name(), "len": info.len, "image_shape": [c, h, w] },
        "runtime": { "threads": threads, "batch_size": a.batch_size, "seconds": secs, "resumed_from": start,
                     "forward_passes": fwd, "backward_passes": bwd },
        "results": s,
        "adversarial_files": (0..adv_files.len()).map(|k| format!("adv_{k}.npy")).collect::<Vec<_>>(),
    });
    if let Some(st) = stages {
        run["stages"] = st;
    }
    if let Some(r) = &sane {
        run["sanity"] = json!(r);
    }
    rd.write_run(run)?;
    if let Some(r) = &sane {
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
    }
    if a.quiet {
        return Ok(());
    }
    print_summary(&s, a, norm, &loaded, &out, sane.as_ref()).context("writing to stdout")
}

fn print_summary(
    s: &AttackSummary,
    a: &AttackArgs,
    norm: Norm,
    l: &crate::common::Loaded,
    out: &std::path::Path,
    sanity: Option<&SanityReport>,
) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "model  {}", l.model_path.display())?;
    writeln!(o, "data   {} ({} samples)", l.data_path.display(), s.n)?;
    match &a.preset {
        Some(p) => writeln!(o, "attack preset {p} ({})", norm.name())?,
        None => writeln!(o, "attack {} ({})", a.attack, norm.name())?,
    }
    writeln!(o)?;
    writeln!(o, "clean accuracy   {:6.2} %", 100.0 * s.clean_accuracy)?;
    for p in &s.curve {
        writeln!(
            o,
            "robust accuracy  {:6.2} %   at ε = {}",
            100.0 * p.robust_accuracy,
            eps_label(p.eps)
        )?;
        // AutoAttack's log: robust accuracy after each stage.
        for st in p.stages.iter().flatten() {
            writeln!(
                o,
                "  after {:<10} {:6.2} %",
                st.attack,
                100.0 * st.robust_accuracy
            )?;
        }
    }
    if let Some(m) = s.median_min_norm {
        writeln!(
            o,
            "median smallest perturbation found: {m:.5} ({}); not found for {} samples",
            norm.name(),
            s.not_found
        )?;
    }
    if let Some(r) = sanity {
        writeln!(
            o,
            "sanity: {} monotonicity violation(s); unbounded attack left {} of {} checked sample(s) \
             robust; {} zero and {} non-finite gradient(s) of {}",
            r.monotone.violations.len(),
            r.unbounded.still_robust.len(),
            r.unbounded.checked,
            r.gradients.zero.len(),
            r.gradients.non_finite.len(),
            r.gradients.checked
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
