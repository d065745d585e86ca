//! `classwise`: per-class accuracy, confusion, CFPS/CFNS, flip rate and worst-class figures for
//! the clean data, an attack (per ε), common corruptions (per family × severity) and targeted
//! attacks toward each class; latent-space structure of the penultimate features; SVG charts;
//! a ranking of the classes. The evaluation and the attacks run in process on the loaded model
//! through [`super::eval`] and [`super::attack`], each in its own sub-directory, so an
//! interrupted `classwise` resumes each step where it stopped.

use std::collections::HashMap;

use faultline_attacks::Norm;
use serde::Serialize;

use crate::classwise::{classwise, latent, ClasswiseReport, LatentReport, TargetReport};
use crate::corruption::CorruptionPlan;
use crate::error::Result;
use crate::latent_shift::{latent_shift, ShiftReport};
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
    /// The attack of the targeted runs (a single registered attack that takes a target)
    /// [default: `attack`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targeted_attack: Option<AttackConfig>,
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
    /// Where the attack (the ranking's ε) and each corruption move the penultimate features
    /// of each class, against the clean class centroids.
    pub latent_shift: Vec<ShiftReport>,
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
                let t = self.targeted_attack.as_ref().unwrap_or(a).build()?;
                crate::robust::check_target(&t, 0, classes)?;
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

/// Runs `classwise`, its evaluation and attack in the `eval/` and `attack/` sub-directories.
pub fn run(
    cfg: &ClasswiseConfig,
    loaded: &Loaded,
    out: &Output,
    progress: &dyn Progress,
) -> Result<ClasswiseRun> {
    run_with(
        cfg,
        loaded,
        out,
        (&out.sub("eval"), &out.sub("attack")),
        progress,
    )
}

/// Runs `classwise` with its evaluation and untargeted attack in the run directories
/// `eval_out` and `attack_out` (a composite command that ran them already passes their
/// directories, and their records are read back instead of recomputed).
pub fn run_with(
    cfg: &ClasswiseConfig,
    loaded: &Loaded,
    out: &Output,
    (eval_out, attack_out): (&Output, &Output),
    progress: &dyn Progress,
) -> Result<ClasswiseRun> {
    check_batch_size(cfg.batch_size)?;
    // A shard covers whole batches (see `Shard`).
    let selection = cfg.selection.batched(cfg.batch_size);
    let indices = loaded.select(&selection)?;
    let k = loaded.model.card.num_classes;
    let info = loaded.data.info();
    cfg.check(k, [info.channels, info.height, info.width])?;
    let names = loaded.class_names();
    let mut settings = loaded.settings(&selection, &indices)?;
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
        eval_out.dir.display()
    ));
    let ecfg = EvalConfig {
        selection: cfg.selection.clone(),
        batch_size: cfg.batch_size,
        corruptions: cfg.corruptions.clone(),
        ..EvalConfig::default()
    };
    let (_, evals) = eval::run_records(&ecfg, loaded, eval_out, progress)?;
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
            // The adversarial images, for the latent shift.
            save_adv: true,
            ..acfg.clone()
        };
        progress.note(&format!(
            "classwise: {} attack → {}",
            acfg.preset.as_deref().unwrap_or(&acfg.attack),
            attack_out.dir.display()
        ));
        let (_, recs) = attack::run_records(&acfg, loaded, attack_out, progress)?;
        let built = acfg.build()?;
        let recs = if built.is_min_norm() {
            let eps = acfg.radii(built.norm(), [info.channels, info.height, info.width])?;
            at_radii(&recs, built.norm(), &eps)
        } else {
            recs
        };
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
    if let (true, Some(acfg)) = (
        cfg.targeted,
        cfg.targeted_attack.as_ref().or(cfg.attack.as_ref()),
    ) {
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
    // 5. Latent space of the clean images, and where the perturbations move it.
    let (lat, clean_feats, labels, dim) =
        latent_of(loaded, &indices, cfg.batch_size, &reports, attack_reports)?;
    let shifts = shifts_of(
        cfg,
        loaded,
        &indices,
        (&clean_feats, &labels),
        dim,
        &reports,
        attack_reports,
        attack_out,
    )?;
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
        latent_shift: shifts,
        ranking,
        model: loaded.model.card.clone(),
        attack_reports,
    };
    plots::write(out, &run)?;
    rd.finish(&run)?;
    Ok(run)
}

/// The records of a minimum-norm attack read off at each radius of `eps` (the curve `attack`
/// reports for such attacks): a sample counts as broken at ε when the attack succeeded with a
/// perturbation of norm at most ε, and then keeps the adversarial prediction; otherwise it keeps
/// its clean prediction.
pub fn at_radii(recs: &[SampleRecord], norm: Norm, eps: &[f32]) -> Vec<SampleRecord> {
    let mut out = Vec::with_capacity(recs.len() * eps.len());
    for &e in eps {
        for r in recs {
            let mut r = r.clone();
            let broken = r
                .attack
                .as_ref()
                .is_some_and(|a| a.success && a.norm_in(norm) <= e);
            if let Condition::Attack { eps, .. } = &mut r.condition {
                *eps = Some(e);
            }
            if !broken {
                r.prediction = r.clean_prediction.unwrap_or(r.prediction);
                if let Some(a) = r.attack.as_mut() {
                    a.success = r.prediction != r.label;
                }
            }
            out.push(r);
        }
    }
    out
}

/// The latent structure of the clean penultimate features of the samples `indices`, correlated
/// with the confusion and the CFPS of the main attack condition (or the clean one).
fn latent_of(
    loaded: &Loaded,
    indices: &[usize],
    batch_size: usize,
    reports: &[ClasswiseReport],
    attack_reports: usize,
) -> Result<(LatentReport, Vec<f32>, Vec<usize>, usize)> {
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
    let lat = latent(
        &feats,
        dim,
        &labels,
        k,
        &reports[0].confusion,
        main.cfps.as_deref(),
    );
    Ok((lat, feats, labels, dim))
}

/// The penultimate features of `images` (row-major) and their width.
fn features(loaded: &Loaded, images: &[f32], n: usize) -> Result<(Vec<f32>, usize)> {
    let (_, f) = loaded.model.model.features(images, &["penultimate"])?;
    let f = f
        .into_iter()
        .next()
        .map(|t| t.into_f32())
        .transpose()?
        .unwrap_or_default();
    Ok((f.clone(), f.len() / n.max(1)))
}

/// The latent shift under the attack at the ranking's ε (its saved adversarial images) and under
/// each corruption condition (recomputed from the clean images); `attack_out` holds the attack
/// run.
#[allow(clippy::too_many_arguments)]
fn shifts_of(
    cfg: &ClasswiseConfig,
    loaded: &Loaded,
    indices: &[usize],
    (clean, labels): (&[f32], &[usize]),
    dim: usize,
    reports: &[ClasswiseReport],
    attack_reports: usize,
    attack_out: &Output,
) -> Result<Vec<ShiftReport>> {
    let k = loaded.model.card.num_classes;
    let cfps_of = |cond: &str| {
        reports
            .iter()
            .find(|r| r.condition == cond)
            .and_then(|r| r.cfps.clone())
    };
    let mut shifts = Vec::new();
    if attack_reports > 0 {
        let info = loaded.data.info();
        let per = info.channels * info.height * info.width;
        let adv = crate::run::npy::read_f32(&attack_out.file("adv_0.npy"))?;
        let mut feats = Vec::with_capacity(clean.len());
        for chunk in adv.chunks(per * cfg.batch_size.max(1)) {
            feats.extend(features(loaded, chunk, chunk.len() / per)?.0);
        }
        let cond = &reports[1].condition;
        shifts.push(latent_shift(
            cond,
            clean,
            &feats,
            dim,
            labels,
            k,
            cfps_of(cond).as_deref(),
        ));
    }
    if let Some(plan) = &cfg.corruptions {
        let conds = plan.conditions();
        let mut feats: Vec<Vec<f32>> = vec![Vec::new(); conds.len()];
        for b in read_batches(loaded.data.as_ref(), indices, cfg.batch_size)? {
            let b = b?;
            for (f, &(kind, sev)) in feats.iter_mut().zip(&conds) {
                let images = plan.corrupt(&b, kind, sev)?;
                f.extend(features(loaded, &images, b.len())?.0);
            }
        }
        for (f, (kind, sev)) in feats.iter().zip(conds) {
            let cond = Condition::Corruption {
                name: kind.name().into(),
                severity: sev,
            }
            .label();
            shifts.push(latent_shift(
                &cond,
                clean,
                f,
                dim,
                labels,
                k,
                cfps_of(&cond).as_deref(),
            ));
        }
    }
    Ok(shifts)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::AttackOutcome;

    fn rec(
        index: usize,
        label: usize,
        clean: usize,
        adv: usize,
        linf: Option<f32>,
    ) -> SampleRecord {
        SampleRecord {
            index,
            label,
            condition: Condition::Attack {
                name: "fab".into(),
                norm: Norm::Linf,
                eps: None,
            },
            prediction: adv,
            logit_margin: 0.0,
            clean_prediction: Some(clean),
            attack: Some(AttackOutcome {
                success: linf.is_some() || clean != label,
                linf: linf.unwrap_or(0.0),
                ..AttackOutcome::default()
            }),
            margin: None,
            flag: None,
        }
    }

    #[test]
    fn minimum_norm_records_are_broken_exactly_up_to_their_norm() {
        // Sample 0 broken at 0.02 (→ class 2), sample 1 never broken, sample 2 misclassified
        // clean (no attack needed).
        let recs = vec![
            rec(0, 0, 0, 2, Some(0.02)),
            rec(1, 1, 1, 1, None),
            rec(2, 2, 0, 0, None),
        ];
        let out = at_radii(&recs, Norm::Linf, &[0.01, 0.02]);
        assert_eq!(out.len(), 6);
        let preds: Vec<usize> = out.iter().map(|r| r.prediction).collect();
        assert_eq!(preds, vec![0, 1, 0, 2, 1, 0]);
        let eps: Vec<Option<f32>> = out.iter().map(|r| r.condition.eps()).collect();
        assert_eq!(eps, [vec![Some(0.01); 3], vec![Some(0.02); 3]].concat());
        assert!(!out[0].success() && out[3].success() && out[2].success());
    }
}
