//! `reverse`: reverse adversarial examples (Ye et al. 2019, methods.md §4.3 A) — a registered
//! bounded attack run as loss *descent* toward a label ([`faultline_attacks::reverse`]) on every
//! selected sample (not only the clean-correct ones), on the clean images and on corrupted
//! copies made in process; accuracy before and after per condition.
//!
//! Toward the true label the result is a diagnostic upper bound (it needs the label); toward
//! the model's own prediction it is usable at test time. Each sample gets, per condition
//! (clean, then every corruption × severity), a record of the image as given (condition
//! `clean` or the corruption, as `eval` writes it) and one of the reversed image (condition
//! `reverse`, its `clean_prediction` the prediction before); records are appended batch by
//! batch and a killed run resumes.

use std::collections::BTreeMap;
use std::time::Instant;

use faultline_attacks::reverse::{build, reverse};
use faultline_attacks::{Attack, BatchRef, Norm};
use faultline_engine::runner_up;
use serde::Serialize;
use serde_json::json;

use crate::corruption::CorruptionPlan;
use crate::error::{setting, Result};
use crate::eval::check_batch;
use crate::model::ModelCard;
use crate::record::{AttackOutcome, Condition, SampleRecord};
use crate::run::attack::{default_eps, default_eps_note};
use crate::run::{
    check_batch_size, open_records, threads, DataCard, Loaded, Output, Progress, Runtime,
};
use crate::subset::{read_batches, Selection};

/// The label a reverse attack descends toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Toward {
    /// The true label: a diagnostic upper bound (needs the label).
    #[default]
    True,
    /// The model's prediction on the image as given: usable at test time.
    Predicted,
}

impl Toward {
    /// `true` or `predicted`.
    pub fn name(self) -> &'static str {
        match self {
            Toward::True => "true",
            Toward::Predicted => "predicted",
        }
    }
}

impl std::str::FromStr for Toward {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "true" => Ok(Toward::True),
            "predicted" => Ok(Toward::Predicted),
            o => Err(setting("--label", format!("'{o}': use true or predicted"))),
        }
    }
}

/// Settings of `reverse`.
#[derive(Debug, Clone, Serialize)]
pub struct ReverseConfig {
    /// Registry name of the attack run in reverse [default: pgd].
    pub attack: String,
    /// Norm, steps, restarts, loss, seed (None: the attack's defaults).
    pub settings: faultline_attacks::Settings,
    /// Radius on the [0, 1] scale [default: the norm's, e.g. 8/255 in L∞ for CIFAR-sized
    /// images].
    pub eps: Option<f32>,
    /// The label descended toward [default: true].
    pub label: Toward,
    /// Corruptions applied (in process) before the reverse attack, besides the clean images
    /// [default: none].
    pub corruptions: Option<CorruptionPlan>,
    /// The samples used [default: all].
    pub selection: Selection,
    /// Images per batch.
    pub batch_size: usize,
}

impl Default for ReverseConfig {
    fn default() -> Self {
        ReverseConfig {
            attack: "pgd".into(),
            settings: faultline_attacks::Settings::default(),
            eps: None,
            label: Toward::True,
            corruptions: None,
            selection: Selection::default(),
            batch_size: 128,
        }
    }
}

/// Before and after on one condition.
#[derive(Debug, Clone, Serialize)]
pub struct ReverseCondition {
    /// `clean` or `<family> s<severity>`.
    pub condition: String,
    /// Samples.
    pub n: usize,
    /// Accuracy on the images as given.
    pub accuracy_before: f64,
    /// Accuracy on the reversed images.
    pub accuracy_after: f64,
    /// Samples wrong before and right after.
    pub corrected: usize,
    /// Samples right before and wrong after.
    pub broken: usize,
    /// Mean logit margin of the true label before.
    pub mean_margin_before: f64,
    /// Mean logit margin of the true label after.
    pub mean_margin_after: f64,
}

/// The body of `reverse`'s `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ReverseReport {
    /// The attack run in reverse.
    pub attack: String,
    /// Its norm.
    pub norm: Norm,
    /// Its radius.
    pub eps: f32,
    /// The label descended toward.
    pub label: Toward,
    /// Accuracy before the reverse attack, per condition (`clean`, `fog s3`, …).
    pub accuracy_before: BTreeMap<String, f64>,
    /// Accuracy after, per condition.
    pub accuracy_after: BTreeMap<String, f64>,
    /// Details per condition, in plan order (clean first).
    pub conditions: Vec<ReverseCondition>,
    /// The model.
    pub model: ModelCard,
    /// The data set.
    pub data: DataCard,
    /// Engine settings, timing and passes.
    pub runtime: Runtime,
}

/// The condition label of a record: its corruption, or `clean` (reversed records: the image
/// they started from).
fn source_label(c: &Condition) -> String {
    match c {
        Condition::Reverse {
            on: Some((f, s)), ..
        } => format!("{f} s{s}"),
        Condition::Reverse { on: None, .. } | Condition::Clean => "clean".into(),
        c => c.label(),
    }
}

/// Runs `reverse`; see the module documentation.
pub fn run(
    cfg: &ReverseConfig,
    loaded: &Loaded,
    out: &Output,
    progress: &dyn Progress,
) -> Result<ReverseReport> {
    check_batch_size(cfg.batch_size)?;
    let attack = build(&cfg.attack, &cfg.settings)?;
    let norm = attack.norm();
    let info = loaded.data.info();
    let image = [info.channels, info.height, info.width];
    let eps = match cfg.eps {
        Some(e) if !(e.is_finite() && e >= 0.0) => {
            return Err(setting("--eps", format!("{e} is not a radius")))
        }
        Some(e) => e,
        None => {
            progress.note(&default_eps_note(norm, image));
            default_eps(norm, image)
        }
    };
    let model = &loaded.model.model;
    let k = model.num_classes();
    let plan = cfg.corruptions.as_ref();
    let conditions: Vec<Option<(crate::corruption::CorruptionKind, u8)>> = std::iter::once(None)
        .chain(
            plan.into_iter()
                .flat_map(|p| p.conditions().into_iter().map(Some)),
        )
        .collect();
    crate::run::refuse_shard(&cfg.selection, "reverse")?;
    let indices = loaded.select(&cfg.selection)?;
    let total = indices.len();
    let mut settings = loaded.settings(&cfg.selection, &indices)?;
    settings["attack"] = attack.describe();
    settings["eps"] = json!(eps);
    settings["label"] = json!(cfg.label);
    settings["corruptions"] = serde_json::to_value(plan).unwrap_or_default();
    let per_sample = 2 * conditions.len();
    let (mut rd, mut records, start) =
        open_records(out, "reverse", settings, per_sample, &indices, progress)?;
    progress.start("reverse", total, start);
    let t0 = Instant::now();
    let source = loaded.data_path.display().to_string();
    for batch in read_batches(loaded.data.as_ref(), &indices[start..], cfg.batch_size)? {
        let batch = batch?;
        check_batch(&batch, k, &source)?;
        let mut recs = Vec::with_capacity(batch.len() * per_sample);
        for &c in &conditions {
            let images = match (plan, c) {
                (Some(p), Some((kind, sev))) => p.corrupt(&batch, kind, sev)?,
                _ => batch.images.clone(),
            };
            let on = c.map(|(kind, sev)| (kind.name().to_string(), sev));
            recs.extend(reverse_batch(
                &attack,
                loaded,
                (&images, &batch.indices, &batch.labels),
                eps,
                cfg.label,
                on,
            )?);
        }
        rd.append(&recs)?;
        records.extend(recs);
        progress.advance(records.len() / per_sample);
        let s = summarize(&records);
        if let Some(c) = s.first() {
            progress.message(&format!(
                "clean: {:.1} % → {:.1} %",
                100.0 * c.accuracy_before,
                100.0 * c.accuracy_after
            ));
        }
    }
    progress.finish();
    let secs = t0.elapsed().as_secs_f64();
    let mut conds = summarize(&records);
    // Plan order: clean first, then the corruptions as the plan lists them.
    let order: Vec<String> = conditions
        .iter()
        .map(|c| c.map_or("clean".into(), |(k, s)| format!("{} s{s}", k.name())))
        .collect();
    conds.sort_by_key(|c| order.iter().position(|o| *o == c.condition));
    let passes = |f: fn(&AttackOutcome) -> u32| -> u64 {
        records
            .iter()
            .filter_map(|r| r.attack.as_ref())
            .map(|a| f(a) as u64)
            .sum()
    };
    let report = ReverseReport {
        attack: attack.name.clone(),
        norm,
        eps,
        label: cfg.label,
        accuracy_before: conds
            .iter()
            .map(|c| (c.condition.clone(), c.accuracy_before))
            .collect(),
        accuracy_after: conds
            .iter()
            .map(|c| (c.condition.clone(), c.accuracy_after))
            .collect(),
        conditions: conds,
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
    };
    rd.finish(&report)?;
    Ok(report)
}

/// The records of one batch under one condition: the images as given, then reversed.
fn reverse_batch(
    attack: &Attack,
    loaded: &Loaded,
    (images, indices, labels): (&[f32], &[usize], &[usize]),
    eps: f32,
    label: Toward,
    on: Option<(String, u8)>,
) -> Result<Vec<SampleRecord>> {
    let model = &loaded.model.model;
    let k = model.num_classes();
    let toward: Vec<usize> = match label {
        Toward::True => labels.to_vec(),
        Toward::Predicted => model
            .logits(images)?
            .chunks(k)
            .map(faultline_attacks::attack::argmax)
            .collect(),
    };
    let (_, rs) = reverse(attack, model, BatchRef::new(images, indices), &toward, eps)?;
    let before = match &on {
        Some((name, severity)) => Condition::Corruption {
            name: name.clone(),
            severity: *severity,
        },
        None => Condition::Clean,
    };
    let after = Condition::Reverse {
        name: attack.name.clone(),
        norm: attack.norm(),
        eps,
        toward: label.name().into(),
        on,
    };
    let margin = |z: &[f32], y: usize| z[y] - z[runner_up(z, y)];
    let mut out = Vec::with_capacity(2 * rs.len());
    for (i, r) in rs.into_iter().enumerate() {
        let y = labels[i];
        let p0 = faultline_attacks::attack::argmax(&r.logits_before);
        out.push(SampleRecord {
            index: indices[i],
            label: y,
            condition: before.clone(),
            prediction: p0,
            logit_margin: margin(&r.logits_before, y),
            clean_prediction: None,
            attack: None,
            margin: None,
            flag: None,
        });
        let s = &r.result;
        out.push(SampleRecord {
            index: indices[i],
            label: y,
            condition: after.clone(),
            prediction: s.prediction,
            logit_margin: margin(&r.logits_after, y),
            clean_prediction: Some(p0),
            attack: Some(AttackOutcome {
                success: s.success,
                linf: s.linf,
                l2: s.l2,
                l1: s.l1,
                forward: s.forward,
                backward: s.backward,
                ..AttackOutcome::default()
            }),
            margin: None,
            flag: None,
        });
    }
    Ok(out)
}

/// Before and after per condition, from the records.
pub fn summarize(records: &[SampleRecord]) -> Vec<ReverseCondition> {
    #[derive(Default)]
    struct Acc {
        n: usize,
        right_before: usize,
        right_after: usize,
        corrected: usize,
        broken: usize,
        margin_before: f64,
        margin_after: f64,
    }
    let mut by: BTreeMap<String, Acc> = BTreeMap::new();
    for r in records {
        let a = by.entry(source_label(&r.condition)).or_default();
        match r.condition {
            Condition::Reverse { .. } => {
                a.n += 1;
                let (was, now) = (r.clean_correct(), r.correct());
                a.right_after += usize::from(now);
                a.corrected += usize::from(!was && now);
                a.broken += usize::from(was && !now);
                a.margin_after += r.logit_margin as f64;
            }
            _ => {
                a.right_before += usize::from(r.correct());
                a.margin_before += r.logit_margin as f64;
            }
        }
    }
    by.into_iter()
        .map(|(condition, a)| {
            let n = a.n.max(1) as f64;
            ReverseCondition {
                condition,
                n: a.n,
                accuracy_before: a.right_before as f64 / n,
                accuracy_after: a.right_after as f64 / n,
                corrected: a.corrected,
                broken: a.broken,
                mean_margin_before: a.margin_before / n,
                mean_margin_after: a.margin_after / n,
            }
        })
        .collect()
}
