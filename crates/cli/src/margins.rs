//! `faultline margins`: brittle-decision detection (Ngnawé et al., NeurIPS 2024). Input margins
//! from a minimum-norm attack against the predicted label, clean scores (logit margin,
//! probability margin, maximum probability, feature-space margin), their rank agreement
//! (Kendall τ-b, Spearman ρ with bootstrap intervals), detection of the non-robust samples
//! (AUROC, AUPR, FPR@95, a deployable threshold), the robust accuracy estimated from a small
//! attacked subset, and optionally a learned pseudo-margin. Per-sample records are appended as
//! batches finish, and a killed run resumes.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use faultline::attacks::registry::Settings;
use faultline::attacks::Norm;
use faultline::eps::{eps_label, parse_eps};
use faultline::margin::pseudo::{PseudoInput, PseudoParams};
use faultline::margin::report::ScoreReport;
use faultline::run::margins::{self, MarginsConfig, MarginsReport, PseudoSource};
use faultline::run::Loaded;
use faultline::subset::Selection;

use crate::common::{load, Bar, DataArgs, ModelArgs, OutArgs};

/// Arguments of `faultline margins`.
#[derive(Args, Debug)]
pub struct MarginsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Threat model of the margins: linf, l2 or l1 (l1: --attack fab only) [default: linf; cw:
    /// l2]
    #[arg(long, value_name = "N")]
    pub norm: Option<Norm>,
    /// A sample is non-robust when its input margin is at most ε [default: 8/255 for linf,
    /// 0.5 for l2, 12 for l1]
    #[arg(long, value_name = "EPS")]
    pub eps: Option<String>,
    /// Minimum-norm attack estimating the input margins: fab (the paper's), deepfool (fast) or
    /// cw (L2)
    #[arg(short, long, default_value = "fab", value_parser = ["fab", "deepfool", "cw"])]
    pub attack: String,
    /// Runs per sample for fab (the first from the clean image, the others at random)
    /// [default: 5]
    #[arg(long, value_name = "R")]
    pub restarts: Option<usize>,
    /// Iterations per run [default: fab 100, deepfool 50]
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Attack only a random subset of this many of the selected samples (all are scored); the
    /// robust accuracy of them all is then estimated from it [default: attack all]
    #[arg(long, value_name = "N")]
    pub attack_subset: Option<usize>,
    /// Attacked samples per round of the robust-accuracy estimate
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub estimate_size: usize,
    /// Learn a pseudo-margin from the logits or from the penultimate features
    #[arg(long, value_name = "FROM", num_args = 0..=1, default_missing_value = "logits", value_parser = ["logits", "features"])]
    pub pseudo_margin: Option<String>,
    /// Share of the attacked samples the pseudo-margin is fitted on (the rest evaluate it)
    #[arg(long, default_value_t = 0.5, value_name = "F")]
    pub fit_fraction: f64,
    /// Fit the pseudo-margin on the attacked samples of this other data set (e.g. training
    /// images; measured in DIR/fit) and judge it on every attacked sample of --data; the network,
    /// its input standardisation and its brittleness threshold are saved into DIR
    #[arg(long, value_name = "PATH", requires = "pseudo_margin")]
    pub fit_data: Option<std::path::PathBuf>,
    /// Samples of --fit-data to attack (class-stratified) [default: 1000]
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub fit_limit: usize,
    /// Split of --fit-data when it is a folder holding both (MNIST folder, cifar-10-batches-bin)
    #[arg(long, default_value = "train", value_parser = ["test", "train"])]
    pub fit_split: String,
    /// Apply the pseudo-margin saved in this earlier margins run directory to --data (no fitting)
    #[arg(long, value_name = "DIR", conflicts_with_all = ["pseudo_margin", "fit_data"])]
    pub pseudo_margin_from: Option<std::path::PathBuf>,
    /// Pseudo-margin training epochs (full batch, Adam)
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub epochs: usize,
    /// Pseudo-margin learning rate
    #[arg(long, default_value_t = 1e-4, value_name = "LR")]
    pub lr: f32,
    /// Pseudo-margin training loss: mse (on √d_in) or ranking (pairwise). Named apart from
    /// `attack --loss`, which is the attack's loss
    #[arg(long, default_value = "mse", value_parser = ["mse", "ranking"])]
    pub pseudo_loss: String,
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
    #[command(flatten)]
    pub out: OutArgs,
}

pub fn run(a: &MarginsArgs) -> Result<()> {
    // The pseudo-margin flags are checked even without --pseudo-margin: a typo never passes.
    if !(a.fit_fraction > 0.0 && a.fit_fraction < 1.0) {
        anyhow::bail!("--fit-fraction: must lie in (0, 1)");
    }
    let pseudo = a.pseudo_margin.as_deref().map(|from| PseudoParams {
        input: if from == "features" {
            PseudoInput::Features
        } else {
            PseudoInput::Logits
        },
        fit_fraction: a.fit_fraction,
        epochs: a.epochs,
        lr: a.lr,
        ranking: a.pseudo_loss == "ranking",
        seed: a.seed,
        ..PseudoParams::default()
    });
    let cfg = MarginsConfig {
        attack: a.attack.clone(),
        settings: Settings {
            // L∞ unless asked otherwise, as the paper; C&W works in L2 only.
            norm: a.norm.or((a.attack != "cw").then_some(Norm::Linf)),
            steps: a.steps,
            restarts: a.restarts,
            seed: a.seed,
            ..Settings::default()
        },
        eps: a.eps.as_deref().map(parse_eps).transpose()?,
        attack_subset: a.attack_subset,
        estimate_size: a.estimate_size,
        pseudo,
        pseudo_source: match (&a.fit_data, &a.pseudo_margin_from) {
            (Some(_), _) => PseudoSource::FitData(Selection {
                limit: Some(a.fit_limit),
                ..Selection::default()
            }),
            (_, Some(d)) => PseudoSource::From(d.clone()),
            _ => PseudoSource::Split,
        },
        keep_features: false,
        recall: a.recall,
        bootstrap: a.bootstrap,
        selection: a.data.selection(0)?,
        batch_size: a.batch_size,
    };
    let loaded = load(&a.model, &a.data)?;
    let fit = a
        .fit_data
        .as_ref()
        .map(|p| {
            let d = DataArgs {
                data: Some(p.clone()),
                split: a.fit_split.clone(),
                limit: None,
                indices: None,
                ..a.data.clone()
            };
            load(&a.model, &d)
        })
        .transpose()?;
    let out = a.out.output("margins");
    let (r, _) = margins::run_records(&cfg, &loaded, fit.as_ref(), &out, &Bar::new())?;
    print_summary(&r, &loaded, &out.dir).context("writing to stdout")
}

fn print_summary(r: &MarginsReport, l: &Loaded, out: &std::path::Path) -> std::io::Result<()> {
    let (rep, pseudo, eps) = (&r.report, r.pseudo_margin.as_ref(), r.eps);
    let mut o = std::io::stdout().lock();
    writeln!(o, "model  {}", l.model_path.display())?;
    writeln!(o, "data   {} ({} samples)", l.data_path.display(), rep.n)?;
    writeln!(
        o,
        "input margins: {} ({}), {} of {} attacked samples with a margin found; median {}",
        r.attack,
        r.norm.name(),
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
            "\npseudo-margin from {} ({}; {} fitted, {} held out); on the held-out samples:",
            p.input, p.source, p.fit_samples, p.eval_samples
        )?;
        row(&mut o, &p.before)?;
        row(&mut o, &p.after)?;
        if let Some(t) = p.flag_below {
            let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.1} %", 100.0 * v));
            writeln!(
                o,
                "deployed threshold (fit samples): brittle when pseudo-margin ≤ {t:.4}; on the held-out samples it flags {} of the non-robust and {} of the robust",
                f(p.held_out_flagged[0]),
                f(p.held_out_flagged[1])
            )?;
        }
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
    if let Some(sw) = &rep.subset_sweep {
        writeln!(
            o,
            "95 % interval width of the robust accuracy from N attacked samples (200 draws):"
        )?;
        for p in &sw.points {
            writeln!(
                o,
                "  N = {:>4}: measured directly {:5.1} points (binomial {:5.1}){}",
                p.size,
                100.0 * p.direct_width,
                100.0 * p.binomial_width,
                p.estimate_width.map_or(String::new(), |w| format!(
                    ", logit-margin estimate {:5.1}",
                    100.0 * w
                ))
            )?;
        }
        let need: Vec<String> = sw
            .samples_for_width
            .iter()
            .map(|[w, n]| format!("±{:.1} points: {n}", 50.0 * w))
            .collect();
        writeln!(
            o,
            "  attacked samples needed (binomial) for {}",
            need.join(", ")
        )?;
    }
    writeln!(
        o,
        "\nwrote {0}/run.json, {0}/samples.jsonl, {0}/margins_scatter.svg and {0}/roc.svg",
        out.display()
    )?;
    Ok(())
}
