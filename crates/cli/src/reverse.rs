//! `faultline reverse`: reverse adversarial examples — a bounded attack run as loss descent
//! toward the true or the predicted label, on clean and corrupted images; accuracy before and
//! after per condition.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use faultline::attacks::registry::Settings;
use faultline::attacks::{AttackLoss, Norm};
use faultline::eps::{eps_label, parse_eps, parse_fraction};
use faultline::run::reverse::{self, ReverseConfig, ReverseReport, Toward};

use crate::common::{load, Bar, DataArgs, ModelArgs, OutArgs};

/// Arguments of `faultline reverse`.
#[derive(Args, Debug)]
pub struct ReverseArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Attack run as a descent: fgsm, pgd, mifgsm, apgd-ce, a3-ce or square
    #[arg(short, long, default_value = "pgd", value_parser = clap::builder::PossibleValuesParser::new(faultline::attacks::reverse::REVERSIBLE))]
    pub attack: String,
    /// The label descended toward: true (diagnostic upper bound) or predicted (usable at test
    /// time)
    #[arg(long, default_value = "true", value_parser = ["true", "predicted"])]
    pub label: String,
    /// Threat model: linf, l2 or l1 [default: linf]
    #[arg(long, value_name = "N")]
    pub norm: Option<Norm>,
    /// Radius on the [0, 1] scale [default: 8/255 for linf on CIFAR-sized images]
    #[arg(long, value_name = "EPS")]
    pub eps: Option<String>,
    /// Iterations [default: pgd 10 (methods.md §4.3 A), others their own]
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Absolute step size [default: ε/4 for pgd]
    #[arg(long, value_name = "A")]
    pub step_size: Option<String>,
    /// Runs per sample [default: 1]
    #[arg(long, value_name = "R")]
    pub restarts: Option<usize>,
    /// Start the first run at a random point of the ball
    #[arg(long)]
    pub random_start: bool,
    /// Loss descended by pgd/mifgsm/fgsm: ce or margin [default: ce]
    #[arg(long, value_name = "L")]
    pub loss: Option<AttackLoss>,
    /// Also run on corrupted copies (made in process): all, standard, extra or a list such as
    /// fog,snow [default: none]
    #[arg(long, value_name = "LIST")]
    pub corruptions: Option<String>,
    /// Corruption severities: a range such as 1-5 or a list such as 1,3,5
    #[arg(long, default_value = "3", value_name = "S")]
    pub severities: String,
    /// Corruption parameter table: cifar or imagenet [default: by image size]
    #[arg(long, value_name = "T", value_parser = ["cifar", "imagenet"])]
    pub table: Option<String>,
    /// Seed of all random choices (attack starts, random corruption families)
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    /// Images per batch
    #[arg(long, default_value_t = 128, value_name = "B")]
    pub batch_size: usize,
    #[command(flatten)]
    pub out: OutArgs,
}

pub fn run(a: &ReverseArgs) -> Result<()> {
    let settings = Settings {
        norm: a.norm,
        steps: a.steps,
        step_size: a
            .step_size
            .as_deref()
            .map(|s| parse_fraction("--step-size", s))
            .transpose()?,
        restarts: a.restarts,
        random_start: a.random_start,
        loss: a.loss,
        seed: a.seed,
        params: Vec::new(),
    };
    // Refuse a misconfigured attack before loading anything.
    faultline::attacks::reverse::build(&a.attack, &settings)?;
    let loaded = load(&a.model, &a.data)?;
    let info = loaded.data.info();
    let cfg = ReverseConfig {
        attack: a.attack.clone(),
        settings,
        eps: a.eps.as_deref().map(parse_eps).transpose()?,
        label: a.label.parse::<Toward>()?,
        corruptions: crate::eval::plan(
            &a.corruptions,
            &a.severities,
            &a.table,
            a.seed,
            (info.height, info.width),
        )?,
        selection: a.data.selection(0)?,
        batch_size: a.batch_size,
    };
    let out = a.out.output("reverse");
    let report = reverse::run(&cfg, &loaded, &out, &Bar::new())?;
    print_summary(&report, &out.dir).context("writing to stdout")
}

fn print_summary(r: &ReverseReport, out: &std::path::Path) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "reverse {} ({}, ε = {}) toward the {} label",
        r.attack,
        r.norm.name(),
        eps_label(r.eps),
        r.label.name()
    )?;
    writeln!(
        o,
        "{:<22} {:>6} {:>9} {:>9} {:>9} {:>7}",
        "condition", "n", "before", "after", "corrected", "broken"
    )?;
    for c in &r.conditions {
        writeln!(
            o,
            "{:<22} {:>6} {:>8.2}% {:>8.2}% {:>9} {:>7}",
            c.condition,
            c.n,
            100.0 * c.accuracy_before,
            100.0 * c.accuracy_after,
            c.corrected,
            c.broken
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
