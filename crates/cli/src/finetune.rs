//! `faultline finetune`: (adversarial) fine-tuning of an ONNX classifier, written back as ONNX.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use faultline::eps::{eps_label, parse_eps};
use faultline::fair::ClassRobustness;
use faultline::run::finetune::{
    self, parse_augment, Adversarial, BatchNormChoice, FinetuneConfig, FinetuneReport, Validation,
};
use faultline::run::DataCard;
use faultline::train::{OptimizerParams, Schedule};

use crate::common::{load, Bar, DataArgs, ModelArgs, OutArgs};

/// Arguments of `faultline finetune`.
#[derive(Args, Debug)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Training data (any format --data takes; `--split train` for CIFAR/MNIST folders)
    #[command(flatten)]
    pub data: DataArgs,
    /// Passes over the training samples
    #[arg(long, default_value_t = 1, value_name = "E")]
    pub epochs: usize,
    /// Images per optimiser step
    #[arg(long, default_value_t = 128, value_name = "B")]
    pub batch_size: usize,
    /// Base learning rate
    #[arg(long, default_value_t = 0.002, value_name = "LR")]
    pub lr: f32,
    /// Optimiser: sgd (momentum 0.9, weight decay 5e-4), adam, adamw (weight decay 0.01)
    #[arg(long, default_value = "sgd", value_parser = ["sgd", "adam", "adamw"])]
    pub optimizer: String,
    /// SGD momentum [default: 0.9]
    #[arg(long, value_name = "M")]
    pub momentum: Option<f32>,
    /// SGD: Nesterov momentum
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay of weights (not biases or batch-norm parameters) [default: the optimiser's]
    #[arg(long, value_name = "L")]
    pub weight_decay: Option<f32>,
    /// Learning-rate schedule: constant, step:EVERY[:GAMMA], cosine[:MIN_FACTOR],
    /// one-cycle[:PCT[:DIV[:FINAL_DIV]]]
    #[arg(long, default_value = "cosine", value_name = "S")]
    pub schedule: String,
    /// Batch norms: train (batch statistics, running ones updated) or frozen
    #[arg(long, default_value = "train", value_parser = ["train", "frozen"])]
    pub batch_norm: String,
    /// Running-statistics momentum of training batch norms (PyTorch's convention)
    #[arg(long, default_value_t = 0.1, value_name = "M")]
    pub bn_momentum: f32,
    /// Train only the last K operators with parameters [default: all]
    #[arg(long, value_name = "K")]
    pub train_last: Option<usize>,
    /// Clip the gradient to this global L2 norm [default: no clipping]
    #[arg(long, value_name = "C")]
    pub clip_grad_norm: Option<f32>,
    /// Augmentations: crop[:PAD], flip, none, and corruption names or groups with optional
    /// severities (gaussian_noise:1-3, standard) [default: flip for colour images, none for
    /// grey ones: digits and letters are not mirror-symmetric]
    #[arg(long, value_name = "LIST")]
    pub augment: Option<String>,
    /// Probability that a sample takes one of the --augment corruptions
    #[arg(long, default_value_t = 0.5, value_name = "P")]
    pub corrupt_prob: f32,
    /// Adversarial training with this registered bounded attack (pgd: Madry's PGD)
    #[arg(long, value_name = "ATTACK")]
    pub adversarial: Option<String>,
    /// L∞ radius of --adversarial, e.g. 2/255 or 0.0078 [default: a quarter of the data set's
    /// evaluation radius: 2/255 for CIFAR-sized images, 0.075 for MNIST-like ones, 1/255 above
    /// 64 px]
    #[arg(long, value_name = "EPS")]
    pub eps: Option<String>,
    /// Attack iterations during training
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub steps: usize,
    /// Fraction of the run over which ε grows linearly from 0 to --eps
    #[arg(long, default_value_t = 0.5, value_name = "F")]
    pub eps_warmup: f32,
    /// Fraction of each batch replaced by adversarial examples
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub adv_fraction: f32,
    /// TRADES loss with this β (needs --adversarial)
    #[arg(long, value_name = "BETA")]
    pub trades: Option<f32>,
    /// Per-class weights of the (adversarial) cross-entropy: W,W,… one per class, a FILE of
    /// them (commas or lines), or cfps:DIR — FAIR-style re-weighting from a classwise run,
    /// w_c = 0.5 + 0.5·e_c/ē with e_c the class's robust error under its attack
    #[arg(long, value_name = "W|FILE|cfps:DIR")]
    pub class_weights: Option<String>,
    /// Per-class adversarial radii ε_c = f_c·ε (pgd): F,F,… one per class, a FILE, or cfps:DIR —
    /// FAIR-TAT's class-adaptive ε from a classwise run, f_c = 0.5 + robust accuracy of c
    #[arg(long, value_name = "F|FILE|cfps:DIR", requires = "adversarial")]
    pub class_eps: Option<String>,
    /// Validation data (clean and, with --adversarial, robust accuracy after every epoch)
    #[arg(long, value_name = "PATH")]
    pub val: Option<PathBuf>,
    /// Validation samples, class-stratified [default: all]
    #[arg(long, value_name = "N")]
    pub val_limit: Option<usize>,
    /// PGD iterations of the robust validation accuracy
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub val_steps: usize,
    /// Seed of every random choice
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    #[command(flatten)]
    pub out: OutArgs,
}

impl FinetuneArgs {
    /// The configuration for images of shape `image` (the defaults of --augment and --eps fit it).
    fn config(&self, image: [usize; 3]) -> Result<FinetuneConfig> {
        let mut optimizer = match self.optimizer.as_str() {
            "adam" => OptimizerParams::adam(),
            "adamw" => OptimizerParams::adamw(),
            _ => OptimizerParams::sgd(),
        };
        match &mut optimizer {
            OptimizerParams::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                if let Some(m) = self.momentum {
                    *momentum = m;
                }
                *nesterov = self.nesterov;
                if let Some(w) = self.weight_decay {
                    *weight_decay = w;
                }
            }
            OptimizerParams::Adam { weight_decay, .. }
            | OptimizerParams::AdamW { weight_decay, .. } => {
                if self.momentum.is_some() || self.nesterov {
                    anyhow::bail!(
                        "--momentum and --nesterov are SGD settings; --optimizer is {}",
                        self.optimizer
                    );
                }
                if let Some(w) = self.weight_decay {
                    *weight_decay = w;
                }
            }
        }
        let class_weights = self
            .class_weights
            .as_deref()
            .map(|s| class_values("--class-weights", s, ClassRobustness::weights))
            .transpose()?;
        let class_eps = self
            .class_eps
            .as_deref()
            .map(|s| class_values("--class-eps", s, ClassRobustness::eps_factors))
            .transpose()?;
        Ok(FinetuneConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            optimizer,
            schedule: Schedule::parse(&self.schedule)
                .map_err(|e| anyhow::anyhow!("--schedule: {e}"))?,
            batch_norm: match self.batch_norm.as_str() {
                "frozen" => BatchNormChoice::Frozen,
                _ => BatchNormChoice::Train {
                    momentum: self.bn_momentum,
                },
            },
            train_last: self.train_last,
            train_prefix: None,
            clip_grad_norm: self.clip_grad_norm,
            augment: match &self.augment {
                Some(a) => parse_augment(a)?,
                None => finetune::default_augment(image),
            },
            corrupt_prob: self.corrupt_prob,
            adversarial: self
                .adversarial
                .as_ref()
                .map(|a| -> Result<Adversarial> {
                    Ok(Adversarial {
                        attack: a.clone(),
                        eps: match &self.eps {
                            Some(e) => parse_eps(e)?,
                            None => finetune::default_adversarial_eps(image),
                        },
                        steps: self.steps,
                        fraction: self.adv_fraction,
                        warmup: self.eps_warmup,
                    })
                })
                .transpose()?,
            trades: self.trades,
            class_weights,
            class_eps,
            selection: self.data.selection(self.seed)?,
            extra: Vec::new(),
            val_limit: self.val_limit,
            val_steps: self.val_steps,
            seed: self.seed,
        })
    }
}

/// One value per class: `cfps:DIR` (a classwise run, through `rule`), a file of numbers
/// (commas or lines) or a comma-separated list.
fn class_values(
    flag: &str,
    spec: &str,
    rule: fn(&ClassRobustness) -> Vec<f32>,
) -> Result<Vec<f32>> {
    if let Some(dir) = spec.strip_prefix("cfps:") {
        let r = ClassRobustness::from_run(std::path::Path::new(dir))
            .with_context(|| format!("{flag} {spec}"))?;
        let v = rule(&r);
        eprintln!(
            "{flag}: {} from {} (robust accuracy per class under {})",
            v.iter()
                .map(|w| format!("{w:.3}"))
                .collect::<Vec<_>>()
                .join(","),
            dir,
            r.condition
        );
        return Ok(v);
    }
    let text = if std::path::Path::new(spec).is_file() {
        std::fs::read_to_string(spec).with_context(|| format!("{flag}: reading {spec}"))?
    } else {
        spec.to_string()
    };
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<f32>()
                .with_context(|| format!("{flag}: '{v}' is not a number"))
        })
        .collect()
}

pub fn run(args: &FinetuneArgs) -> Result<()> {
    let loaded = load(&args.model, &args.data)?;
    let info = loaded.data.info();
    let image = [info.channels, info.height, info.width];
    let cfg = args.config(image)?;
    cfg.check()?;
    if args.augment.is_none() && cfg.augment.is_empty() {
        eprintln!("no augmentation by default for grey images; pass --augment to choose");
    }
    if let (Some(a), None) = (&cfg.adversarial, &args.eps) {
        eprintln!(
            "ε defaults to {} (linf) for {}×{}×{} images; pass --eps to choose",
            eps_label(a.eps),
            image[0],
            image[1],
            image[2]
        );
    }
    let val_data = args
        .val
        .as_ref()
        .map(|p| {
            faultline::data::open(p, &args.data.held_out_options())
                .with_context(|| format!("opening --val {}", p.display()))
        })
        .transpose()?;
    let val = match (&val_data, &args.val) {
        (Some(d), Some(p)) => Some(Validation {
            data: d.as_ref(),
            card: DataCard::of(d.as_ref(), p),
        }),
        _ => None,
    };
    let out = args.out.output("finetune");
    let report = finetune::run(&cfg, &loaded, val.as_ref(), &out, &Bar::new())
        .with_context(|| format!("fine-tuning {}", loaded.model_path.display()))?;
    print(&report, &cfg, &out.dir).context("writing to stdout")
}

fn print(r: &FinetuneReport, cfg: &FinetuneConfig, dir: &std::path::Path) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "{:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "epoch", "loss", "train %", "val %", "robust %", "img/s"
    )?;
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}", 100.0 * v));
    for e in &r.epochs {
        writeln!(
            o,
            "{:>5} {:>9.4} {:>9.2} {:>9} {:>9} {:>9.0}",
            e.epoch,
            e.loss,
            100.0 * e.train_accuracy,
            pct(e.val_clean_accuracy),
            pct(e.val_robust_accuracy),
            e.images_per_second
        )?;
    }
    if let Some(b) = &r.before {
        writeln!(
            o,
            "before fine-tuning: val {} %, robust {} %",
            pct(Some(b.clean_accuracy)),
            pct(b.robust_accuracy)
        )?;
    }
    if let Some(a) = &cfg.adversarial {
        writeln!(
            o,
            "adversarial training: {} at ε = {}, {} steps",
            a.attack,
            eps_label(a.eps),
            a.steps
        )?;
    }
    writeln!(
        o,
        "{} of {} parameters trained; {:.0} img/s; peak memory {}",
        r.trained_params,
        r.trained_params + r.frozen_params,
        r.images_per_second,
        r.peak_memory_mib
            .map_or("-".into(), |m| format!("{m:.0} MiB"))
    )?;
    writeln!(o, "model: {}", r.model_out.display())?;
    writeln!(o, "run record: {}", dir.join("run.json").display())
}
