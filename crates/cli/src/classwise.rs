//! `faultline classwise`: per-class accuracy, confusion, CFPS/CFNS, flip rate and worst-class
//! figures for the clean data, an attack (per ε), common corruptions (per family × severity)
//! and targeted attacks toward each class; latent-space structure of the penultimate features;
//! SVG heatmaps and bar charts; a terminal ranking of the classes. The clean/corruption pass and
//! each attack run in their own sub-directories of DIR and resume or reuse what is already there.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use faultline::attacks::registry::Settings;
use faultline::attacks::Norm;
use faultline::run::attack::AttackConfig;
use faultline::run::classwise::{self, ClasswiseConfig, ClasswiseRun};

use crate::common::{load, parse_radii, Bar, DataArgs, ModelArgs, OutArgs};

/// Arguments of `faultline classwise`.
#[derive(Args, Debug)]
pub struct ClasswiseArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Attack (any of `faultline list`; a minimum-norm one is read off at each --eps), or none
    /// to skip attacks
    #[arg(short, long, default_value = "pgd", value_parser = attack_or_none())]
    pub attack: String,
    /// An attack ensemble instead of --attack, as in `faultline attack --preset` (standard:
    /// AutoAttack's APGD-CE → APGD-T → FAB-T → Square); untargeted only
    #[arg(long, value_name = "P", value_parser = crate::attack::preset_names(), conflicts_with = "attack")]
    pub preset: Option<String>,
    /// Threat model: linf, l2 or l1 [default: the attack's first]
    #[arg(long, value_name = "N")]
    pub norm: Option<Norm>,
    /// Attack radius or radii (the first one is used for targeted attacks) [default: by image
    /// shape and norm, as in `faultline attack`: 8/255 in L∞ for CIFAR-sized images]
    #[arg(long, value_delimiter = ',', value_name = "EPS")]
    pub eps: Option<Vec<String>>,
    /// Attack iterations [default: the attack's, as in `faultline attack`]
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Also attack toward every class (one targeted run of the attack per class)
    #[arg(long)]
    pub targeted: bool,
    /// Common corruptions to include: all, standard, extra or a list [default: none]
    #[arg(long, value_name = "LIST")]
    pub corruptions: Option<String>,
    /// Corruption severities
    #[arg(long, default_value = "1-5", value_name = "S")]
    pub severities: String,
    /// Seed of the random choices
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    /// Images per batch
    #[arg(long, default_value_t = 128, value_name = "B")]
    pub batch_size: usize,
    #[command(flatten)]
    pub out: OutArgs,
}

pub fn run(a: &ClasswiseArgs) -> Result<()> {
    let loaded = load(&a.model, &a.data)?;
    let info = loaded.data.info();
    let attack = (a.attack != "none" || a.preset.is_some())
        .then(|| -> Result<AttackConfig> {
            let cfg = AttackConfig {
                attack: a.attack.clone(),
                preset: a.preset.clone(),
                settings: Settings {
                    norm: a.norm,
                    steps: a.steps,
                    seed: a.seed,
                    ..Settings::default()
                },
                eps: parse_radii(&a.eps)?,
                ..AttackConfig::default()
            };
            cfg.build()?;
            Ok(cfg)
        })
        .transpose()?;
    let cfg = ClasswiseConfig {
        attack,
        targeted: a.targeted,
        targeted_attack: None,
        corruptions: crate::eval::plan(
            &a.corruptions,
            &a.severities,
            &None,
            a.seed,
            (info.height, info.width),
        )?,
        selection: a.data.selection(0)?,
        batch_size: a.batch_size,
    };
    let out = a.out.output("classwise");
    let r = classwise::run(&cfg, &loaded, &out, &Bar::new())?;
    print_ranking(&r, &out.dir).context("writing to stdout")
}

fn attack_or_none() -> clap::builder::PossibleValuesParser {
    let mut v: Vec<&str> = faultline::attacks::registry::names_list();
    v.push("none");
    clap::builder::PossibleValuesParser::new(v)
}

fn print_ranking(r: &ClasswiseRun, out: &Path) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.1}", 100.0 * x));
    let attack = r.ranking.first().and_then(|c| c.attack.clone());
    writeln!(
        o,
        "classes from most to least vulnerable{}",
        attack.map_or(String::new(), |a| format!(" (by accuracy under {a})"))
    )?;
    writeln!(
        o,
        "{:>4}  {:<14} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "rank", "class", "clean %", "attack %", "CFPS %", "corr. %", "reached %"
    )?;
    for (i, c) in r.ranking.iter().enumerate() {
        writeln!(
            o,
            "{:>4}  {:<14} {:>8} {:>8} {:>8} {:>8} {:>9}",
            i + 1,
            c.name.chars().take(14).collect::<String>(),
            pct(c.clean_accuracy),
            pct(c.attack_accuracy),
            pct(c.attack_cfps),
            pct(c.corruption_accuracy),
            pct(c.targeted_success_rate),
        )?;
    }
    writeln!(o)?;
    for c in &r.classwise[..1 + r.attack_reports] {
        let worst = c.worst_class.map_or("-".into(), |(k, a)| {
            format!("class {k} at {:.1} %", 100.0 * a)
        });
        writeln!(
            o,
            "{:<16} accuracy {:5.1} %, worst {worst}, flip rate {}",
            c.condition,
            100.0 * c.accuracy,
            c.flip_rate
                .map_or("-".into(), |f| format!("{:.1} %", 100.0 * f))
        )?;
    }
    writeln!(o, "\nwrote {}/run.json and SVG charts (confusion, cfps, class_accuracy, centroid_distance, latent_pca)", out.display())?;
    Ok(())
}
