//! `classwise`: per-class accuracy, confusion, CFPS/CFNS, flip rate and worst-class figures for
//! the clean data, an attack (per ε), common corruptions (per family × severity) and targeted
//! attacks toward each class; latent-space structure of the penultimate features; SVG charts;
//! a ranking of the classes. The evaluation and the attacks run in process on the loaded model
//! through [`super::eval`] and [`super::attack`], each in its own sub-directory, so an
//! interrupted `classwise` resumes each step where it stopped.

use std::collections::HashMap;

use serde::Serialize;

use crate::classwise::{classwise, latent, ClasswiseReport, LatentReport, TargetReport};
use crate::corruption::CorruptionPlan;
use crate::error::Result;
use crate::model::ModelCard;
use crate::record::{Condition, SampleRecord};
use crate::run::attack::{self, AttackConfig};
use crate::run::eval::{self, EvalConfig};
use crate::run::{check_batch_size, Loaded, Output, Progress};
use crate::rundir::RunDir;
use crate::subset::{read_batches, Selection};

mod plots;

/// Settings of `classwise`.
#[derive(Debug, Clone, Serialize)]
pub struct ClasswiseConfig {
    /// The attack (its radii; the first is used for the targeted runs) [default: none].
    pub attack: Option<AttackConfig>,
    /// Also attack toward every class.
    pub targeted: bool,
    /// Corruptions to include [default: none].
    pub corruptions: Option<CorruptionPlan>,
    /// The samples analysed [default: all] (by every step).
    pub selection: Selection,
    /// Images per batch.
    pub batch_size: usize,
}

/// One class in the ranking, from most to least vulnerable.
#[derive(Debug, Clone, Serialize)]
pub struct RankedClass {
    /// Class index.
    pub class: usize,
    /// Class name.
    pub name: String,
    /// Clean accuracy of the class.
    pub clean_accuracy: Option<f64>,
    /// The attack condition the ranking uses (first ε).
    pub attack: Option<String>,
    /// Accuracy of the class under it.
    pub attack_accuracy: Option<f64>,
    /// CFPS of the class under it.
    pub attack_cfps: Option<f64>,
    /// Mean accuracy of the class over the corruption families.
    pub corruption_accuracy: Option<f64>,
    /// How easily a targeted attack reaches the class.
    pub targeted_success_rate: Option<f64>,
}

/// The body of `classwise`'s `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ClasswiseRun {
    /// One name per class.
    pub class_names: Vec<String>,
    /// Condition → class → CFPS.
    pub cfps: serde_json::Map<String, serde_json::Value>,
    /// Clean first, then the attack per ε, then each corruption × severity.
    pub classwise: Vec<ClasswiseReport>,
    /// Per corruption family over all severities.
    pub corruption_families: Vec<ClasswiseReport>,
    /// Targeted attacks toward each class.
    pub targeted: Vec<TargetReport>,
    /// Class-wise counters against the target label, per target.
    pub targeted_counters: Vec<ClasswiseReport>,
    /// Latent structure of the clean penultimate features.
    pub latent: LatentReport,
    /// Classes from most to least vulnerable.
    pub ranking: Vec<RankedClass>,
    /// The model.
    pub model: ModelCard,
    /// How many entries of `classwise` are attack conditions (after the clean one).
    #[serde(skip)]
    pub attack_reports: usize,
}

impl ClasswiseConfig {
    /// Checks every setting before anything runs: the attack, its radii and, for targeted
    /// runs, that it can aim at a class of the `classes`.
    pub fn check(&self, classes: usize, image: [usize; 3]) -> Result<()> {
        if let Some(a) = &self.attack {
            let attack = a.build()?;
            a.radii(attack.norm(), image)?;
            if self.targeted {
                crate::robust::check_target(&attack, 0, classes)?;
            }
        }
        Ok(())
    }
}

/// The per-class figures of `records` of one condition; `clean` maps sample → clean prediction.
fn report_of(
    name: &str,
    records: &[&SampleRecord],
    k: usize,
    clean: Option<&HashMap<usize, usize>>,
) -> ClasswiseReport {
    let pairs: Vec<(usize, usize)> = records.iter().map(|r| (r.label, r.prediction)).collect();
    let cp: Option<Vec<usize>> = clean.map(|m| {
        records
            .iter()
            .map(|r| {
                r.clean_prediction
                    .or_else(|| m.get(&r.index).copied())
                    .unwrap_or(usize::MAX)
            })
            .collect()
    });
    classwise(name, &pairs, k, cp.as_deref())
}

/// Runs `classwise`.
pub fn run(
    cfg: &ClasswiseConfig,
    loaded: &Loaded,
    out: &Output,
    progress: &dyn Progress,
) -> Result<ClasswiseRun> {
    check_batch_size(cfg.batch_size)?;
    let indices = loaded.select(&cfg.selection)?;
    let k = loaded.model.card.num_classes;
    let info = loaded.data.info();
    cfg.check(k, [info.channels, info.height, info.width])?;
    let names = loaded.class_names();
    let mut settings = loaded.settings(&cfg.selection, &indices);
    settings["config"] = serde_json::to_value(cfg).unwrap_or_default();
    let (rd, _) = RunDir::open::<SampleRecord>(&out.dir, "classwise", settings, out.mode())?;
    if let Some(line) = rd.replaced() {
        progress.note(line);
    }
    // 1. Clean (and corrupted) predictions.
    progress.note(&format!(
        "classwise: clean{} predictions → {}",
        if cfg.corruptions.is_some() {
            " and corrupted"
        } else {
            ""
        },
        out.sub("eval").dir.display()
    ));
    let ecfg = EvalConfig {
        selection: cfg.selection.clone(),
        batch_size: cfg.batch_size,
        corruptions: cfg.corruptions.clone(),
        baseline: None,
    };
    let (_, evals) = eval::run_records(&ecfg, loaded, &out.sub("eval"), progress)?;
    let clean: Vec<&SampleRecord> = evals
        .iter()
        .filter(|r| r.condition == Condition::Clean)
        .collect();
    let clean_pred: HashMap<usize, usize> = clean.iter().map(|r| (r.index, r.prediction)).collect();
    let mut reports = vec![report_of("clean", &clean, k, None)];
    // 2. Untargeted attack, per ε.
    if let Some(acfg) = &cfg.attack {
        let acfg = AttackConfig {
            selection: cfg.selection.clone(),
            batch_size: cfg.batch_size,
            target: None,
            ..acfg.clone()
        };
        progress.note(&format!(
            "classwise: {} attack → {}",
            acfg.preset.as_deref().unwrap_or(&acfg.attack),
            out.sub("attack").dir.display()
        ));
        let (_, recs) = attack::run_records(&acfg, loaded, &out.sub("attack"), progress)?;
        let mut conds: Vec<Condition> = Vec::new();
        for r in &recs {
            if !conds.contains(&r.condition) {
                conds.push(r.condition.clone());
            }
        }
        conds.sort_by(|a, b| a.eps().unwrap_or(0.0).total_cmp(&b.eps().unwrap_or(0.0)));
        for c in &conds {
            let sel: Vec<&SampleRecord> = recs.iter().filter(|r| &r.condition == c).collect();
            reports.push(report_of(&c.label(), &sel, k, Some(&clean_pred)));
        }
    }
    let attack_reports = reports.len() - 1;
    // 3. Corruptions: per family × severity, and per family over all severities.
    let mut family_reports = Vec::new();
    if let Some(plan) = &cfg.corruptions {
        for &kind in &plan.kinds {
            let fam: Vec<&SampleRecord> = evals
                .iter()
                .filter(|r| r.condition.corruption().is_some_and(|c| c.0 == kind.name()))
                .collect();
            for &s in &plan.severities {
                let sel: Vec<&SampleRecord> = fam
                    .iter()
                    .copied()
                    .filter(|r| r.condition.corruption().is_some_and(|c| c.1 == s))
                    .collect();
                let cond = Condition::Corruption {
                    name: kind.name().into(),
                    severity: s,
                };
                reports.push(report_of(&cond.label(), &sel, k, Some(&clean_pred)));
            }
            family_reports.push(report_of(kind.name(), &fam, k, None));
        }
    }
    // 4. Targeted attacks toward each class.
    let mut targeted = Vec::new();
    let mut target_reports = Vec::new();
    if let (true, Some(acfg)) = (cfg.targeted, &cfg.attack) {
        for (t, name) in names.iter().enumerate().take(k) {
            let sub = out.sub(&format!("targeted-{t}"));
            progress.note(&format!(
                "classwise: targeted {} toward {name} ({}/{k}) → {}",
                acfg.attack,
                t + 1,
                sub.dir.display()
            ));
            let tcfg = AttackConfig {
                eps: acfg.eps.iter().take(1).copied().collect(),
                target: Some(t),
                selection: cfg.selection.clone(),
                batch_size: cfg.batch_size,
                ..acfg.clone()
            };
            let (_, recs) = attack::run_records(&tcfg, loaded, &sub, progress)?;
            let others: Vec<&SampleRecord> = recs.iter().filter(|r| r.label != t).collect();
            // The class-wise counters measured against the target label (methods.md §2.3).
            let pairs: Vec<(usize, usize)> = others.iter().map(|r| (t, r.prediction)).collect();
            let cp: Vec<usize> = others
                .iter()
                .map(|r| r.clean_prediction.unwrap_or(r.prediction))
                .collect();
            target_reports.push(classwise(
                &format!("{} toward {name}", acfg.attack),
                &pairs,
                k,
                Some(&cp),
            ));
            let hit = others.iter().filter(|r| r.prediction == t).count();
            let wrong = others.iter().filter(|r| !r.correct()).count();
            targeted.push(TargetReport {
                target: t,
                attacked: others.len(),
                success_rate: hit as f64 / others.len().max(1) as f64,
                misclassified_rate: wrong as f64 / others.len().max(1) as f64,
            });
        }
    }
    // 5. Latent space of the clean images.
    let lat = latent_of(loaded, &indices, cfg.batch_size, &reports, attack_reports)?;
    // 6. Records, plots, ranking.
    let cfps = reports
        .iter()
        .chain(&family_reports)
        .map(|r| {
            let per: serde_json::Map<String, serde_json::Value> = names
                .iter()
                .enumerate()
                .map(|(c, n)| (n.clone(), serde_json::json!(r.cfps.as_ref().map(|v| v[c]))))
                .collect();
            (r.condition.clone(), serde_json::Value::Object(per))
        })
        .collect();
    let attack_report = (attack_reports > 0).then(|| &reports[1]);
    let ranking = rank(
        &reports[0],
        attack_report,
        &family_reports,
        &targeted,
        &names,
    );
    let run = ClasswiseRun {
        class_names: names,
        cfps,
        classwise: reports,
        corruption_families: family_reports,
        targeted,
        targeted_counters: target_reports,
        latent: lat,
        ranking,
        model: loaded.model.card.clone(),
        attack_reports,
    };
    plots::write(out, &run)?;
    rd.finish(&run)?;
    Ok(run)
}

/// The latent structure of the clean penultimate features of the samples `indices`, correlated
/// with the confusion and the CFPS of the main attack condition (or the clean one).
fn latent_of(
    loaded: &Loaded,
    indices: &[usize],
    batch_size: usize,
    reports: &[ClasswiseReport],
    attack_reports: usize,
) -> Result<LatentReport> {
    let k = loaded.model.card.num_classes;
    let main = if attack_reports > 0 {
        &reports[1]
    } else {
        &reports[0]
    };
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    let mut dim = 0;
    for b in read_batches(loaded.data.as_ref(), indices, batch_size)? {
        let b = b?;
        let (_, f) = loaded.model.model.features(&b.images, &["penultimate"])?;
        dim = f[0].len() / b.len().max(1);
        feats.extend_from_slice(f[0].as_f32()?);
        labels.extend_from_slice(&b.labels);
    }
    Ok(latent(
        &feats,
        dim,
        &labels,
        k,
        &reports[0].confusion,
        main.cfps.as_deref(),
    ))
}

/// Classes from most to least vulnerable: by accuracy under the attack (first ε), then CFPS
/// under it (classes that attract errors are the ones an attacker exploits), then accuracy
/// under corruptions (mean over families), then clean accuracy.
fn rank(
    clean: &ClasswiseReport,
    attack: Option<&ClasswiseReport>,
    families: &[ClasswiseReport],
    targeted: &[TargetReport],
    names: &[String],
) -> Vec<RankedClass> {
    let corr_mean = |c: usize| -> Option<f64> {
        let v: Vec<f64> = families
            .iter()
            .filter_map(|f| f.class_accuracy[c])
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let key = |c: usize| -> [f64; 4] {
        [
            attack.and_then(|a| a.class_accuracy[c]).unwrap_or(1.0),
            -attack
                .and_then(|a| a.cfps.as_ref().map(|v| v[c]))
                .unwrap_or(0.0),
            corr_mean(c).unwrap_or(1.0),
            clean.class_accuracy[c].unwrap_or(1.0),
        ]
    };
    let mut rows: Vec<usize> = (0..names.len().min(clean.class_accuracy.len())).collect();
    rows.sort_by(|&a, &b| {
        let (ka, kb) = (key(a), key(b));
        ka.iter()
            .zip(&kb)
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(a.cmp(&b))
    });
    rows.iter()
        .map(|&c| RankedClass {
            class: c,
            name: names[c].clone(),
            clean_accuracy: clean.class_accuracy[c],
            attack: attack.map(|a| a.condition.clone()),
            attack_accuracy: attack.and_then(|a| a.class_accuracy[c]),
            attack_cfps: attack.and_then(|a| a.cfps.as_ref().map(|v| v[c])),
            corruption_accuracy: corr_mean(c),
            targeted_success_rate: targeted
                .iter()
                .find(|t| t.target == c)
                .map(|t| t.success_rate),
        })
        .collect()
}
