//! Robust accuracy under an adversarial attack, following AutoAttack's protocol: only clean-
//! correct samples are attacked (a clean mistake counts as broken with a zero perturbation);
//! for a list of ε, radii are attacked in ascending order and a sample broken at a smaller ε
//! stays broken at the larger ones (its perturbation lies in every larger ball), so the
//! robust-accuracy curve never rises with ε. Minimum-norm attacks run once and the curve follows
//! from the norms they find. An ensemble ([`crate::ensemble`]) runs its stages one after the
//! other at each ε and reports robust accuracy after each stage.
//!
//! # Sanity checks (AutoAttack's, and Carlini et al. 2019's checklist)
//! With [`AttackOptions::sanity`] (the default of the command line) a bounded attack also
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

use faultline_attacks::{
    apgd, cw, deepfool, fab, pgd, square, ApgdParams, AttackOutput, CwParams, DeepFoolParams,
    FabParams, Goal, Norm, PgdParams, SquareParams,
};
use faultline_engine::{Loss, Model};
use serde::{Deserialize, Serialize};

use crate::ensemble::{run_stages, Stage};
use crate::error::{Error, Result};
use crate::eval::argmax;

/// How many still-robust samples of a run the unbounded sanity check attacks.
pub const SANITY_SAMPLES: usize = 10;

/// Which attack, with its parameters (ε is given separately).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "name", content = "params", rename_all = "lowercase")]
pub enum AttackSpec {
    /// PGD / FGSM / MI-FGSM (bounded).
    Pgd(PgdParams),
    /// APGD / APGD-T (bounded).
    Apgd(ApgdParams),
    /// DeepFool (minimum norm).
    DeepFool(DeepFoolParams),
    /// FAB (minimum norm when its `eps` is None, else bounded).
    Fab(FabParams),
    /// Square Attack (bounded, gradient-free).
    Square(SquareParams),
    /// Carlini & Wagner L2 (minimum norm).
    Cw(CwParams),
    /// Bounded attacks run one after the other on the points still robust (e.g. AutoAttack's
    /// standard version, [`crate::ensemble::standard`]).
    Ensemble(Vec<Stage>),
}

impl AttackSpec {
    /// The norm the attack works in.
    pub fn norm(&self) -> Norm {
        match self {
            AttackSpec::Pgd(p) => p.norm,
            AttackSpec::Apgd(p) => p.norm,
            AttackSpec::DeepFool(p) => p.norm,
            AttackSpec::Fab(p) => p.norm,
            AttackSpec::Square(p) => p.norm,
            AttackSpec::Cw(_) => Norm::L2,
            AttackSpec::Ensemble(s) => s.first().map_or(Norm::Linf, |s| s.spec.norm()),
        }
    }
    /// Whether the attack looks for the smallest perturbation rather than one within ε.
    pub fn is_min_norm(&self) -> bool {
        match self {
            AttackSpec::DeepFool(_) | AttackSpec::Cw(_) => true,
            AttackSpec::Fab(p) => p.eps.is_none(),
            AttackSpec::Pgd(_)
            | AttackSpec::Apgd(_)
            | AttackSpec::Square(_)
            | AttackSpec::Ensemble(_) => false,
        }
    }
    /// The stage names of an ensemble (empty for a single attack).
    pub fn stage_names(&self) -> Vec<&str> {
        match self {
            AttackSpec::Ensemble(s) => s.iter().map(|s| s.attack.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Runs one attack at radius `e` on a batch (minimum-norm attacks ignore `e`); returns its
/// output and, for an ensemble, the stage that broke each sample. `on_stage(s, robust)` reports
/// an ensemble's progress after each stage.
pub fn run_spec(
    model: &Model,
    x: &[f32],
    goal: Goal,
    indices: &[usize],
    spec: &AttackSpec,
    e: f32,
    on_stage: &mut dyn FnMut(usize, usize),
) -> Result<(AttackOutput, Vec<Option<usize>>)> {
    let n = goal.labels.len();
    let out = match spec {
        AttackSpec::Pgd(p) => pgd(
            model,
            x,
            goal,
            indices,
            &PgdParams {
                eps: e,
                ..p.clone()
            },
        )?,
        AttackSpec::Apgd(p) => apgd(
            model,
            x,
            goal,
            indices,
            &ApgdParams {
                eps: e,
                ..p.clone()
            },
        )?,
        AttackSpec::DeepFool(p) => deepfool(model, x, goal, p)?,
        AttackSpec::Fab(p) => {
            let eps = p.eps.map(|_| e);
            fab(model, x, goal, indices, &FabParams { eps, ..p.clone() })?
        }
        AttackSpec::Square(p) => square(
            model,
            x,
            goal,
            indices,
            &SquareParams {
                eps: e,
                ..p.clone()
            },
        )?,
        AttackSpec::Cw(p) => cw(model, x, goal, indices, p)?,
        AttackSpec::Ensemble(stages) => {
            let o = run_stages(model, x, goal, indices, stages, e, on_stage)?;
            return Ok((o.out, o.stage));
        }
    };
    Ok((out, vec![None; n]))
}

/// One sample under one ε (a line of `samples.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackRecord {
    /// Position in the data set.
    pub index: usize,
    /// True label.
    pub label: usize,
    /// Prediction on the clean image.
    pub clean_prediction: usize,
    /// The radius (None for a minimum-norm attack's single record).
    pub eps: Option<f32>,
    /// The sample is misclassified (or the target reached) within the budget — re-checked on the
    /// returned image.
    pub success: bool,
    /// Prediction on the returned image.
    pub prediction: usize,
    /// `z_label − max_{j≠label} z_j` on the returned image.
    pub logit_margin: f32,
    /// ‖δ‖∞ of the returned perturbation.
    pub linf: f32,
    /// ‖δ‖₂ of the returned perturbation.
    pub l2: f32,
    /// ‖δ‖₁ of the returned perturbation.
    #[serde(default)]
    pub l1: f32,
    /// Forward passes spent on the sample at this ε.
    pub forward: u32,
    /// Backward passes spent on the sample at this ε.
    pub backward: u32,
    /// Ensembles: the stage that broke the sample (absent when none did or for a clean mistake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The result is carried over from this smaller ε: the sample was not attacked again at
    /// this ε, or (with the sanity checks) the attack at this ε did not break it — a
    /// violation of monotonicity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried_from: Option<f32>,
    /// Sanity check (largest ε only, a few samples still robust): whether an unbounded attack
    /// broke the sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unbounded_success: Option<bool>,
    /// Sanity check: the cross-entropy gradient at the clean image is `zero` or `non-finite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_issue: Option<String>,
}

impl crate::record::SampleIndexed for AttackRecord {
    fn sample_index(&self) -> usize {
        self.index
    }
}

/// An ensemble's progress within a batch (for progress bars).
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

/// How [`attack_batch`] runs besides the attack itself.
#[derive(Default)]
pub struct AttackOptions<'a> {
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
}

/// Attacks one batch; returns the records (ε-major) and the returned images per ε (one set for
/// a minimum-norm attack).
pub fn attack_batch(
    model: &Model,
    x: &[f32],
    labels: &[usize],
    indices: &[usize],
    spec: &AttackSpec,
    eps: &[f32],
    opts: &mut AttackOptions,
) -> Result<(Vec<AttackRecord>, Vec<Vec<f32>>)> {
    let k = model.num_classes();
    let n = labels.len();
    if n == 0 || !x.len().is_multiple_of(n) || indices.len() != n {
        return Err(Error::Invalid(format!(
            "{} values, {n} labels and {} indices do not make a batch",
            x.len(),
            indices.len()
        )));
    }
    if let Some((i, y)) = labels.iter().enumerate().find(|(_, &y)| y >= k) {
        return Err(Error::Invalid(format!(
            "label {y} of sample {} is out of range for {k} classes",
            indices[i]
        )));
    }
    let per = x.len() / n;
    let target = opts.target;
    if let Some(t) = target {
        if t >= k {
            return Err(Error::Invalid(format!(
                "target class {t} is out of range for {k} classes"
            )));
        }
        if spec.is_min_norm() {
            return Err(Error::Invalid(
                "targeted minimum-norm attacks are not available yet".into(),
            ));
        }
        if matches!(spec, AttackSpec::Ensemble(_)) {
            return Err(Error::Invalid(
                "ensembles are untargeted (APGD-T and FAB-T choose their own targets)".into(),
            ));
        }
    }
    let sanity = opts.sanity && !spec.is_min_norm();
    // The clean pass: logits, and with the sanity checks the cross-entropy gradient too.
    let (z, grad_issue) = if sanity {
        let f = model.forward(x)?;
        let (_, g) = f.loss_grad(&Loss::CrossEntropy { labels })?;
        let issue: Vec<Option<String>> = g
            .chunks(per)
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
        (f.logits().to_vec(), issue)
    } else {
        (model.logits(x)?, vec![None; n])
    };
    let clean: Vec<usize> = (0..n).map(|i| argmax(&z[i * k..(i + 1) * k])).collect();
    let correct: Vec<usize> = (0..n)
        .filter(|&i| clean[i] == labels[i] && Some(labels[i]) != target)
        .collect();
    let clean_record = |i: usize, e: Option<f32>| {
        let row = &z[i * k..(i + 1) * k];
        let ok = correct.contains(&i);
        AttackRecord {
            index: indices[i],
            label: labels[i],
            clean_prediction: clean[i],
            eps: e,
            success: match target {
                Some(t) => clean[i] == t && labels[i] != t,
                None => clean[i] != labels[i],
            },
            prediction: clean[i],
            logit_margin: row[labels[i]] - row[faultline_engine::runner_up(row, labels[i])],
            linf: 0.0,
            l2: 0.0,
            l1: 0.0,
            forward: 1,
            backward: u32::from(sanity),
            stage: None,
            carried_from: None,
            unbounded_success: None,
            gradient_issue: if ok { grad_issue[i].clone() } else { None },
        }
    };
    let stage_names: Vec<String> = spec.stage_names().iter().map(|s| s.to_string()).collect();
    // Attacks the samples `sel` (batch positions) at radius `e`.
    // The images, labels, data-set indices and targets of the batch positions `sel`.
    type Subset = (Vec<f32>, Vec<usize>, Vec<usize>, Option<Vec<usize>>);
    let subset = |sel: &[usize]| -> Subset {
        let xs: Vec<f32> = sel
            .iter()
            .flat_map(|&i| x[i * per..(i + 1) * per].iter().copied())
            .collect();
        let ys = sel.iter().map(|&i| labels[i]).collect();
        let ids = sel.iter().map(|&i| indices[i]).collect();
        (xs, ys, ids, target.map(|t| vec![t; sel.len()]))
    };
    let mut run = |sel: &[usize], e: f32| -> Result<(AttackOutput, Vec<Option<usize>>)> {
        let (xs, ys, ids, ts) = subset(sel);
        let goal = Goal {
            labels: &ys,
            targets: ts.as_deref(),
        };
        let m = sel.len();
        let mut report = |s: usize, robust: usize| {
            if let Some(p) = opts.progress.as_mut() {
                p(StageProgress {
                    eps: e,
                    stage: stage_names.get(s).map_or("", String::as_str),
                    position: (s, stage_names.len()),
                    attacked: m,
                    robust,
                });
            }
        };
        run_spec(model, &xs, goal, &ids, spec, e, &mut report)
    };
    let mut records = Vec::new();
    let mut images = Vec::new();
    if spec.is_min_norm() {
        let mut recs: Vec<AttackRecord> = (0..n).map(|i| clean_record(i, None)).collect();
        let mut adv = x.to_vec();
        if !correct.is_empty() {
            let (out, _) = run(&correct, 0.0)?;
            for (j, &i) in correct.iter().enumerate() {
                let r = &out.results[j];
                recs[i] = AttackRecord {
                    success: r.success,
                    prediction: r.prediction,
                    logit_margin: r.logit_margin,
                    linf: r.linf,
                    l2: r.l2,
                    l1: r.l1,
                    forward: r.forward + 1,
                    backward: r.backward,
                    ..recs[i].clone()
                };
                adv[i * per..(i + 1) * per].copy_from_slice(&out.adv[j * per..(j + 1) * per]);
            }
        }
        records.extend(recs);
        images.push(adv);
        return Ok((records, images));
    }
    for &e in eps {
        if !(e >= 0.0 && e.is_finite()) {
            return Err(Error::Invalid(format!(
                "ε must be a finite non-negative number, got {e}"
            )));
        }
    }
    let mut order: Vec<usize> = (0..eps.len()).collect();
    order.sort_by(|&a, &b| eps[a].total_cmp(&eps[b]));
    let mut per_eps: Vec<Option<(Vec<AttackRecord>, Vec<f32>)>> = vec![None; eps.len()];
    // The state carried from smaller radii: the best record and image of each sample so far, and
    // the radius at which it was broken.
    let mut best: Vec<AttackRecord> = (0..n).map(|i| clean_record(i, None)).collect();
    let mut broken_at: Vec<Option<f32>> = vec![None; n];
    let mut adv = x.to_vec();
    for (pos, &ei) in order.iter().enumerate() {
        let e = eps[ei];
        let todo: Vec<usize> = correct
            .iter()
            .copied()
            .filter(|&i| sanity || !best[i].success)
            .collect();
        let mut spent = vec![(0u32, 0u32); n];
        let mut carried: Vec<Option<f32>> = broken_at.clone();
        if !todo.is_empty() {
            let (out, stage) = run(&todo, e)?;
            for (j, &i) in todo.iter().enumerate() {
                let r = &out.results[j];
                spent[i] = (r.forward, r.backward);
                if r.success || !best[i].success {
                    best[i] = AttackRecord {
                        success: r.success,
                        prediction: r.prediction,
                        logit_margin: r.logit_margin,
                        linf: r.linf,
                        l2: r.l2,
                        l1: r.l1,
                        stage: stage[j].and_then(|s| stage_names.get(s).cloned()),
                        ..best[i].clone()
                    };
                    adv[i * per..(i + 1) * per].copy_from_slice(&out.adv[j * per..(j + 1) * per]);
                    carried[i] = None;
                    if r.success {
                        broken_at[i] = Some(e);
                    }
                }
            }
        }
        let recs: Vec<AttackRecord> = (0..n)
            .map(|i| {
                let first = pos == 0;
                AttackRecord {
                    eps: Some(e),
                    forward: spent[i].0 + u32::from(first),
                    backward: spent[i].1 + u32::from(first && sanity),
                    carried_from: if correct.contains(&i) {
                        carried[i]
                    } else {
                        None
                    },
                    ..best[i].clone()
                }
            })
            .collect();
        per_eps[ei] = Some((recs, adv.clone()));
    }
    // Unbounded check on the first samples still robust at the largest ε.
    if let (true, Some(&last)) = (sanity && opts.unbounded_left > 0, order.last()) {
        let sel: Vec<usize> = correct
            .iter()
            .copied()
            .filter(|&i| !best[i].success)
            .take(opts.unbounded_left)
            .collect();
        if !sel.is_empty() {
            let norm = spec.norm();
            let big = match norm {
                Norm::Linf => 1.0,
                Norm::L2 => (per as f32).sqrt(),
                Norm::L1 => per as f32,
            };
            // APGD has no L1: PGD-L1 (100 SLIDE steps) checks L1 runs.
            let check = if norm == Norm::L1 {
                AttackSpec::Pgd(PgdParams {
                    norm,
                    eps: big,
                    steps: 100,
                    ..Default::default()
                })
            } else {
                AttackSpec::Apgd(ApgdParams::autoattack_ce(norm, big))
            };
            let (xs, ys, ids, ts) = subset(&sel);
            let goal = Goal {
                labels: &ys,
                targets: ts.as_deref(),
            };
            let (out, _) = run_spec(model, &xs, goal, &ids, &check, big, &mut |_, _| {})?;
            if let Some((recs, _)) = per_eps[last].as_mut() {
                for (j, &i) in sel.iter().enumerate() {
                    let r = &out.results[j];
                    recs[i].unbounded_success = Some(r.success);
                    recs[i].forward += r.forward;
                    recs[i].backward += r.backward;
                }
            }
            opts.unbounded_left -= sel.len();
        }
    }
    for slot in per_eps.into_iter().flatten() {
        records.extend(slot.0);
        images.push(slot.1);
    }
    Ok((records, images))
}

/// Robust accuracy after one stage of an ensemble.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StagePoint {
    /// The stage.
    pub attack: String,
    /// Fraction of samples neither misclassified clean nor broken by this or an earlier stage.
    pub robust_accuracy: f64,
}

/// Robust accuracy at one radius.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CurvePoint {
    /// The radius.
    pub eps: f32,
    /// Fraction of samples neither misclassified clean nor broken within ε.
    pub robust_accuracy: f64,
    /// Ensembles: robust accuracy after each stage (the last equals `robust_accuracy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StagePoint>>,
}

/// Summary of an attack run.
#[derive(Debug, Clone, Serialize)]
pub struct AttackSummary {
    /// Samples.
    pub n: usize,
    /// Clean accuracy on them.
    pub clean_accuracy: f64,
    /// Robust accuracy per ε, ascending.
    pub curve: Vec<CurvePoint>,
    /// Median norm of the smallest perturbation found, over clean-correct samples that were
    /// broken (minimum-norm attacks).
    pub median_min_norm: Option<f64>,
    /// Clean-correct samples for which no adversarial example was found (minimum-norm attacks).
    pub not_found: usize,
}

/// Summarizes records; for a minimum-norm attack the curve is computed at `eps` from the norms.
pub fn summarize_attack(records: &[AttackRecord], spec: &AttackSpec, eps: &[f32]) -> AttackSummary {
    let norm_of = |r: &AttackRecord| match spec.norm() {
        Norm::Linf => r.linf,
        Norm::L2 => r.l2,
        Norm::L1 => r.l1,
    };
    let mut idx: Vec<usize> = records.iter().map(|r| r.index).collect();
    idx.sort_unstable();
    idx.dedup();
    let n = idx.len();
    let first: Vec<&AttackRecord> = {
        let mut seen = std::collections::HashSet::new();
        records.iter().filter(|r| seen.insert(r.index)).collect()
    };
    let clean_ok = first
        .iter()
        .filter(|r| r.clean_prediction == r.label)
        .count();
    let mut sorted: Vec<f32> = eps.to_vec();
    sorted.sort_by(f32::total_cmp);
    let names = spec.stage_names();
    let frac = |c: usize| c as f64 / n.max(1) as f64;
    let curve = sorted
        .iter()
        .map(|&e| {
            let at: Vec<&AttackRecord> = records.iter().filter(|r| r.eps == Some(e)).collect();
            let robust = if spec.is_min_norm() {
                first
                    .iter()
                    .filter(|r| r.clean_prediction == r.label && (!r.success || norm_of(r) > e))
                    .count()
            } else {
                at.iter().filter(|r| !r.success).count()
            };
            let stages = (!names.is_empty()).then(|| {
                let rank = |r: &AttackRecord| {
                    r.stage
                        .as_deref()
                        .and_then(|s| names.iter().position(|&m| m == s))
                        .unwrap_or(0)
                };
                names
                    .iter()
                    .enumerate()
                    .map(|(s, name)| StagePoint {
                        attack: name.to_string(),
                        robust_accuracy: frac(
                            at.iter().filter(|r| !r.success || rank(r) > s).count(),
                        ),
                    })
                    .collect()
            });
            CurvePoint {
                eps: e,
                robust_accuracy: frac(robust),
                stages,
            }
        })
        .collect();
    let (median_min_norm, not_found) = if spec.is_min_norm() {
        let mut v: Vec<f64> = first
            .iter()
            .filter(|r| r.clean_prediction == r.label && r.success)
            .map(|r| norm_of(r) as f64)
            .collect();
        v.sort_by(f64::total_cmp);
        let nf = first
            .iter()
            .filter(|r| r.clean_prediction == r.label && !r.success)
            .count();
        ((!v.is_empty()).then(|| v[v.len() / 2]), nf)
    } else {
        (None, 0)
    };
    AttackSummary {
        n,
        clean_accuracy: clean_ok as f64 / n.max(1) as f64,
        curve,
        median_min_norm,
        not_found,
    }
}

/// The sanity checks of a run (see the module documentation), from its records.
#[derive(Debug, Clone, Serialize)]
pub struct SanityReport {
    /// Robust accuracy monotone in ε.
    pub monotone: MonotoneCheck,
    /// An unbounded attack breaks every sample.
    pub unbounded: UnboundedCheck,
    /// Non-zero, finite gradients at the clean images.
    pub gradients: GradientCheck,
    /// Ensembles ending with Square (gradient-free): per ε, the samples only Square broke
    /// (AutoAttack warns when Square lowers robust accuracy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub square: Vec<SquareCheck>,
    /// One line per problem found.
    pub warnings: Vec<String>,
}

/// Samples broken at a smaller ε that the attack did not break at a larger one.
#[derive(Debug, Clone, Serialize)]
pub struct MonotoneCheck {
    /// Each violation.
    pub violations: Vec<Violation>,
}

/// One violation of monotonicity.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// The sample.
    pub index: usize,
    /// The smaller ε at which it was broken.
    pub broken_at: f32,
    /// The larger ε at which the attack left it robust.
    pub robust_at: f32,
}

/// The unbounded attack on a few samples still robust at the largest ε.
#[derive(Debug, Clone, Serialize)]
pub struct UnboundedCheck {
    /// The attack.
    pub attack: String,
    /// Samples checked.
    pub checked: usize,
    /// Those it did not break.
    pub still_robust: Vec<usize>,
}

/// Gradients at the clean images of the clean-correct samples.
#[derive(Debug, Clone, Serialize)]
pub struct GradientCheck {
    /// Samples checked.
    pub checked: usize,
    /// Indices with a zero cross-entropy gradient.
    pub zero: Vec<usize>,
    /// Indices with a non-finite gradient.
    pub non_finite: Vec<usize>,
}

/// Samples only the gradient-free last stage broke at one ε.
#[derive(Debug, Clone, Serialize)]
pub struct SquareCheck {
    /// The radius.
    pub eps: f32,
    /// Samples broken by Square and by no earlier stage.
    pub broken: usize,
}

/// Builds the sanity report from the records of a bounded run made with
/// [`AttackOptions::sanity`] (`None` for minimum-norm attacks). Without the checks,
/// `carried_from` only says that a sample was not attacked again.
pub fn sanity_report(
    records: &[AttackRecord],
    spec: &AttackSpec,
    eps: &[f32],
) -> Option<SanityReport> {
    if spec.is_min_norm() {
        return None;
    }
    let norm = spec.norm();
    let mut violations: Vec<Violation> = records
        .iter()
        .filter_map(|r| {
            Some(Violation {
                index: r.index,
                broken_at: r.carried_from?,
                robust_at: r.eps?,
            })
        })
        .collect();
    violations.sort_by(|a, b| {
        a.index
            .cmp(&b.index)
            .then(a.robust_at.total_cmp(&b.robust_at))
    });
    let checked = records
        .iter()
        .filter(|r| r.unbounded_success.is_some())
        .count();
    let still_robust: Vec<usize> = records
        .iter()
        .filter(|r| r.unbounded_success == Some(false))
        .map(|r| r.index)
        .collect();
    let mut seen = std::collections::HashSet::new();
    let first: Vec<&AttackRecord> = records.iter().filter(|r| seen.insert(r.index)).collect();
    let ok: Vec<&&AttackRecord> = first
        .iter()
        .filter(|r| r.clean_prediction == r.label)
        .collect();
    let with = |what: &str| -> Vec<usize> {
        ok.iter()
            .filter(|r| r.gradient_issue.as_deref() == Some(what))
            .map(|r| r.index)
            .collect()
    };
    let gradients = GradientCheck {
        checked: ok.len(),
        zero: with("zero"),
        non_finite: with("non-finite"),
    };
    let mut sorted: Vec<f32> = eps.to_vec();
    sorted.sort_by(f32::total_cmp);
    let square: Vec<SquareCheck> = match spec.stage_names().last() {
        Some(&"square") if spec.stage_names().len() > 1 => sorted
            .iter()
            .map(|&e| SquareCheck {
                eps: e,
                broken: records
                    .iter()
                    .filter(|r| {
                        r.eps == Some(e)
                            && r.success
                            && r.stage.as_deref() == Some("square")
                            && r.carried_from.is_none()
                    })
                    .count(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let big = match norm {
        Norm::Linf => "1",
        Norm::L2 => "√d",
        Norm::L1 => "d",
    };
    let mut warnings = Vec::new();
    if let Some(v) = violations.first() {
        warnings.push(format!(
            "{} sample(s) broken at a smaller ε were not broken at a larger one (e.g. sample {}: \
             broken at ε = {}, robust at ε = {}): the attack is unreliable, possibly because of \
             gradient masking",
            violations.len(),
            v.index,
            eps_label(v.broken_at),
            eps_label(v.robust_at)
        ));
    }
    if let Some(&i) = still_robust.first() {
        warnings.push(format!(
            "{} of {checked} sample(s) checked stay robust under APGD-CE at ε = {big} ({}), a \
             ball holding the whole image box (e.g. sample {i}): a sign of gradient masking or \
             of a broken attack",
            still_robust.len(),
            norm.name(),
        ));
    }
    for (list, what) in [
        (&gradients.zero, "zero"),
        (&gradients.non_finite, "non-finite"),
    ] {
        if let Some(&i) = list.first() {
            warnings.push(format!(
                "{} clean-correct sample(s) have a {what} cross-entropy gradient (e.g. sample \
                 {i}): gradient-based attacks may be unreliable on them",
                list.len(),
            ));
        }
    }
    for q in square.iter().filter(|q| q.broken > 0) {
        warnings.push(format!(
            "Square broke {} sample(s) the gradient-based stages left robust at ε = {} (robust \
             accuracy −{:.2} %): the gradient-based evaluation may be unreliable",
            q.broken,
            eps_label(q.eps),
            100.0 * q.broken as f64 / first.len().max(1) as f64
        ));
    }
    Some(SanityReport {
        monotone: MonotoneCheck { violations },
        unbounded: UnboundedCheck {
            attack: format!("apgd-ce, 100 iterations, ε = {big} ({})", norm.name()),
            checked,
            still_robust,
        },
        gradients,
        square,
        warnings,
    })
}

/// A radius as people write it: a short decimal (`0.5`, `0.2`) when it has one, else a
/// fraction of 255 (`8/255`) when it is one, else the decimal.
pub fn eps_label(e: f32) -> String {
    let s = format!("{e}");
    let k = e * 255.0;
    if s.len() > 6 && (k - k.round()).abs() < 1e-4 && k.round() > 0.0 {
        format!("{}/255", k.round())
    } else {
        s
    }
}

/// Parses a radius: a decimal (`0.031`) or a fraction (`8/255`).
pub fn parse_eps(s: &str) -> Result<f32> {
    let bad = || {
        Error::Invalid(format!(
            "ε '{s}': use a number such as 0.03 or a fraction such as 8/255"
        ))
    };
    let v = match s.trim().split_once('/') {
        Some((a, b)) => {
            let (a, b): (f64, f64) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if b == 0.0 {
                return Err(bad());
            }
            a / b
        }
        None => s.trim().parse::<f64>().map_err(|_| bad())?,
    };
    if !(v.is_finite() && v >= 0.0) {
        return Err(bad());
    }
    Ok(v as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eps_accepts_fractions() {
        assert_eq!(parse_eps("8/255").unwrap(), 8.0 / 255.0);
        assert_eq!(parse_eps("0.5").unwrap(), 0.5);
        assert!(parse_eps("1/0").is_err());
        assert!(parse_eps("-1").is_err());
        assert!(parse_eps("abc").unwrap_err().to_string().contains("8/255"));
        assert_eq!(eps_label(parse_eps("8/255").unwrap()), "8/255");
        assert_eq!(eps_label(0.2), "0.2");
        assert_eq!(eps_label(0.5), "0.5");
        assert_eq!(eps_label(0.0123456), "0.0123456");
    }

    fn rec(index: usize, eps: f32, success: bool, stage: Option<&str>) -> AttackRecord {
        AttackRecord {
            index,
            label: 1,
            clean_prediction: 1,
            eps: Some(eps),
            success,
            prediction: if success { 2 } else { 1 },
            logit_margin: 0.0,
            linf: 0.0,
            l2: 0.0,
            l1: 0.0,
            forward: 1,
            backward: 0,
            stage: stage.map(str::to_string),
            carried_from: None,
            unbounded_success: None,
            gradient_issue: None,
        }
    }

    #[test]
    fn stages_and_sanity_follow_the_records() {
        let spec = AttackSpec::Ensemble(crate::ensemble::standard(Norm::Linf, 0));
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
        recs[5].carried_from = Some(0.1);
        recs[2].gradient_issue = Some("zero".into());
        recs[3].unbounded_success = Some(false);
        for r in recs.iter_mut().filter(|r| r.index == 3) {
            r.clean_prediction = 2;
        }
        let s = summarize_attack(&recs, &spec, &eps);
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
        let q = sanity_report(&recs, &spec, &eps).unwrap();
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
