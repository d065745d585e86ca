//! `audit`: every analysis in one process on one loaded model and data set, with a cost estimate
//! up front and an HTML report at the end ([`crate::report`]).
//!
//! Each section is a normal run directory of its command under the audit directory, so it is
//! resumable on its own and a later `merge` or `report` reads it like any other run:
//!
//! | section | command | what |
//! |---|---|---|
//! | `eval/` | `eval` | clean accuracy and the 19 corruptions × 5 severities |
//! | `attack/` | `attack` | the preset's ensemble over the ε curve, with the sanity checks |
//! | `escape/` | `attack` | `thorough`: samples with a zero gradient still robust, attacked gradient-free and from random starts |
//! | `classwise/` | `classwise` | per-class figures, CFPS, targeted reachability (reads `eval/` and `attack/` back) |
//! | `margins/` | `margins` | input against logit margins, brittle-sample detection and its threshold |
//! | `metrics/` | `metrics` | `standard`, `thorough`: the metric suite (white-box PGD at the largest ε) |
//! | `weak/` | `weak` | with a training set: weak-robust training samples |
//! | `gallery/` | – | clean, adversarial and corrupted images of a few samples (PNG) |
//!
//! `DIR/run.json` ([`AuditReport`]) lists the sections with their directories and embeds the
//! findings; `DIR/report.html` is built from the section directories alone. An audit re-run with
//! the same settings reads finished sections back instead of recomputing them and resumes an
//! unfinished one from its records. Every section takes the audit's [`Selection`], so whatever
//! the selection does (a limit, an index file) applies to all of them.
//!
//! Presets, with their cost per selected sample in model passes (F forward, B forward + input
//! gradient; attack budgets are upper bounds: a sample an earlier stage or a smaller ε broke is
//! not attacked again, so an undefended model costs a small fraction of them; K classes, here 10):
//!
//! | preset | ε curve | ensemble (per ε) | margins | targeted (10 targets) | metrics | passes per sample (K = 10) |
//! |---|---|---|---|---|---|---|
//! | `quick` | ε/2, ε | APGD-CE 20 → APGD-T 20 × 9 targets | DeepFool (50 steps) | PGD 5 | – | 193 F + 2 × 200 B + 500 B + 50 B |
//! | `standard` | ε/4, ε/2, ε | AutoAttack: APGD-CE 100 → APGD-T 100 × 9 → FAB-T 100 × 9 → Square 5,000 | FAB (5 × 100) | PGD 10 | yes | ≈ 3 × (5,000 F + 1,900 B) + … |
//! | `thorough` | ε/8 … ε | APGD-CE 100 × 5 restarts → APGD-T 100 × 9 → FAB-T 100 × 9 → Square 10,000 × 2 | FAB (5 × 100) | PGD 20 | yes | ≈ 4 × (20,000 F + 2,300 B) + escape + … |
//!
//! [`estimate`] turns these counts into time from a measured warm-up and prints them before
//! anything runs (`--dry-run` prints only that).

use std::path::{Path, PathBuf};
use std::time::Instant;

use faultline_attacks::registry::Settings;
use faultline_attacks::Norm;
use faultline_engine::Loss;
use serde::Serialize;
use serde_json::{json, Value};

use crate::corruption::{CorruptionKind, CorruptionPlan};
use crate::eps::eps_label;
use crate::error::{io, setting, Error, Result};
use crate::model::ModelCard;
use crate::record::{Condition, SampleRecord};
use crate::report::{self, Findings};
use crate::run::attack::{self, default_eps, AttackConfig, StageSpec};
use crate::run::classwise::{self, ClasswiseConfig};
use crate::run::eval::{self, EvalConfig};
use crate::run::margins::{self, MarginsConfig};
use crate::run::metrics::{self, MetricsConfig};
use crate::run::weak::{self, TestSet, WeakConfig};
use crate::run::{check_batch_size, threads, DataCard, Loaded, Output, Progress};
use crate::rundir::{settings_hash, RunDir};
use crate::subset::{read_batches, Selection};

/// How hard the audit attacks (see the module documentation for the cost of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// A first look in about a minute on the demo: short APGD-CE → APGD-T at two radii,
    /// DeepFool margins, no metric suite.
    Quick,
    /// AutoAttack's standard ensemble at three radii, FAB margins, the metric suite.
    Standard,
    /// `standard` with restarts, a longer Square stage, four radii and the escape for points
    /// with a vanishing gradient.
    Thorough,
}

impl Preset {
    /// Parses `quick`, `standard` or `thorough`.
    pub fn parse(s: &str) -> Result<Preset> {
        match s {
            "quick" => Ok(Preset::Quick),
            "standard" => Ok(Preset::Standard),
            "thorough" => Ok(Preset::Thorough),
            _ => Err(setting(
                "--preset",
                format!("unknown preset '{s}': use quick, standard or thorough"),
            )),
        }
    }
    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Quick => "quick",
            Preset::Standard => "standard",
            Preset::Thorough => "thorough",
        }
    }
    /// The ensemble's stages.
    pub fn stages(self) -> Vec<StageSpec> {
        match self {
            Preset::Quick => vec![
                StageSpec::new("apgd-ce").budget(20, 1),
                StageSpec::new("apgd-t").budget(20, 1),
            ],
            Preset::Standard => vec![
                StageSpec::new("apgd-ce").budget(100, 1),
                StageSpec::new("apgd-t").budget(100, 1),
                StageSpec::new("fab-t").budget(100, 1),
                StageSpec::new("square").budget(5000, 1),
            ],
            Preset::Thorough => vec![
                StageSpec::new("apgd-ce").budget(100, 5),
                StageSpec::new("apgd-t").budget(100, 1),
                StageSpec::new("fab-t").budget(100, 1),
                StageSpec::new("square").budget(10_000, 2),
            ],
        }
    }
    /// The ε curve as fractions of the data set's default radius.
    pub fn curve(self) -> &'static [f32] {
        match self {
            Preset::Quick => &[0.5, 1.0],
            Preset::Standard => &[0.25, 0.5, 1.0],
            Preset::Thorough => &[0.125, 0.25, 0.5, 1.0],
        }
    }
    /// The minimum-norm attack of the margins section.
    fn margins_attack(self) -> &'static str {
        match self {
            Preset::Quick => "deepfool",
            _ => "fab",
        }
    }
    /// PGD steps of each targeted run of the class-wise section.
    fn targeted_steps(self) -> usize {
        match self {
            Preset::Quick => 5,
            Preset::Standard => 10,
            Preset::Thorough => 20,
        }
    }
}

/// Settings of `audit`.
#[derive(Debug, Clone, Serialize)]
pub struct AuditConfig {
    /// Cost against strength.
    pub preset: Preset,
    /// Threat model of the attacks and margins.
    pub norm: Norm,
    /// Radii [default: the preset's fractions of the data set's default radius, see
    /// [`default_eps`]].
    pub eps: Vec<f32>,
    /// The samples audited, by every section [default: all].
    pub selection: Selection,
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of the attacks, corruptions and resampling.
    pub seed: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            preset: Preset::Quick,
            norm: Norm::Linf,
            eps: Vec::new(),
            selection: Selection::default(),
            batch_size: 128,
            seed: 0,
        }
    }
}

/// The configuration of every section, derived from an [`AuditConfig`] and the data.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Radii, ascending.
    pub eps: Vec<f32>,
    /// The radius of the headline figures, the margins and the targeted runs (the largest).
    pub main_eps: f32,
    /// The corruption plan of `eval/`.
    pub corruptions: CorruptionPlan,
    /// `attack/`.
    pub attack: AttackConfig,
    /// `classwise/`.
    pub classwise: ClasswiseConfig,
    /// `margins/`.
    pub margins: MarginsConfig,
    /// `metrics/` (standard, thorough).
    pub metrics: Option<MetricsConfig>,
    /// `weak/` (with a training set).
    pub weak: Option<WeakConfig>,
}

impl AuditConfig {
    /// Every section's configuration for `loaded` (with a training set: also `weak`).
    pub fn plan(&self, loaded: &Loaded, train: bool) -> Result<Plan> {
        check_batch_size(self.batch_size)?;
        if self.norm == Norm::L1 {
            return Err(setting(
                "--norm",
                "audit runs in linf or l2 (APGD and DeepFool have no L1 version)",
            ));
        }
        let info = loaded.data.info();
        let image = [info.channels, info.height, info.width];
        let base = default_eps(self.norm, image);
        let eps: Vec<f32> = if self.eps.is_empty() {
            self.preset.curve().iter().map(|f| f * base).collect()
        } else {
            self.eps.clone()
        };
        let norm_settings = Settings {
            norm: Some(self.norm),
            seed: self.seed,
            ..Settings::default()
        };
        let attack = AttackConfig {
            attack: format!("audit-{}", self.preset.name()),
            eps,
            sanity: true,
            selection: self.selection.clone(),
            batch_size: self.batch_size,
            save_adv: true,
            stages: Some(self.preset.stages()),
            settings: norm_settings.clone(),
            ..AttackConfig::default()
        };
        let eps = attack.radii(self.norm, image)?;
        let main_eps = *eps.last().unwrap_or(&base);
        let corruptions =
            CorruptionPlan::parse("all", "1-5", None, self.seed, (info.height, info.width))?;
        let targeted = AttackConfig {
            attack: "pgd".into(),
            settings: Settings {
                steps: Some(self.preset.targeted_steps()),
                ..norm_settings.clone()
            },
            eps: vec![main_eps],
            sanity: false,
            selection: self.selection.clone(),
            batch_size: self.batch_size,
            ..AttackConfig::default()
        };
        let classwise = ClasswiseConfig {
            attack: Some(attack.clone()),
            targeted: true,
            targeted_attack: Some(targeted),
            corruptions: Some(corruptions.clone()),
            selection: self.selection.clone(),
            batch_size: self.batch_size,
        };
        let margins = MarginsConfig {
            attack: self.preset.margins_attack().into(),
            settings: norm_settings.clone(),
            eps: Some(main_eps),
            selection: self.selection.clone(),
            batch_size: self.batch_size,
            ..MarginsConfig::default()
        };
        let metrics = (self.preset != Preset::Quick).then(|| MetricsConfig {
            // Its own white-box PGD at the headline radius.
            from: None,
            settings: norm_settings.clone(),
            eps: Some(main_eps),
            boundary_limit: 50,
            corruption_seed: self.seed,
            selection: self.selection.clone(),
            batch_size: self.batch_size,
            ..MetricsConfig::default()
        });
        let weak = train.then(|| WeakConfig {
            selection: self.selection.clone(),
            eps: eps.clone(),
            test_limit: Some(self.selection.limit.unwrap_or(1000).min(1000)),
            seed: self.seed,
            ..WeakConfig::default()
        });
        Ok(Plan {
            eps,
            main_eps,
            corruptions,
            attack,
            classwise,
            margins,
            metrics,
            weak,
        })
    }
}

/// Model passes per sample of one section (upper bounds for attacks, see the module
/// documentation).
#[derive(Debug, Clone, Serialize)]
pub struct SectionCost {
    /// The section.
    pub section: String,
    /// Samples it covers.
    pub samples: usize,
    /// Forward passes per sample.
    pub forward: u64,
    /// Forward + input-gradient passes per sample.
    pub backward: u64,
    /// Estimated seconds.
    pub seconds: f64,
}

/// What an audit will cost, from a measured warm-up.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Images per batch of the warm-up (the run's, or fewer samples).
    pub batch_size: usize,
    /// Measured forward images per second.
    pub forward_img_per_s: f64,
    /// Measured forward + input-gradient images per second.
    pub backward_img_per_s: f64,
    /// Per section.
    pub sections: Vec<SectionCost>,
    /// All forward passes.
    pub forward: u64,
    /// All forward + input-gradient passes.
    pub backward: u64,
    /// Estimated seconds, at most (attack budgets are upper bounds).
    pub seconds: f64,
}

impl Estimate {
    /// The lines printed before a run.
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![format!(
            "warm-up at batch {}: {:.0} img/s forward, {:.0} img/s forward + input gradient",
            self.batch_size, self.forward_img_per_s, self.backward_img_per_s
        )];
        for s in &self.sections {
            v.push(format!(
                "  {:<10} {:>6} samples × ({:>6} F + {:>6} B) ≤ {}",
                s.section,
                s.samples,
                s.forward,
                s.backward,
                duration(s.seconds)
            ));
        }
        v.push(format!(
            "estimate: at most {} forward and {} forward + gradient passes, at most {} \
             (attack budgets are upper bounds: broken samples stop early)",
            self.forward,
            self.backward,
            duration(self.seconds)
        ));
        v
    }
}

/// `95 s`, `12 min 5 s`, `2 h 3 min`.
pub fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=99 => format!("{s} s"),
        100..=5999 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// `[forward, backward]` passes per sample per ε of an ensemble of `stages` on `k` classes
/// (targeted stages attack 9 target classes, or `k − 1` when fewer).
fn ensemble_passes(stages: &[StageSpec], k: usize) -> [u64; 2] {
    let targets = (k.saturating_sub(1)).min(9) as u64;
    let mut p = [1u64, 0];
    for s in stages {
        let runs = (s.steps.unwrap_or(100) * s.restarts.unwrap_or(1)) as u64;
        match s.name.as_str() {
            "square" => p[0] += runs,
            n if n.ends_with("-t") => p[1] += runs * targets,
            _ => p[1] += runs,
        }
    }
    p
}

/// Passes per sample of each section of `plan`, for `n` samples (and `train` training samples).
fn costs(
    plan: &Plan,
    cfg: &AuditConfig,
    k: usize,
    n: usize,
    train: usize,
) -> Vec<(String, usize, [u64; 2])> {
    let conditions = plan.corruptions.conditions().len() as u64;
    let radii = plan.eps.len() as u64;
    let e = ensemble_passes(cfg.preset.stages().as_slice(), k);
    let mut v = vec![
        ("eval".to_string(), n, [1 + conditions, 0]),
        // The ensemble at every radius, plus the gradient check.
        ("attack".into(), n, [e[0] * radii, e[1] * radii + 1]),
    ];
    if cfg.preset == Preset::Thorough {
        let x = ensemble_passes(&escape_stages(), k);
        v.push(("escape".into(), n, x));
    }
    // Latent features: clean, adversarial and every corruption; targeted PGD toward each class.
    let steps = cfg.preset.targeted_steps() as u64;
    v.push(("classwise".into(), n, [2 + conditions, k as u64 * steps]));
    // DeepFool: 50 steps, FAB: 5 restarts × 100 steps; both take the gradient of every class.
    let m = match cfg.preset {
        Preset::Quick => 50 * k as u64,
        _ => 500 * k as u64,
    };
    v.push(("margins".into(), n, [1, m]));
    if let Some(mc) = &plan.metrics {
        // Clean and adversarial passes with taps, the white-box attack, corruptions, flip
        // sequences (frames × families), the black-box queries and the boundary scans.
        let f = 2
            + (mc.corruptions.len() * mc.severities.len()) as u64
            + (mc.flip.frames * 4) as u64
            + mc.black_box_queries as u64
            + 2 * mc.boundary.directions as u64 * 20;
        v.push(("metrics".into(), n, [f, 10]));
    }
    if let Some(w) = &plan.weak {
        let f = (w.q * w.eps.len() + 1) as u64 + w.perturbations.len() as u64;
        v.push(("weak".into(), train, [f, 0]));
    }
    v
}

/// The escape's stages (`thorough`): Square with twice the queries and three restarts, then
/// APGD-CE from random starts (five restarts), for the samples whose clean gradient vanished
/// and that every stage of the ensemble left robust.
fn escape_stages() -> Vec<StageSpec> {
    vec![
        StageSpec::new("square").budget(10_000, 3),
        StageSpec::new("apgd-ce").budget(100, 5),
    ]
}

/// Times a few forward and forward + input-gradient passes at the run's batch size on the
/// first selected images and turns the preset's pass counts into seconds.
pub fn estimate(cfg: &AuditConfig, loaded: &Loaded, train: Option<&Loaded>) -> Result<Estimate> {
    let plan = cfg.plan(loaded, train.is_some())?;
    let indices = loaded.select(&cfg.selection)?;
    let n_train = match (train, &plan.weak) {
        (Some(t), Some(w)) => t.select(&w.selection)?.len(),
        _ => 0,
    };
    let model = &loaded.model.model;
    let k = model.num_classes();
    let first: Vec<usize> = indices.iter().take(cfg.batch_size).copied().collect();
    let batch = read_batches(loaded.data.as_ref(), &first, cfg.batch_size)?
        .next()
        .transpose()?
        .ok_or_else(|| Error::Invalid("the selection holds no samples".into()))?;
    let labels: Vec<usize> = batch.labels.iter().map(|&l| l.min(k - 1)).collect();
    let loss = Loss::CrossEntropy { labels: &labels };
    // One untimed pass of each (buffers, caches), then the best of three.
    model.logits(&batch.images)?;
    model.loss_grad(&batch.images, &loss)?;
    let (mut fwd, mut bwd) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(model.logits(&batch.images)?);
        fwd = fwd.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(model.loss_grad(&batch.images, &loss)?);
        bwd = bwd.min(t.elapsed().as_secs_f64());
    }
    let b = batch.len() as f64;
    let (f_rate, b_rate) = (b / fwd.max(1e-9), b / bwd.max(1e-9));
    let sections: Vec<SectionCost> = costs(&plan, cfg, k, indices.len(), n_train)
        .into_iter()
        .map(|(section, samples, [f, bw])| SectionCost {
            seconds: samples as f64 * (f as f64 / f_rate + bw as f64 / b_rate),
            section,
            samples,
            forward: f,
            backward: bw,
        })
        .collect();
    Ok(Estimate {
        batch_size: batch.len(),
        forward_img_per_s: f_rate,
        backward_img_per_s: b_rate,
        forward: sections.iter().map(|s| s.forward * s.samples as u64).sum(),
        backward: sections.iter().map(|s| s.backward * s.samples as u64).sum(),
        seconds: sections.iter().map(|s| s.seconds).sum(),
        sections,
    })
}

/// One section of a finished audit.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// Its name (`eval`, `attack`, …).
    pub name: String,
    /// The command whose run directory it is (`eval`, `attack`, …; `gallery` has none).
    pub command: String,
    /// Its directory, relative to the audit's.
    pub dir: String,
    /// Read back from an earlier invocation rather than computed.
    pub read_back: bool,
    /// Seconds this invocation spent on it.
    pub seconds: f64,
    /// Forward passes recorded by the section (attacks and margins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_passes: Option<u64>,
    /// Forward + gradient passes recorded by the section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backward_passes: Option<u64>,
}

/// The body of `audit`'s `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// The preset.
    pub preset: Preset,
    /// Threat model.
    pub norm: Norm,
    /// Radii.
    pub eps: Vec<f32>,
    /// Samples audited.
    pub samples: usize,
    /// The estimate printed before the run.
    pub estimate: Estimate,
    /// The sections, in the order they ran.
    pub sections: Vec<Section>,
    /// Headline figures and recommendations ([`crate::report::Findings`], from the sections'
    /// run directories).
    pub findings: Findings,
    /// The report page.
    pub report: String,
    /// The model.
    pub model: ModelCard,
    /// The data set.
    pub data: DataCard,
    /// Worker threads.
    pub threads: usize,
    /// Wall-clock seconds of this invocation.
    pub seconds: f64,
}

/// A finished section's `run.json`, when this is a resumed audit with the same settings.
fn finished(resuming: bool, dir: &Path) -> Option<Value> {
    if !resuming {
        return None;
    }
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).ok()?).ok()?;
    (v.get("status").and_then(Value::as_str) == Some("complete")).then_some(v)
}

/// Runs `audit`: every section in turn on `loaded` (and `weak` on `train`), then the report.
pub fn run(
    cfg: &AuditConfig,
    loaded: &Loaded,
    train: Option<&Loaded>,
    out: &Output,
    progress: &dyn Progress,
) -> Result<AuditReport> {
    let t0 = Instant::now();
    let plan = cfg.plan(loaded, train.is_some())?;
    let estimate = estimate(cfg, loaded, train)?;
    for l in estimate.lines() {
        progress.note(&l);
    }
    let indices = loaded.select(&cfg.selection)?;
    let mut settings = loaded.settings(&cfg.selection, &indices)?;
    settings["audit"] = serde_json::to_value(cfg).unwrap_or_default();
    settings["train"] = json!(train.map(|t| t.data_path.clone()));
    // A re-run with the same settings reads the finished sections back.
    let old_hash = std::fs::read_to_string(out.file("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| {
            v.get("settings_hash")
                .and_then(Value::as_str)
                .map(String::from)
        });
    let resuming =
        !out.overwrite && old_hash.as_deref() == Some(&settings_hash("audit", &settings));
    let (rd, _) = RunDir::open::<SampleRecord>(&out.dir, "audit", settings, out.mode())?;
    if let Some(line) = rd.replaced() {
        progress.note(line);
    }
    let mut sections = Vec::new();
    let mut step =
        |name: &str, command: &str, f: &mut dyn FnMut(&Output) -> Result<()>| -> Result<()> {
            let sub = out.sub(name);
            let t = Instant::now();
            let read_back = finished(resuming, &sub.dir).is_some();
            if read_back {
                progress.note(&format!(
                    "audit: {name} finished earlier, read back from {}",
                    sub.dir.display()
                ));
            } else {
                progress.note(&format!("audit: {name} → {}", sub.dir.display()));
                f(&sub)?;
            }
            let rec = finished(true, &sub.dir);
            let passes = |k: &str| rec.as_ref().and_then(|v| v["runtime"][k].as_u64());
            sections.push(Section {
                name: name.into(),
                command: command.into(),
                dir: name.into(),
                read_back,
                seconds: t.elapsed().as_secs_f64(),
                forward_passes: passes("forward_passes"),
                backward_passes: passes("backward_passes"),
            });
            Ok(())
        };
    let ecfg = EvalConfig {
        selection: cfg.selection.clone(),
        batch_size: cfg.batch_size,
        corruptions: Some(plan.corruptions.clone()),
        ..EvalConfig::default()
    };
    step("eval", "eval", &mut |o| {
        eval::run(&ecfg, loaded, o, progress).map(drop)
    })?;
    step("attack", "attack", &mut |o| {
        attack::run(&plan.attack, loaded, o, progress).map(drop)
    })?;
    // The escape (which samples every stage left stuck) and the metric suite (counters, not
    // per-sample records) need every sample: a shard leaves them to the unsharded run that
    // `merge` resumes, which finds the other sections finished and runs only these.
    let sharded = cfg.selection.shard.is_some();
    let deferred = |name: &str| {
        progress.note(&format!(
            "audit: {name} is left to `faultline merge` (it needs every shard's samples)"
        ))
    };
    if cfg.preset == Preset::Thorough && sharded {
        deferred("escape");
    } else if cfg.preset == Preset::Thorough {
        step("escape", "attack", &mut |o| {
            escape(&plan, loaded, &out.sub("attack"), o, progress)
        })?;
    }
    step("classwise", "classwise", &mut |o| {
        classwise::run_with(
            &plan.classwise,
            loaded,
            o,
            (&out.sub("eval"), &out.sub("attack")),
            progress,
        )
        .map(drop)
    })?;
    step("margins", "margins", &mut |o| {
        margins::run(&plan.margins, loaded, o, progress).map(drop)
    })?;
    if plan.metrics.is_some() && sharded {
        deferred("metrics");
    } else if let Some(mc) = &plan.metrics {
        step("metrics", "metrics", &mut |o| {
            metrics::run(mc, loaded, o, progress).map(drop)
        })?;
    }
    if let (Some(wc), Some(t)) = (&plan.weak, train) {
        let test = TestSet {
            data: loaded.data.as_ref(),
            card: loaded.data_card(),
        };
        step("weak", "weak", &mut |o| {
            weak::run(wc, t, Some(&test), o, progress).map(drop)
        })?;
    }
    // The gallery is cheap and always rewritten (it writes no run.json).
    let t = Instant::now();
    gallery(&plan, loaded, &indices, out)?;
    sections.push(Section {
        name: "gallery".into(),
        command: "gallery".into(),
        dir: "gallery".into(),
        read_back: false,
        seconds: t.elapsed().as_secs_f64(),
        forward_passes: None,
        backward_passes: None,
    });
    let findings = Findings::of(&report::Sources::read(std::slice::from_ref(&out.dir))?);
    let report = AuditReport {
        preset: cfg.preset,
        norm: cfg.norm,
        eps: plan.eps.clone(),
        samples: indices.len(),
        estimate,
        sections,
        findings,
        report: "report.html".into(),
        model: loaded.model.card.clone(),
        data: loaded.data_card(),
        threads: threads(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    rd.finish(&report)?;
    // The page is built from the finished directory alone, as `faultline report DIR` builds it.
    let page = out.file("report.html");
    report::html::build(std::slice::from_ref(&out.dir), &page)?;
    progress.note(&format!("audit: report → {}", page.display()));
    Ok(report)
}

/// `thorough`: the samples the attack section's sanity check found with a zero gradient and
/// every stage left robust at the largest radius, attacked again by [`escape_stages`] at that
/// radius (an index file in the section's directory selects them). Writes an empty, complete
/// run when there are none.
fn escape(
    plan: &Plan,
    loaded: &Loaded,
    attack_dir: &Output,
    out: &Output,
    progress: &dyn Progress,
) -> Result<()> {
    let recs = read_records(&attack_dir.file("samples.jsonl"))?;
    let zero: std::collections::HashSet<usize> = recs
        .iter()
        .filter(|r| {
            r.attack
                .as_ref()
                .is_some_and(|a| a.gradient_issue.as_deref() == Some("zero"))
        })
        .map(|r| r.index)
        .collect();
    let stuck: Vec<usize> = recs
        .iter()
        .filter(|r| {
            r.condition.eps() == Some(plan.main_eps)
                && r.correct()
                && !r.success()
                && zero.contains(&r.index)
        })
        .map(|r| r.index)
        .collect();
    std::fs::create_dir_all(&out.dir).map_err(io(&out.dir))?;
    let list = out.file("indices.txt");
    let text: String = stuck.iter().map(|i| format!("{i}\n")).collect();
    std::fs::write(&list, text).map_err(io(&list))?;
    if stuck.is_empty() {
        progress.note("audit: escape: no sample with a zero gradient left robust");
        let (rd, _) = RunDir::open::<SampleRecord>(
            &out.dir,
            "attack",
            json!({ "escape": "none", "from": attack_dir.dir }),
            out.mode(),
        )?;
        return rd.finish(&json!({ "attack": "escape", "samples": 0, "robust_accuracy": null }));
    }
    let cfg = AttackConfig {
        attack: "escape".into(),
        eps: vec![plan.main_eps],
        selection: Selection {
            limit: None,
            indices: Some(list),
            ..plan.attack.selection.clone()
        },
        stages: Some(escape_stages()),
        save_adv: false,
        ..plan.attack.clone()
    };
    attack::run(&cfg, loaded, out, progress).map(drop)
}

/// The records of a `samples.jsonl`.
pub fn read_records(path: &Path) -> Result<Vec<SampleRecord>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| Error::RunDir {
                path: path.to_path_buf(),
                why: format!("not a sample record ({e})"),
            })
        })
        .collect()
}

/// One sample of the gallery.
#[derive(Debug, Clone, Serialize)]
pub struct GalleryItem {
    /// Data-set index.
    pub index: usize,
    /// True class.
    pub label: usize,
    /// Clean prediction.
    pub clean_prediction: usize,
    /// `<index>-clean.png`.
    pub clean: String,
    /// The smallest radius that broke it, the adversarial prediction and image.
    pub adversarial: Option<GalleryImage>,
    /// The corruption (severity 3 of the family that lowers accuracy most) and its prediction.
    pub corrupted: Option<GalleryImage>,
}

/// One perturbed image of the gallery.
#[derive(Debug, Clone, Serialize)]
pub struct GalleryImage {
    /// `linf 4/255`, `fog s3`.
    pub condition: String,
    /// The model's prediction on it.
    pub prediction: usize,
    /// The PNG file.
    pub file: String,
}

/// How many samples the gallery shows.
pub const GALLERY_SIZE: usize = 6;

/// Writes `gallery/`: for up to [`GALLERY_SIZE`] clean-correct samples the attack broke (one
/// per class first, those broken at the smallest radius first), the clean image, the
/// adversarial image at the smallest radius that broke it and the image under the most harmful
/// corruption family at severity 3, as PNG files with `gallery.json`.
fn gallery(plan: &Plan, loaded: &Loaded, indices: &[usize], out: &Output) -> Result<()> {
    let dir = out.file("gallery");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let attack = read_records(&out.sub("attack").file("samples.jsonl"))?;
    let evals = read_records(&out.sub("eval").file("samples.jsonl"))?;
    // The first radius that broke each clean-correct sample.
    let mut broken: Vec<(usize, usize, usize)> = Vec::new(); // (radius position, index, prediction)
    for (k, &e) in plan.eps.iter().enumerate() {
        for r in attack.iter().filter(|r| r.condition.eps() == Some(e)) {
            if r.clean_prediction == Some(r.label)
                && r.success()
                && !broken.iter().any(|b| b.1 == r.index)
            {
                broken.push((k, r.index, r.prediction));
            }
        }
    }
    broken.sort_by_key(|b| (b.0, b.1));
    let label_of = |i: usize| evals.iter().find(|r| r.index == i).map_or(0, |r| r.label);
    let mut chosen: Vec<(usize, usize, usize)> = Vec::new();
    for b in &broken {
        if chosen.len() < GALLERY_SIZE && !chosen.iter().any(|c| label_of(c.1) == label_of(b.1)) {
            chosen.push(*b);
        }
    }
    for b in &broken {
        if chosen.len() < GALLERY_SIZE && !chosen.contains(b) {
            chosen.push(*b);
        }
    }
    // The family with the lowest accuracy over the selection.
    let family = plan
        .corruptions
        .kinds
        .iter()
        .map(|k| {
            let rs: Vec<&SampleRecord> = evals
                .iter()
                .filter(|r| r.condition.corruption().is_some_and(|c| c.0 == k.name()))
                .collect();
            let acc = rs.iter().filter(|r| r.correct()).count() as f64 / rs.len().max(1) as f64;
            (*k, acc)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k);
    let mut ids: Vec<usize> = chosen.iter().map(|c| c.1).collect();
    ids.sort_unstable();
    let info = loaded.data.info();
    let per = info.channels * info.height * info.width;
    let advs: Vec<Vec<f32>> = (0..plan.eps.len())
        .map(|k| crate::run::npy::read_f32(&out.sub("attack").file(&format!("adv_{k}.npy"))))
        .collect::<Result<_>>()?;
    let mut items = Vec::new();
    if let Some(batch) = read_batches(loaded.data.as_ref(), &ids, ids.len().max(1))?.next() {
        let batch = batch?;
        let corrupted: Option<(CorruptionKind, Vec<f32>)> = match family {
            Some(k) => Some((k, plan.corruptions.corrupt(&batch, k, 3)?)),
            None => None,
        };
        for &(k, index, pred) in &chosen {
            let Some(j) = batch.indices.iter().position(|&i| i == index) else {
                continue;
            };
            let clean = &batch.images[j * per..(j + 1) * per];
            let write = |name: &str, img: &[f32]| -> Result<String> {
                let file = format!("{index}-{name}.png");
                write_png(
                    &dir.join(&file),
                    img,
                    [info.channels, info.height, info.width],
                )?;
                Ok(file)
            };
            let row = indices.iter().position(|&i| i == index);
            let adversarial = match row {
                Some(row) if advs[k].len() >= (row + 1) * per => Some(GalleryImage {
                    condition: format!(
                        "{} {}",
                        plan.attack.settings.norm.unwrap_or(Norm::Linf).name(),
                        eps_label(plan.eps[k])
                    ),
                    prediction: pred,
                    file: write("adv", &advs[k][row * per..(row + 1) * per])?,
                }),
                _ => None,
            };
            let corrupted = match &corrupted {
                Some((kind, imgs)) => {
                    let cond = Condition::Corruption {
                        name: kind.name().into(),
                        severity: 3,
                    };
                    evals
                        .iter()
                        .find(|r| r.index == index && r.condition == cond)
                        .map(|r| -> Result<GalleryImage> {
                            Ok(GalleryImage {
                                condition: cond.label(),
                                prediction: r.prediction,
                                file: write(
                                    &format!("{}-s3", kind.name()),
                                    &imgs[j * per..(j + 1) * per],
                                )?,
                            })
                        })
                        .transpose()?
                }
                None => None,
            };
            items.push(GalleryItem {
                index,
                label: batch.labels[j],
                clean_prediction: batch.labels[j],
                clean: write("clean", clean)?,
                adversarial,
                corrupted,
            });
        }
    }
    let path = dir.join("gallery.json");
    let text = serde_json::to_string_pretty(&items).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(io(&path))
}

/// Writes a CHW image with values in [0, 1] as an 8-bit PNG (grey for one channel, RGB for
/// three).
fn write_png(path: &Path, chw: &[f32], [c, h, w]: [usize; 3]) -> Result<()> {
    let px = |ch: usize, y: usize, x: usize| {
        (chw[ch * h * w + y * w + x].clamp(0.0, 1.0) * 255.0).round() as u8
    };
    let (bytes, color): (Vec<u8>, image::ExtendedColorType) = if c == 1 {
        (
            (0..h * w).map(|i| px(0, i / w, i % w)).collect(),
            image::ExtendedColorType::L8,
        )
    } else {
        (
            (0..h * w)
                .flat_map(|i| (0..3).map(move |ch| (ch, i)))
                .map(|(ch, i)| px(ch.min(c - 1), i / w, i % w))
                .collect(),
            image::ExtendedColorType::Rgb8,
        )
    };
    image::save_buffer(path, &bytes, w as u32, h as u32, color)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

/// The audit directory's sections present on disk, for readers that are given the directory.
pub fn section_dirs(dir: &Path) -> Vec<PathBuf> {
    [
        "eval",
        "attack",
        "escape",
        "classwise",
        "margins",
        "metrics",
        "weak",
    ]
    .iter()
    .map(|s| dir.join(s))
    .filter(|d| d.join("run.json").exists())
    .collect()
}
