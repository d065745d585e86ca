//! Robust accuracy under an adversarial attack, following AutoAttack's protocol: only clean-
//! correct samples are attacked (a clean mistake counts as broken with a zero perturbation);
//! for a list of ε, radii are attacked in ascending order and a sample broken at a smaller ε
//! stays broken at the larger ones (its perturbation lies in every larger ball), so the
//! robust-accuracy curve never rises with ε. Minimum-norm attacks run once and the curve follows
//! from the norms they find. An ensemble runs its stages one after the other at each ε and the
//! summary gives robust accuracy after each stage.
//!
//! # Sanity checks (AutoAttack's, and Carlini et al. 2019's checklist)
//! With [`Options::sanity`] (the default of the command line) a bounded attack also
//! measures signs of gradient masking, at a small documented cost:
//! * **monotone in ε** — every clean-correct sample is attacked at every ε (not only those
//!   still robust), so the raw per-ε results exist; a sample broken at a smaller ε that the
//!   attack does not break at a larger one is a violation, recorded as `carried_from` on its
//!   record (the smaller-ε result is carried over, as without the check). Cost: the samples
//!   already broken are attacked again at each larger ε; they usually break within a few steps.
//! * **unbounded attack** — the first [`SANITY_SAMPLES`] samples (in data order) still robust
//!   at the largest ε are attacked with APGD-CE (100 iterations) at ε = 1 (L∞) or √d (L2),
//!   balls that hold the whole image box: every one should break (`unbounded_success`). Cost:
//!   at most 100 forward and backward passes per checked sample.
//! * **gradients** — the cross-entropy gradient at each clean-correct image must be non-zero
//!   and finite (`gradient_issue`: `zero` or `non-finite`). Cost: one backward pass per sample
//!   (the clean forward pass is shared with the clean prediction).

pub mod sanity;
pub mod summary;

use faultline_attacks::attack::argmax;
use faultline_attacks::registry::{self, Settings};
use faultline_attacks::{Attack, AttackOutput, BatchRef, Goal, Method, Norm, StageDone, Tick};
use faultline_engine::{runner_up, Loss, Model};

use crate::error::{Error, Result};
use crate::record::{AttackOutcome, Condition, SampleRecord};

pub use sanity::{sanity_report, SanityReport};
pub use summary::{summarize, AttackSummary, CurvePoint, StagePoint};

/// How many still-robust samples of a run the unbounded sanity check attacks.
pub const SANITY_SAMPLES: usize = 10;

/// An ensemble's progress within a batch (for progress displays).
#[derive(Debug, Clone, Copy)]
pub struct StageProgress<'a> {
    /// The radius being attacked.
    pub eps: f32,
    /// The stage just finished.
    pub stage: &'a str,
    /// Its position (0-based) and the number of stages.
    pub position: (usize, usize),
    /// Clean-correct samples of the batch attacked at this ε.
    pub attacked: usize,
    /// Of them, still robust after this stage.
    pub robust: usize,
}

/// How far [`attack_batch`] is on its batch, once per iteration of the attack (for per-sample
/// progress displays).
#[derive(Debug, Clone, Copy)]
pub struct BatchTick {
    /// The radius being attacked (0 for a minimum-norm attack).
    pub eps: f32,
    /// Samples of the batch done, counting the radii (ascending) attacked before: a sample not
    /// attacked at a radius (wrong clean, or already broken) is done at it, an attacked one by
    /// the attack's [`faultline_attacks::Tick`]; fractional, at most the batch size.
    pub done: f64,
}

/// How [`attack_batch`] runs besides the attack itself.
#[derive(Default)]
pub struct Options<'a> {
    /// Targeted attack toward this class (success: classified as it); samples of the class are
    /// not attacked.
    pub target: Option<usize>,
    /// Run the sanity checks (see the module documentation).
    pub sanity: bool,
    /// How many more samples the unbounded sanity check may attack (the run's budget,
    /// [`SANITY_SAMPLES`], minus those checked in earlier batches).
    pub unbounded_left: usize,
    /// Called after each stage of an ensemble.
    pub progress: Option<&'a mut dyn FnMut(StageProgress)>,
    /// Called once per iteration of the attack.
    pub tick: Option<&'a mut dyn FnMut(BatchTick)>,
}

/// The clean pass of a batch: logits, and with the sanity checks the gradient issue of each
/// sample's cross-entropy gradient.
fn clean_pass(
    model: &Model,
    batch: BatchRef,
    labels: &[usize],
    sanity: bool,
) -> Result<(Vec<f32>, Vec<Option<String>>)> {
    if !sanity {
        return Ok((model.logits(batch.images)?, vec![None; labels.len()]));
    }
    let f = model.forward(batch.images)?;
    let (_, g) = f.loss_grad(&Loss::CrossEntropy { labels })?;
    let issue = g
        .chunks(batch.per())
        .map(|gi| {
            if gi.iter().any(|v| !v.is_finite()) {
                Some("non-finite".to_string())
            } else if gi.iter().all(|&v| v == 0.0) {
                Some("zero".to_string())
            } else {
                None
            }
        })
        .collect();
    Ok((f.logits().to_vec(), issue))
}

/// The radius of the unbounded sanity check: a ball that holds the whole image box.
fn unbounded_radius(norm: Norm, per: usize) -> f32 {
    match norm {
        Norm::Linf => 1.0,
        Norm::L2 => (per as f32).sqrt(),
        Norm::L1 => per as f32,
    }
}

/// Attacks one batch (`labels` are the true labels); returns the records (ε-major) and the
/// returned images per ε (one set for a minimum-norm attack).
pub fn attack_batch(
    model: &Model,
    batch: BatchRef,
    labels: &[usize],
    attack: &Attack,
    eps: &[f32],
    opts: &mut Options,
) -> Result<(Vec<SampleRecord>, Vec<Vec<f32>>)> {
    let k = model.num_classes();
    let n = labels.len();
    if n == 0 || !batch.images.len().is_multiple_of(n) || batch.indices.len() != n {
        return Err(Error::Invalid(format!(
            "{} values, {n} labels and {} indices do not make a batch",
            batch.images.len(),
            batch.indices.len()
        )));
    }
    if let Some((i, &y)) = labels.iter().enumerate().find(|(_, &y)| y >= k) {
        return Err(Error::LabelOutOfRange {
            data: "the batch".into(),
            index: batch.indices[i],
            label: y,
            classes: k,
        });
    }
    let per = batch.per();
    let target = opts.target;
    if let Some(t) = target {
        check_target(attack, t, k)?;
    }
    if let Some(&e) = eps.iter().find(|e| !(e.is_finite() && **e >= 0.0)) {
        return Err(Error::Invalid(format!(
            "ε must be a finite non-negative number, got {e}"
        )));
    }
    let sanity = opts.sanity && !attack.is_min_norm();
    let (z, grad_issue) = clean_pass(model, batch, labels, sanity)?;
    let clean: Vec<usize> = (0..n).map(|i| argmax(&z[i * k..(i + 1) * k])).collect();
    // The samples attacked: clean-correct, and not already of the target class.
    let is_correct = |i: usize| clean[i] == labels[i] && Some(labels[i]) != target;
    let correct: Vec<usize> = (0..n).filter(|&i| is_correct(i)).collect();
    let targets: Option<Vec<usize>> = target.map(|t| vec![t; n]);
    let goal = Goal {
        labels,
        targets: targets.as_deref(),
    };
    let condition = |e: Option<f32>| Condition::Attack {
        name: attack.name.clone(),
        norm: attack.norm(),
        eps: e,
    };
    // The record of a sample not (yet) attacked: its clean prediction, zero perturbation.
    let clean_record = |i: usize, e: Option<f32>| {
        let row = &z[i * k..(i + 1) * k];
        SampleRecord {
            index: batch.indices[i],
            label: labels[i],
            condition: condition(e),
            prediction: clean[i],
            logit_margin: row[labels[i]] - row[runner_up(row, labels[i])],
            clean_prediction: Some(clean[i]),
            attack: Some(AttackOutcome {
                success: match target {
                    Some(t) => clean[i] == t && labels[i] != t,
                    None => clean[i] != labels[i],
                },
                forward: 1,
                backward: u32::from(sanity),
                gradient_issue: if is_correct(i) {
                    grad_issue[i].clone()
                } else {
                    None
                },
                ..AttackOutcome::default()
            }),
            margin: None,
            flag: None,
        }
    };
    let stage_names: Vec<String> = attack.stages().iter().map(|s| s.to_string()).collect();
    // The radii in ascending order (one pass for a minimum-norm attack).
    let radii = if attack.is_min_norm() { 1 } else { eps.len() };
    // Attacks the batch positions `sel` at radius `e` (ignored by minimum-norm attacks), the
    // `pos`-th radius attacked.
    let mut run = |sel: &[usize], e: f32, pos: usize| -> Result<AttackOutput> {
        let s = batch.select(goal, sel);
        let (b, g) = s.parts();
        let m = sel.len();
        let mut watch = |t: Tick| {
            if let Some(p) = opts.tick.as_mut() {
                let here = (n - m) as f64 + t.done();
                p(BatchTick {
                    eps: e,
                    done: (pos as f64 * n as f64 + here) / radii as f64,
                });
            }
        };
        let mut report = |d: StageDone| {
            if let Some(p) = opts.progress.as_mut() {
                p(StageProgress {
                    eps: e,
                    stage: d.name,
                    position: d.position,
                    attacked: m,
                    robust: d.robust,
                });
            }
        };
        Ok(match &attack.method {
            Method::Bounded(a) => a.run_staged(model, b, g, e, &mut report, &mut watch)?,
            Method::MinNorm(a) => a.run_watched(model, b, g, &mut watch)?,
        })
    };
    // Folds an attack's result into a sample's record (pass counts are the caller's).
    let merge = |rec: &SampleRecord, r: &faultline_attacks::SampleResult| SampleRecord {
        prediction: r.prediction,
        logit_margin: r.logit_margin,
        attack: Some(AttackOutcome {
            success: r.success,
            linf: r.linf,
            l2: r.l2,
            l1: r.l1,
            stage: r.stage.and_then(|s| stage_names.get(s).cloned()),
            ..rec.attack.clone().unwrap_or_default()
        }),
        ..rec.clone()
    };
    if attack.is_min_norm() {
        let mut recs: Vec<SampleRecord> = (0..n).map(|i| clean_record(i, None)).collect();
        let mut adv = batch.images.to_vec();
        if !correct.is_empty() {
            let out = run(&correct, 0.0, 0)?;
            for (j, &i) in correct.iter().enumerate() {
                let r = &out.results[j];
                recs[i] = merge(&recs[i], r);
                if let Some(a) = recs[i].attack.as_mut() {
                    // The clean pass, then the attack's own passes.
                    (a.forward, a.backward) = (r.forward + 1, r.backward);
                }
                adv[i * per..(i + 1) * per].copy_from_slice(&out.adv[j * per..(j + 1) * per]);
            }
        }
        return Ok((recs, vec![adv]));
    }
    let mut order: Vec<usize> = (0..eps.len()).collect();
    order.sort_by(|&a, &b| eps[a].total_cmp(&eps[b]));
    let mut per_eps: Vec<Option<(Vec<SampleRecord>, Vec<f32>)>> = vec![None; eps.len()];
    // The state carried from smaller radii: the best record and image of each sample so far, and
    // the radius at which it was broken.
    let mut best: Vec<SampleRecord> = (0..n).map(|i| clean_record(i, None)).collect();
    let mut broken_at: Vec<Option<f32>> = vec![None; n];
    let mut adv = batch.images.to_vec();
    for (pos, &ei) in order.iter().enumerate() {
        let e = eps[ei];
        let todo: Vec<usize> = correct
            .iter()
            .copied()
            .filter(|&i| sanity || !best[i].success())
            .collect();
        let mut spent = vec![(0u32, 0u32); n];
        let mut spent_stages: Vec<Vec<[u32; 2]>> = vec![Vec::new(); n];
        let mut carried: Vec<Option<f32>> = broken_at.clone();
        if !todo.is_empty() {
            let out = run(&todo, e, pos)?;
            for (j, &i) in todo.iter().enumerate() {
                let r = &out.results[j];
                spent[i] = (r.forward, r.backward);
                spent_stages[i] = r.stage_passes.clone();
                if r.success || !best[i].success() {
                    best[i] = merge(&best[i], r);
                    adv[i * per..(i + 1) * per].copy_from_slice(&out.adv[j * per..(j + 1) * per]);
                    carried[i] = None;
                    if r.success {
                        broken_at[i] = Some(e);
                    }
                }
            }
        }
        let recs: Vec<SampleRecord> = (0..n)
            .map(|i| {
                let first = pos == 0;
                let prev = best[i].attack.clone().unwrap_or_default();
                SampleRecord {
                    condition: condition(Some(e)),
                    attack: Some(AttackOutcome {
                        forward: spent[i].0 + u32::from(first),
                        backward: spent[i].1 + u32::from(first && sanity),
                        carried_from: if is_correct(i) { carried[i] } else { None },
                        stage_passes: spent_stages[i].clone(),
                        ..prev
                    }),
                    ..best[i].clone()
                }
            })
            .collect();
        per_eps[ei] = Some((recs, adv.clone()));
    }
    if let (true, Some(&last)) = (sanity && opts.unbounded_left > 0, order.last()) {
        let sel: Vec<usize> = correct
            .iter()
            .copied()
            .filter(|&i| !best[i].success())
            .take(opts.unbounded_left)
            .collect();
        if let (false, Some((recs, _))) = (sel.is_empty(), per_eps[last].as_mut()) {
            unbounded_check(model, batch, goal, attack.norm(), &sel, recs)?;
            opts.unbounded_left -= sel.len();
        }
    }
    let mut records = Vec::with_capacity(n * eps.len());
    let mut images = Vec::with_capacity(eps.len());
    for (recs, img) in per_eps.into_iter().flatten() {
        records.extend(recs);
        images.push(img);
    }
    Ok((records, images))
}

/// Refuses targets out of range and attacks that cannot be targeted at a chosen class.
pub fn check_target(attack: &Attack, target: usize, classes: usize) -> Result<()> {
    if target >= classes {
        return Err(Error::Invalid(format!(
            "target class {target} is out of range for {classes} classes"
        )));
    }
    if attack.is_min_norm() {
        return Err(Error::Invalid(
            "targeted minimum-norm attacks are not available yet".into(),
        ));
    }
    if !attack.stages().is_empty() {
        return Err(Error::Invalid(
            "ensembles are untargeted (APGD-T and FAB-T choose their own targets)".into(),
        ));
    }
    // APGD-T and FAB-T rank their own target classes (`target_classes` > 0).
    let ranks = attack.describe()["params"]["target_classes"].as_u64();
    if ranks.is_some_and(|t| t > 0) {
        return Err(Error::Invalid(format!(
            "{} ranks its own target classes, so it cannot aim at a chosen one (--target, \
             --targeted): use apgd-ce, pgd or another attack for targeted runs",
            attack.name
        )));
    }
    Ok(())
}

/// The unbounded sanity check on batch positions `sel`: APGD-CE (PGD with 100 SLIDE steps in
/// L1, which APGD lacks) at a radius holding the whole box; marks `recs` (the largest ε's).
fn unbounded_check(
    model: &Model,
    batch: BatchRef,
    goal: Goal,
    norm: Norm,
    sel: &[usize],
    recs: &mut [SampleRecord],
) -> Result<()> {
    let big = unbounded_radius(norm, batch.per());
    let (name, steps) = if norm == Norm::L1 {
        ("pgd", Some(100))
    } else {
        ("apgd-ce", None)
    };
    let check = registry::build(
        name,
        &Settings {
            norm: Some(norm),
            steps,
            ..Settings::default()
        },
    )?;
    let Method::Bounded(check) = check.method else {
        return Err(Error::Invalid(format!("{name} is not a bounded attack")));
    };
    let s = batch.select(goal, sel);
    let (b, g) = s.parts();
    let out = check.run(model, b, g, big)?;
    for (j, &i) in sel.iter().enumerate() {
        let r = &out.results[j];
        if let Some(a) = recs[i].attack.as_mut() {
            a.unbounded_success = Some(r.success);
            a.unbounded_passes = Some([r.forward, r.backward]);
            a.forward += r.forward;
            a.backward += r.backward;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Condition;
    use faultline_attacks::Ensemble;

    fn rec(index: usize, eps: f32, success: bool, stage: Option<&str>) -> SampleRecord {
        SampleRecord {
            index,
            label: 1,
            condition: Condition::Attack {
                name: "standard".into(),
                norm: Norm::Linf,
                eps: Some(eps),
            },
            prediction: if success { 2 } else { 1 },
            logit_margin: 0.0,
            clean_prediction: Some(1),
            attack: Some(AttackOutcome {
                success,
                forward: 1,
                stage: stage.map(str::to_string),
                ..AttackOutcome::default()
            }),
            margin: None,
            flag: None,
        }
    }

    #[test]
    fn stages_and_sanity_follow_the_records() {
        let attack = Attack::bounded(
            "standard",
            Ensemble::preset("standard", &Settings::default()).unwrap(),
        );
        let eps = [0.1, 0.2];
        let mut recs = vec![
            // Sample 0: broken by APGD-CE at both radii.
            rec(0, 0.1, true, Some("apgd-ce")),
            rec(0, 0.2, true, Some("apgd-ce")),
            // Sample 1: robust at 0.1; broken by Square at 0.2.
            rec(1, 0.1, false, None),
            rec(1, 0.2, true, Some("square")),
            // Sample 2: broken by APGD-T at 0.1, not broken at 0.2 (carried over).
            rec(2, 0.1, true, Some("apgd-t")),
            rec(2, 0.2, true, Some("apgd-t")),
            // Sample 3: a clean mistake.
            rec(3, 0.1, true, None),
            rec(3, 0.2, true, None),
        ];
        let set =
            |r: &mut SampleRecord, f: &dyn Fn(&mut AttackOutcome)| f(r.attack.as_mut().unwrap());
        set(&mut recs[5], &|a| a.carried_from = Some(0.1));
        set(&mut recs[2], &|a| a.gradient_issue = Some("zero".into()));
        set(&mut recs[3], &|a| a.unbounded_success = Some(false));
        for r in recs.iter_mut().filter(|r| r.index == 3) {
            r.clean_prediction = Some(2);
        }
        let s = summarize(&recs, &attack, &eps);
        let after = |i: usize| -> Vec<f64> {
            s.curve[i]
                .stages
                .as_ref()
                .unwrap()
                .iter()
                .map(|p| p.robust_accuracy)
                .collect()
        };
        assert_eq!(after(0), vec![0.5, 0.25, 0.25, 0.25]);
        assert_eq!(after(1), vec![0.5, 0.25, 0.25, 0.0]);
        assert_eq!(s.curve[1].robust_accuracy, 0.0);
        let q = sanity_report(&recs, &attack, &eps).unwrap();
        assert_eq!(q.monotone.violations.len(), 1);
        assert_eq!(q.monotone.violations[0].index, 2);
        assert_eq!(
            (q.unbounded.checked, q.unbounded.still_robust.clone()),
            (1, vec![1])
        );
        assert_eq!(
            (q.gradients.checked, q.gradients.zero.clone()),
            (3, vec![1])
        );
        assert_eq!(
            q.square.iter().map(|c| c.broken).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(q.warnings.len(), 4, "{:?}", q.warnings);
    }
}
