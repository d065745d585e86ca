//! `faultline weak` (weak-robust training samples, strengths and weaknesses) and
//! `faultline harden` (fine-tuning against those weaknesses).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use faultline::corruption::{parse_kinds, parse_severities};
use faultline::eps::parse_eps;
use faultline::eval::Perturbation;
use faultline::run::weak::{self, HardenConfig, Noise, ScoreKind, TestSet, WeakConfig};
use faultline::run::DataCard;

use crate::common::{load, Bar, DataArgs, ModelArgs, OutArgs};

/// The perturbation types of `--corruptions`, `--severities`, `--attacks` and `--attack-eps`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Corruption families of the strengths-and-weaknesses table: all, standard, extra, a list, or none
    #[arg(long, default_value = "standard", value_name = "LIST")]
    pub corruptions: String,
    /// Their severities
    #[arg(long, default_value = "1,3,5", value_name = "S")]
    pub severities: String,
    /// Bounded attacks of the table (L∞), comma-separated, or none
    #[arg(long, default_value = "fgsm,pgd", value_name = "LIST")]
    pub attacks: String,
    /// Their radii
    #[arg(long, default_value = "1/255,2/255", value_name = "EPS")]
    pub attack_eps: String,
    /// Test data, evaluated under every perturbation next to the weak set
    #[arg(long, value_name = "PATH")]
    pub test: Option<PathBuf>,
    /// Test samples, class-stratified
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub test_limit: usize,
}

impl PlanArgs {
    fn perturbations(&self) -> Result<Vec<Perturbation>> {
        let mut v = Vec::new();
        if self.corruptions != "none" {
            let sev = parse_severities(&self.severities)?;
            for k in parse_kinds(&self.corruptions)? {
                for &s in &sev {
                    v.push(Perturbation::Corruption {
                        name: k.name().to_string(),
                        severity: s,
                    });
                }
            }
        }
        if self.attacks != "none" {
            let eps = self
                .attack_eps
                .split(',')
                .map(|e| parse_eps(e.trim()))
                .collect::<faultline::Result<Vec<f32>>>()?;
            for a in self.attacks.split(',').map(str::trim) {
                for &e in &eps {
                    v.push(Perturbation::Attack {
                        name: a.to_string(),
                        eps: e,
                        steps: None,
                    });
                }
            }
        }
        Ok(v)
    }
}

/// Arguments of `faultline weak`.
#[derive(Args, Debug)]
pub struct WeakArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Training data to score
    #[command(flatten)]
    pub data: DataArgs,
    /// Neighbours per ε
    #[arg(long, default_value_t = 32, value_name = "Q")]
    pub q: usize,
    /// ε grid of the neighbours
    #[arg(long, default_value = "1/255,2/255,4/255,8/255", value_name = "EPS")]
    pub eps: String,
    /// Direction of the neighbours: uniform (signed, L∞) or gaussian
    #[arg(long, default_value = "uniform", value_parser = ["uniform", "gaussian"])]
    pub noise: String,
    /// Score: ms (mean misprediction score of the neighbours), logit (negated logit margin),
    /// margin (negated DeepFool L∞ margin)
    #[arg(long, default_value = "ms", value_parser = ["ms", "logit", "margin"])]
    pub score: String,
    /// Fraction of the scored samples kept as the weak set
    #[arg(long, default_value_t = 0.1, value_name = "F")]
    pub fraction: f32,
    /// Keep the class mix (class) or take the globally weakest (none)
    #[arg(long, default_value = "class", value_parser = ["class", "none"])]
    pub stratify: String,
    /// Families named as weaknesses and as strengths
    #[arg(long, default_value_t = 3, value_name = "K")]
    pub top: usize,
    /// Clean samples per batch (each brings Q × |ε grid| neighbours)
    #[arg(long, default_value_t = 16, value_name = "B")]
    pub batch_size: usize,
    /// Seed of every random choice
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    #[command(flatten)]
    pub plan: PlanArgs,
    #[command(flatten)]
    pub out: OutArgs,
}

fn open_test(
    args: &PlanArgs,
    data: &DataArgs,
) -> Result<Option<(Box<dyn faultline::data::Dataset>, PathBuf)>> {
    args.test
        .as_ref()
        .map(|p| {
            faultline::data::open(p, &data.held_out_options())
                .with_context(|| format!("opening --test {}", p.display()))
                .map(|d| (d, p.clone()))
        })
        .transpose()
}

pub fn run(args: &WeakArgs) -> Result<()> {
    let cfg = WeakConfig {
        selection: args.data.selection(args.seed)?,
        batch_size: args.batch_size,
        q: args.q,
        eps: args
            .eps
            .split(',')
            .map(|e| parse_eps(e.trim()))
            .collect::<faultline::Result<Vec<f32>>>()?,
        noise: if args.noise == "gaussian" {
            Noise::Gaussian
        } else {
            Noise::Uniform
        },
        score: match args.score.as_str() {
            "logit" => ScoreKind::Logit,
            "margin" => ScoreKind::Margin,
            _ => ScoreKind::Ms,
        },
        fraction: args.fraction,
        stratify: args.stratify == "class",
        perturbations: args.plan.perturbations()?,
        test_limit: Some(args.plan.test_limit),
        top: args.top,
        seed: args.seed,
    };
    cfg.check()?;
    let loaded = load(&args.model, &args.data)?;
    let test_data = open_test(&args.plan, &args.data)?;
    let test = test_data.as_ref().map(|(d, p)| TestSet {
        data: d.as_ref(),
        card: DataCard::of(d.as_ref(), p),
    });
    let out = args.out.output("weak");
    let r = weak::run(&cfg, &loaded, test.as_ref(), &out, &Bar::new())
        .with_context(|| format!("scoring {}", loaded.data_path.display()))?;
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "{:<26} {:>8} {:>8} {:>8}",
        "perturbation", "weak %", "random %", "test %"
    )?;
    for c in &r.weak_vs_random {
        let t = c.test.map_or("-".into(), |t| format!("{:.1}", 100.0 * t));
        writeln!(
            o,
            "{:<26} {:>8.1} {:>8.1} {:>8}",
            c.perturbation,
            100.0 * c.weak,
            100.0 * c.random,
            t
        )?;
    }
    writeln!(
        o,
        "weak set: {} of {} clean-correct samples ({:.1} %); {} of {} perturbation types at least 20 points below the random subset",
        r.weak_count,
        r.scored,
        100.0 * r.weak_fraction,
        r.gap_20_points,
        r.weak_vs_random.len() - 1
    )?;
    writeln!(o, "weaknesses (ν): {}", r.weaknesses.join(", "))?;
    writeln!(o, "strengths (ρ): {}", r.strengths.join(", "))?;
    writeln!(
        o,
        "corruption weaknesses (what harden trains against): {}",
        r.corruption_weaknesses.join(", ")
    )?;
    writeln!(
        o,
        "scoring: {:.1} samples/s ({} threads)",
        r.samples_per_second, r.threads
    )?;
    writeln!(o, "weak set: {}", out.file("weak_indices.txt").display())?;
    writeln!(o, "run record: {}", out.file("run.json").display())?;
    Ok(())
}

/// Arguments of `faultline harden`.
#[derive(Args, Debug)]
pub struct HardenArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Training data (the same the `weak` run scored)
    #[command(flatten)]
    pub data: DataArgs,
    /// The `weak` run directory
    #[arg(long, value_name = "DIR")]
    pub weak: PathBuf,
    /// Passes over the training samples
    #[arg(long, default_value_t = 1, value_name = "E")]
    pub epochs: usize,
    /// Base learning rate (lower than finetune's 0.002: with the corruption augmentation, 0.002
    /// cost the shared ResNet-20 13 points of clean accuracy in one epoch, 0.001 none)
    #[arg(long, default_value_t = 0.001, value_name = "LR")]
    pub lr: f32,
    /// Extra copies of each weak sample in the training samples
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub weak_copies: usize,
    /// Severities of the weaknesses' corruptions in training
    #[arg(long, default_value = "1-5", value_name = "S")]
    pub train_severities: String,
    /// Probability that a training sample takes one of the weakness corruptions
    #[arg(long, default_value_t = 0.3, value_name = "P")]
    pub corrupt_prob: f32,
    /// Also train against the attacks among the weaknesses (PGD on half of each batch)
    #[arg(long)]
    pub with_attacks: bool,
    /// Seed of every random choice
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    #[command(flatten)]
    pub plan: PlanArgs,
    #[command(flatten)]
    pub out: OutArgs,
}

pub fn harden(args: &HardenArgs) -> Result<()> {
    let mut cfg = HardenConfig {
        weak_copies: args.weak_copies,
        severities: parse_severities(&args.train_severities)?,
        perturbations: args.plan.perturbations()?,
        test_limit: Some(args.plan.test_limit),
        attacks: args.with_attacks,
        ..HardenConfig::default()
    };
    cfg.finetune.epochs = args.epochs;
    cfg.finetune.lr = args.lr;
    cfg.finetune.selection = args.data.selection(args.seed)?;
    cfg.finetune.corrupt_prob = args.corrupt_prob;
    cfg.finetune.seed = args.seed;
    cfg.finetune.check()?;
    if args.plan.test.is_none() {
        anyhow::bail!("--test: harden reports before and after on a test set; give one");
    }
    let loaded = load(&args.model, &args.data)?;
    let info = loaded.data.info();
    cfg.finetune.augment =
        faultline::run::finetune::default_augment([info.channels, info.height, info.width]);
    let (d, p) = open_test(&args.plan, &args.data)?.expect("--test given");
    let test = TestSet {
        data: d.as_ref(),
        card: DataCard::of(d.as_ref(), &p),
    };
    let out = args.out.output("harden");
    let r = weak::harden(&cfg, &loaded, &args.weak, &test, &out, &Bar::new())
        .with_context(|| format!("hardening {}", loaded.model_path.display()))?;
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "{:<18} {:>9} {:>9} {:>8}",
        "family", "before %", "after %", ""
    )?;
    for f in &r.families {
        writeln!(
            o,
            "{:<18} {:>9.1} {:>9.1} {:>8}",
            f.family,
            100.0 * f.before,
            100.0 * f.after,
            if f.held_out {
                "held out"
            } else if f.family == "clean" {
                ""
            } else {
                "trained"
            }
        )?;
    }
    writeln!(o, "trained against: {}", r.trained_against.join(", "))?;
    if let Some(g) = r.gain_on_weakest {
        writeln!(
            o,
            "weakest trained-against family: {:+.1} points; clean {:+.1} points",
            100.0 * g,
            100.0 * r.clean_change
        )?;
    }
    writeln!(o, "model: {}", r.model_out.display())?;
    writeln!(o, "run record: {}", out.file("run.json").display())?;
    Ok(())
}
