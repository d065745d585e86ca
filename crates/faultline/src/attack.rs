//! Robust accuracy under an adversarial attack, following AutoAttack's protocol: only clean-
//! correct samples are attacked (a clean mistake counts as broken with a zero perturbation);
//! for a list of ε, radii are attacked in ascending order and a sample broken at a smaller ε
//! stays broken at the larger ones (its perturbation lies in every larger ball), so the
//! robust-accuracy curve never rises with ε. Minimum-norm attacks run once and the curve follows
//! from the norms they find.

use faultline_attacks::{
    apgd, deepfool, fab, pgd, ApgdParams, AttackOutput, DeepFoolParams, FabParams, Goal, Norm,
    PgdParams,
};
use faultline_engine::Model;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::argmax;

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
}

impl AttackSpec {
    /// The norm the attack works in.
    pub fn norm(&self) -> Norm {
        match self {
            AttackSpec::Pgd(p) => p.norm,
            AttackSpec::Apgd(p) => p.norm,
            AttackSpec::DeepFool(p) => p.norm,
            AttackSpec::Fab(p) => p.norm,
        }
    }
    /// Whether the attack looks for the smallest perturbation rather than one within ε.
    pub fn is_min_norm(&self) -> bool {
        match self {
            AttackSpec::DeepFool(_) => true,
            AttackSpec::Fab(p) => p.eps.is_none(),
            AttackSpec::Pgd(_) | AttackSpec::Apgd(_) => false,
        }
    }
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
    /// Forward passes spent on the sample at this ε.
    pub forward: u32,
    /// Backward passes spent on the sample at this ε.
    pub backward: u32,
}

impl crate::record::SampleIndexed for AttackRecord {
    fn sample_index(&self) -> usize {
        self.index
    }
}

/// Attacks one batch; returns the records (ε-major) and the returned images per ε (one set for
/// a minimum-norm attack). With a `target` class the attack is targeted: success means being
/// classified as the target, and samples of the target class are not attacked.
pub fn attack_batch(
    model: &Model,
    x: &[f32],
    labels: &[usize],
    indices: &[usize],
    spec: &AttackSpec,
    eps: &[f32],
    target: Option<usize>,
) -> Result<(Vec<AttackRecord>, Vec<Vec<f32>>)> {
    let k = model.num_classes();
    let n = labels.len();
    let per = x.len() / n.max(1);
    let z = model.logits(x)?;
    let clean: Vec<usize> = (0..n).map(|i| argmax(&z[i * k..(i + 1) * k])).collect();
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
    }
    let correct: Vec<usize> = (0..n)
        .filter(|&i| clean[i] == labels[i] && Some(labels[i]) != target)
        .collect();
    let clean_record = |i: usize, e: Option<f32>| {
        let row = &z[i * k..(i + 1) * k];
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
            forward: 1,
            backward: 0,
        }
    };
    let run = |sel: &[usize], e: f32| -> Result<AttackOutput> {
        let xs: Vec<f32> = sel
            .iter()
            .flat_map(|&i| x[i * per..(i + 1) * per].iter().copied())
            .collect();
        let ys: Vec<usize> = sel.iter().map(|&i| labels[i]).collect();
        let ids: Vec<usize> = sel.iter().map(|&i| indices[i]).collect();
        let ts: Option<Vec<usize>> = target.map(|t| vec![t; sel.len()]);
        let goal = Goal {
            labels: &ys,
            targets: ts.as_deref(),
        };
        Ok(match spec {
            AttackSpec::Pgd(p) => pgd(
                model,
                &xs,
                goal,
                &ids,
                &PgdParams {
                    eps: e,
                    ..p.clone()
                },
            )?,
            AttackSpec::Apgd(p) => apgd(
                model,
                &xs,
                goal,
                &ids,
                &ApgdParams {
                    eps: e,
                    ..p.clone()
                },
            )?,
            AttackSpec::DeepFool(p) => deepfool(model, &xs, goal, p)?,
            AttackSpec::Fab(p) => {
                let eps = p.eps.map(|_| e);
                fab(model, &xs, goal, &ids, &FabParams { eps, ..p.clone() })?
            }
        })
    };
    let mut records = Vec::new();
    let mut images = Vec::new();
    if spec.is_min_norm() {
        let mut recs: Vec<AttackRecord> = (0..n).map(|i| clean_record(i, None)).collect();
        let mut adv = x.to_vec();
        if !correct.is_empty() {
            let out = run(&correct, 0.0)?;
            for (j, &i) in correct.iter().enumerate() {
                let r = &out.results[j];
                recs[i] = AttackRecord {
                    success: r.success,
                    prediction: r.prediction,
                    logit_margin: r.logit_margin,
                    linf: r.linf,
                    l2: r.l2,
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
    let mut order: Vec<usize> = (0..eps.len()).collect();
    order.sort_by(|&a, &b| eps[a].total_cmp(&eps[b]));
    let mut per_eps: Vec<Option<(Vec<AttackRecord>, Vec<f32>)>> = vec![None; eps.len()];
    // The state carried from smaller radii: the best record and image of each sample so far.
    let mut best: Vec<AttackRecord> = (0..n).map(|i| clean_record(i, None)).collect();
    let mut adv = x.to_vec();
    for &ei in &order {
        let e = eps[ei];
        if !(e >= 0.0 && e.is_finite()) {
            return Err(Error::Invalid(format!(
                "ε must be a finite non-negative number, got {e}"
            )));
        }
        let todo: Vec<usize> = correct
            .iter()
            .copied()
            .filter(|&i| !best[i].success)
            .collect();
        let mut spent = vec![(0u32, 0u32); n];
        if !todo.is_empty() {
            let out = run(&todo, e)?;
            for (j, &i) in todo.iter().enumerate() {
                let r = &out.results[j];
                spent[i] = (r.forward, r.backward);
                if r.success || best[i].eps.is_none() {
                    best[i] = AttackRecord {
                        success: r.success,
                        prediction: r.prediction,
                        logit_margin: r.logit_margin,
                        linf: r.linf,
                        l2: r.l2,
                        ..best[i].clone()
                    };
                    adv[i * per..(i + 1) * per].copy_from_slice(&out.adv[j * per..(j + 1) * per]);
                }
            }
        }
        let recs: Vec<AttackRecord> = (0..n)
            .map(|i| AttackRecord {
                eps: Some(e),
                forward: spent[i].0 + (ei == order[0]) as u32,
                backward: spent[i].1,
                ..best[i].clone()
            })
            .collect();
        for r in best.iter_mut() {
            r.eps = Some(e);
        }
        per_eps[ei] = Some((recs, adv.clone()));
    }
    for slot in per_eps.into_iter().flatten() {
        records.extend(slot.0);
        images.push(slot.1);
    }
    Ok((records, images))
}

/// Robust accuracy at one radius.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CurvePoint {
    /// The radius.
    pub eps: f32,
    /// Fraction of samples neither misclassified clean nor broken within ε.
    pub robust_accuracy: f64,
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
    let curve = sorted
        .iter()
        .map(|&e| {
            let robust = if spec.is_min_norm() {
                first
                    .iter()
                    .filter(|r| r.clean_prediction == r.label && (!r.success || norm_of(r) > e))
                    .count()
            } else {
                records
                    .iter()
                    .filter(|r| r.eps == Some(e) && !r.success)
                    .count()
            };
            CurvePoint {
                eps: e,
                robust_accuracy: robust as f64 / n.max(1) as f64,
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
}
