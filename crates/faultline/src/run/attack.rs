//! `attack`: robust accuracy under a registered attack or a preset ensemble, at one ε or over a
//! curve of radii, with the sanity checks of [`crate::robust`]; records are appended batch by
//! batch and a killed run resumes.

use std::time::Instant;

use faultline_attacks::registry::{self, Settings};
use faultline_attacks::{Attack, Ensemble, Norm};
use serde::Serialize;
use serde_json::{json, Value};

use crate::eps::eps_label;
use crate::error::{setting, Result};
use crate::eval::check_batch;
use crate::model::ModelCard;
use crate::record::SampleRecord;
use crate::robust::{
    attack_batch, check_target, sanity_report, summarize, AttackSummary, BatchTick, Options,
    SanityReport, StageProgress, SANITY_SAMPLES,
};
use crate::run::npy::NpyRows;
use crate::run::{
    check_batch_size, open_records, threads, DataCard, Loaded, Output, Progress, Runtime,
};
use crate::subset::{read_batches, Selection};

/// Settings of `attack`.
#[derive(Debug, Clone, Serialize)]
pub struct AttackConfig {
    /// Registry name of the attack (ignored with a preset).
    pub attack: String,
    /// A preset ensemble (`standard`) instead of one attack.
    pub preset: Option<String>,
    /// Norm, steps, restarts, … as given by the user (None: the attack's defaults).
    pub settings: Settings,
    /// Radii on the [0, 1] scale [default: 8/255 in L∞, 0.5 in L2, 12 in L1].
    pub eps: Vec<f32>,
    /// Targeted attack toward this class [default: untargeted].
    pub target: Option<usize>,
    /// Run the sanity checks for gradient masking (bounded attacks).
    pub sanity: bool,
    /// The samples attacked [default: all].
    pub selection: Selection,
    /// Images per batch.
    pub batch_size: usize,
    /// Write the returned images as `adv_<k>.npy` (row j: the j-th selected sample).
    pub save_adv: bool,
    /// An ensemble of registered attacks with their own steps and restarts, run under the
    /// name `attack` (the audit presets) instead of one attack or a named preset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StageSpec>>,
}

/// One stage of a custom ensemble ([`AttackConfig::stages`]): a registered bounded attack with
/// its iterations (Square: queries) and restarts [default: the attack's own].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageSpec {
    /// Registry name.
    pub name: String,
    /// Iterations (Square: queries).
    pub steps: Option<usize>,
    /// Runs per sample (later runs start at random).
    pub restarts: Option<usize>,
}

impl StageSpec {
    /// A stage with the attack's default budget.
    pub fn new(name: &str) -> StageSpec {
        StageSpec {
            name: name.into(),
            steps: None,
            restarts: None,
        }
    }
    /// This stage with `steps` iterations and `restarts` runs.
    pub fn budget(self, steps: usize, restarts: usize) -> StageSpec {
        StageSpec {
            steps: Some(steps),
            restarts: Some(restarts),
            ..self
        }
    }
}

impl Default for AttackConfig {
    fn default() -> Self {
        AttackConfig {
            attack: "pgd".into(),
            preset: None,
            settings: Settings::default(),
            eps: Vec::new(),
            target: None,
            sanity: true,
            selection: Selection::default(),
            batch_size: 128,
            save_adv: false,
            stages: None,
        }
    }
}

/// The default radius of a norm for images of shape `[c, h, w]`, from the benchmarks' usual
/// threat models: MNIST-like (one channel, at most 32×32) L∞ 0.3 / L2 2 / L1 10 (Madry et al.;
/// RobustBench has no MNIST track, the L1 radius is [U]); CIFAR-sized (up to 64 px) RobustBench's
/// 8/255 / 0.5 / 12; larger (ImageNet-sized) 4/255 / 3 (RobustBench's ImageNet radii) / 12 [U].
pub fn default_eps(norm: Norm, image: [usize; 3]) -> f32 {
    let [c, h, w] = image;
    let mnist = c == 1 && h <= 32 && w <= 32;
    let large = h.max(w) > 64;
    match (norm, mnist, large) {
        (Norm::Linf, true, _) => 0.3,
        (Norm::L2, true, _) => 2.0,
        (Norm::L1, true, _) => 10.0,
        (Norm::Linf, false, true) => 4.0 / 255.0,
        (Norm::L2, false, true) => 3.0,
        (Norm::Linf, false, false) => 8.0 / 255.0,
        (Norm::L2, false, false) => 0.5,
        (Norm::L1, false, _) => 12.0,
    }
}

/// The line a run prints when it uses [`default_eps`].
pub fn default_eps_note(norm: Norm, image: [usize; 3]) -> String {
    let [c, h, w] = image;
    format!(
        "ε defaults to {} ({}) for {c}×{h}×{w} images; pass --eps to choose",
        eps_label(default_eps(norm, image)),
        norm.name()
    )
}

impl AttackConfig {
    /// The attack the configuration names, built and checked before anything runs.
    pub fn build(&self) -> Result<Attack> {
        if let Some(stages) = &self.stages {
            let norm = self.settings.norm.unwrap_or(Norm::Linf);
            let stages = stages
                .iter()
                .map(|st| {
                    let s = Settings {
                        norm: Some(norm),
                        steps: st.steps,
                        restarts: st.restarts,
                        seed: self.settings.seed,
                        ..Settings::default()
                    };
                    match registry::build(&st.name, &s)?.method {
                        registry::Method::Bounded(attack) => {
                            Ok(faultline_attacks::ensemble::Stage {
                                name: st.name.clone(),
                                attack,
                            })
                        }
                        registry::Method::MinNorm(_) => Err(setting(
                            "stages",
                            format!("ensemble stage '{}' must be a bounded attack", st.name),
                        )),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            if stages.is_empty() {
                return Err(setting("stages", "an ensemble needs at least one stage"));
            }
            return Ok(Attack::bounded(&self.attack, Ensemble { stages }));
        }
        let Some(p) = &self.preset else {
            return Ok(registry::build(&self.attack, &self.settings)?);
        };
        let s = &self.settings;
        let mut given: Vec<&str> = s.given().into_iter().map(|t| t.flag()).collect();
        if self.target.is_some() {
            given.push("--target");
        }
        if !given.is_empty() {
            return Err(setting(
                "--preset",
                format!(
                    "{p} fixes every attack parameter (and is untargeted): drop {}",
                    given.join(", ")
                ),
            ));
        }
        Ok(Attack::bounded(p, Ensemble::preset(p, s)?))
    }

    /// The radii: given ones without repeats, ascending, checked against the pixel range; or
    /// the norm's default.
    pub fn radii(&self, norm: Norm, image: [usize; 3]) -> Result<Vec<f32>> {
        if self.eps.is_empty() {
            return Ok(vec![default_eps(norm, image)]);
        }
        let mut eps = self.eps.clone();
        if let Some(e) = eps.iter().find(|e| !(e.is_finite() && **e >= 0.0)) {
            return Err(setting("--eps", format!("{e} is not a radius")));
        }
        if norm == Norm::Linf {
            if let Some(e) = eps.iter().find(|&&e| e > 1.0) {
                return Err(setting(
                    "--eps",
                    format!(
                        "{e} exceeds the pixel range [0, 1], so every image is in the ball; \
                         radii are on the [0, 1] scale (did you mean {e}/255?)"
                    ),
                ));
            }
        }
        eps.sort_by(f32::total_cmp);
        // Radii that print alike (8/255 and 0.0313725) are one radius: records and run.json
        // key them by that label.
        eps.dedup_by(|a, b| eps_label(*a) == eps_label(*b));
        Ok(eps)
    }
}

/// The body of `attack`'s `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct AttackReport {
    /// The attack or preset name.
    pub attack: String,
    /// Its norm.
    pub norm: Norm,
    /// Fraction of samples predicted right before the attack.
    pub clean_accuracy: f64,
    /// Robust accuracy: a number for one ε, an object ε → number for several.
    pub robust_accuracy: Value,
    /// Ensembles: robust accuracy after each stage (per ε like `robust_accuracy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<Value>,
    /// The sanity checks (bounded attacks, unless turned off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sanity: Option<SanityReport>,
    /// The model.
    pub model: ModelCard,
    /// The data set.
    pub data: DataCard,
    /// Engine settings, timing and passes.
    pub runtime: Runtime,
    /// The curve and, for minimum-norm attacks, the norms found.
    pub results: AttackSummary,
    /// `adv_<k>.npy` files written (one per ε).
    pub adversarial_files: Vec<String>,
}

/// Runs `attack`; see [`run_records`].
pub fn run(
    cfg: &AttackConfig,
    loaded: &Loaded,
    out: &Output,
    progress: &dyn Progress,
) -> Result<AttackReport> {
    Ok(run_records(cfg, loaded, out, progress)?.0)
}

/// Runs `attack` and also returns every record (ε-major within each batch).
pub fn run_records(
    cfg: &AttackConfig,
    loaded: &Loaded,
    out: &Output,
    progress: &dyn Progress,
) -> Result<(AttackReport, Vec<SampleRecord>)> {
    check_batch_size(cfg.batch_size)?;
    let attack = cfg.build()?;
    let norm = attack.norm();
    let info = loaded.data.info();
    let image = [info.channels, info.height, info.width];
    let eps = cfg.radii(norm, image)?;
    if cfg.eps.is_empty() {
        progress.note(&default_eps_note(norm, image));
    }
    let model = &loaded.model.model;
    let k = model.num_classes();
    if let Some(t) = cfg.target {
        check_target(&attack, t, k)?;
    }
    let sanity = cfg.sanity && !attack.is_min_norm();
    // A shard covers whole batches (see `Shard`).
    let selection = cfg.selection.batched(cfg.batch_size);
    let indices = loaded.select(&selection)?;
    let total = indices.len();
    let mut settings = loaded.settings(&selection, &indices)?;
    settings["attack"] = attack.describe();
    settings["eps"] = json!(eps);
    settings["target"] = json!(cfg.target);
    settings["sanity"] = json!(sanity);
    let per_sample = if attack.is_min_norm() { 1 } else { eps.len() };
    let (mut rd, mut records, start) =
        open_records(out, "attack", settings, per_sample, &indices, progress)?;
    let info = loaded.data.info();
    let shape = [total, info.channels, info.height, info.width];
    let mut adv_files = Vec::new();
    if cfg.save_adv {
        for k in 0..per_sample {
            adv_files.push(NpyRows::open(
                &out.file(&format!("adv_{k}.npy")),
                "<f4",
                4,
                &shape,
                start > 0,
            )?);
        }
    }
    progress.start("attack", total, start);
    let t0 = Instant::now();
    let checked = records
        .iter()
        .filter(|r| {
            r.attack
                .as_ref()
                .is_some_and(|a| a.unbounded_success.is_some())
        })
        .count();
    let mut unbounded_left = SANITY_SAMPLES.saturating_sub(checked);
    let source = loaded.data_path.display().to_string();
    let mut position = start;
    for batch in read_batches(loaded.data.as_ref(), &indices[start..], cfg.batch_size)? {
        let batch = batch?;
        check_batch(&batch, k, &source)?;
        // Running robust accuracy while an ensemble's stages finish within the batch: the
        // completed batches plus this batch's samples still robust after the stage.
        let done = records.len() / per_sample;
        let before = summarize(&records, &attack, &eps);
        // Per-sample progress within the batch, once per iteration of the attack: samples
        // broken (or wrong clean) are done, and the attack's schedule covers the others.
        let shown = std::cell::Cell::new(done);
        let mut tick = |t: BatchTick| {
            let now = done + (t.done.floor() as usize).min(batch.labels.len());
            if now > shown.get() {
                shown.set(now);
                progress.advance(now);
            }
        };
        let mut show = |p: StageProgress| {
            let prev = before
                .curve
                .iter()
                .find(|c| c.eps == p.eps)
                .map_or(0.0, |c| c.robust_accuracy * done as f64);
            let robust = prev + p.robust as f64;
            progress.message(&format!(
                "robust ≤ {:.1} % at {} after {} ({}/{})",
                100.0 * robust / (done + batch.labels.len()).max(1) as f64,
                eps_label(p.eps),
                p.stage,
                p.position.0 + 1,
                p.position.1
            ));
        };
        let mut opts = Options {
            target: cfg.target,
            sanity,
            unbounded_left,
            progress: Some(&mut show),
            tick: Some(&mut tick),
        };
        let b = faultline_attacks::BatchRef::new(&batch.images, &batch.indices);
        let (recs, images) = attack_batch(model, b, &batch.labels, &attack, &eps, &mut opts)?;
        unbounded_left = opts.unbounded_left;
        for (f, img) in adv_files.iter_mut().zip(&images) {
            let bytes: Vec<u8> = img.iter().flat_map(|v| v.to_le_bytes()).collect();
            f.write_rows(position, &bytes)?;
        }
        position += batch.len();
        rd.append(&recs)?;
        records.extend(recs);
        progress.advance(records.len() / per_sample);
        let s = summarize(&records, &attack, &eps);
        if let Some(p) = s.curve.last() {
            progress.message(&format!(
                "robust {:.1} % at {}",
                100.0 * p.robust_accuracy,
                eps_label(p.eps)
            ));
        }
    }
    progress.finish();
    let secs = t0.elapsed().as_secs_f64();
    let s = summarize(&records, &attack, &eps);
    let by_eps = |v: Vec<Value>| {
        if s.curve.len() == 1 {
            v.into_iter().next().unwrap_or_default()
        } else {
            Value::Object(
                s.curve
                    .iter()
                    .zip(v)
                    .map(|(p, x)| (eps_label(p.eps), x))
                    .collect(),
            )
        }
    };
    let robust = by_eps(s.curve.iter().map(|p| json!(p.robust_accuracy)).collect());
    let stages = s.curve[0]
        .stages
        .is_some()
        .then(|| by_eps(s.curve.iter().map(|p| json!(p.stages)).collect()));
    let sane = if sanity {
        sanity_report(&records, &attack, &eps)
    } else {
        None
    };
    let passes = |f: fn(&crate::record::AttackOutcome) -> u32| -> u64 {
        records
            .iter()
            .filter_map(|r| r.attack.as_ref())
            .map(|a| f(a) as u64)
            .sum()
    };
    let report = AttackReport {
        attack: attack.name.clone(),
        norm,
        clean_accuracy: s.clean_accuracy,
        robust_accuracy: robust,
        stages,
        sanity: sane,
        model: loaded.model.card.clone(),
        data: loaded.data_card(),
        runtime: Runtime {
            threads: threads(),
            batch_size: cfg.batch_size,
            seconds: secs,
            resumed_from: start,
            forward_passes: Some(passes(|a| a.forward)),
            backward_passes: Some(passes(|a| a.backward)),
            img_per_s: None,
        },
        results: s,
        adversarial_files: (0..adv_files.len())
            .map(|k| format!("adv_{k}.npy"))
            .collect(),
    };
    rd.finish(&report)?;
    if let Some(r) = &report.sanity {
        for w in &r.warnings {
            progress.note(&format!("warning: {w}"));
        }
    }
    Ok((report, records))
}
