//! `faultline attack`: robust accuracy under an adversarial attack (one ε, or a curve over a
//! list of ε), with per-sample records appended as batches finish and resumption after a kill.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use faultline::attacks::registry::Settings;
use faultline::attacks::{AttackLoss, Norm};
use faultline::eps::{eps_label, parse_fraction};
use faultline::run::attack::{self, AttackConfig, AttackReport};
use faultline::run::Loaded;

use crate::common::{load, parse_radii, Bar, DataArgs, ModelArgs, OutArgs};

/// Arguments of `faultline attack`.
#[derive(Args, Debug)]
pub struct AttackArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Attack (`faultline list` describes each): fgsm, pgd, mifgsm, apgd-ce, apgd-dlr, apgd-t,
    /// a3-ce, a3-t, fab-t, square (bounded), deepfool, fab or cw (minimum norm)
    #[arg(short, long, default_value = "pgd", value_parser = attack_names())]
    pub attack: String,
    /// An attack ensemble instead of --attack: standard = AutoAttack's standard version
    /// (APGD-CE → APGD-T → FAB-T → Square, each on the points still robust, AutoAttack's
    /// parameters); fast = A3-style adaptive APGD-CE → APGD-T (9 targets) with start directions
    /// learned from earlier successes and online discarding of hopeless samples. Robust
    /// accuracy and passes after each stage
    #[arg(long, value_name = "P", value_parser = preset_names(), conflicts_with = "attack")]
    pub preset: Option<String>,
    /// Skip the sanity checks for gradient masking (robust accuracy monotone in ε, an unbounded
    /// attack breaking every sample, non-zero gradients), which cost a few % more passes
    #[arg(long)]
    pub no_sanity: bool,
    /// Threat model: linf, l2 or l1 (`faultline list` gives each attack's) [default: the
    /// attack's first: linf; deepfool and cw: l2]
    #[arg(long, value_name = "N")]
    pub norm: Option<Norm>,
    /// Radius or radii on the [0, 1] scale, e.g. 8/255 or 1/255,2/255,4/255,8/255 (a robust-
    /// accuracy curve); for deepfool, where to read the curve off the norms found [default:
    /// 8/255 for linf, 0.5 for l2, 12 for l1 (RobustBench's CIFAR-10 L1 radius)]
    #[arg(long, value_delimiter = ',', value_name = "EPS")]
    pub eps: Option<Vec<String>>,
    /// Iterations [default: pgd 20, mifgsm 10, deepfool 50, apgd and fab 100, cw 300 per
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
    /// Loss ascended by pgd/mifgsm/fgsm: ce, dlr or margin [default: ce]
    #[arg(long, value_name = "L")]
    pub loss: Option<AttackLoss>,
    /// Any parameter of the attack (or of the preset's stages that have it) by the name
    /// `faultline list` prints, e.g. --param osd_keep=0.3 --param rho=0.8; repeatable
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_param)]
    pub param: Vec<(String, serde_json::Value)>,
    /// Seed of all random choices
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    /// Images per batch
    #[arg(long, default_value_t = 128, value_name = "B")]
    pub batch_size: usize,
    #[command(flatten)]
    pub out: OutArgs,
    /// Also write the returned images as DIR/adv_<k>.npy (float32 NCHW, one file per ε; row j is
    /// the j-th selected sample)
    #[arg(long)]
    pub save_adv: bool,
    /// Targeted attack toward this class index (success: classified as it) [default: untargeted]
    #[arg(long, value_name = "CLASS")]
    pub target: Option<usize>,
}

impl AttackArgs {
    /// The library configuration these arguments describe.
    pub fn config(&self) -> Result<AttackConfig> {
        Ok(AttackConfig {
            attack: self.attack.clone(),
            preset: self.preset.clone(),
            settings: Settings {
                norm: self.norm,
                steps: self.steps,
                step_size: self
                    .step_size
                    .as_deref()
                    .map(|s| parse_fraction("--step-size", s))
                    .transpose()?,
                restarts: self.restarts,
                random_start: self.random_start,
                loss: self.loss,
                seed: self.seed,
                params: self.param.clone(),
            },
            eps: parse_radii(&self.eps)?,
            target: self.target,
            sanity: !self.no_sanity,
            selection: self.data.selection(0)?,
            batch_size: self.batch_size,
            save_adv: self.save_adv,
            stages: None,
        })
    }
}

pub fn run(a: &AttackArgs) -> Result<()> {
    let cfg = a.config()?;
    // Refuse a misconfigured attack before loading anything.
    cfg.build()?;
    let loaded = load(&a.model, &a.data)?;
    let out = a.out.output("attack");
    let report = attack::run(&cfg, &loaded, &out, &Bar::new())?;
    print_summary(&report, &loaded, &out.dir).context("writing to stdout")
}

/// `KEY=VALUE`, the value read as JSON when it is (numbers, booleans) and as text otherwise.
pub fn parse_param(s: &str) -> std::result::Result<(String, serde_json::Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    let value = serde_json::from_str(v.trim()).unwrap_or_else(|_| v.trim().into());
    Ok((k.trim().to_string(), value))
}

/// The registered attack names, for clap.
pub fn attack_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(faultline::attacks::registry::names_list())
}

/// The preset names, for clap.
pub fn preset_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(faultline::attacks::PRESETS.iter().map(|p| p.name))
}

fn print_summary(r: &AttackReport, l: &Loaded, out: &std::path::Path) -> std::io::Result<()> {
    let (s, norm, sanity) = (&r.results, r.norm, r.sanity.as_ref());
    let mut o = std::io::stdout().lock();
    writeln!(o, "model  {}", l.model_path.display())?;
    writeln!(o, "data   {} ({} samples)", l.data_path.display(), s.n)?;
    let what = if faultline::attacks::PRESETS
        .iter()
        .any(|p| p.name == r.attack)
    {
        "attack preset"
    } else {
        "attack"
    };
    writeln!(o, "{what} {} ({})", r.attack, norm.name())?;
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
                "  after {:<10} {:6.2} %   ({} forward, {} backward passes)",
                st.attack,
                100.0 * st.robust_accuracy,
                st.forward,
                st.backward
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
