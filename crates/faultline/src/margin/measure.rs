//! Per-sample measurement: the clean scores of every sample and, for the samples chosen for it,
//! the input margin `d_in(x)` — the norm of the smallest perturbation a minimum-norm attack
//! (FAB by default, 5 restarts × 100 iterations as the paper; DeepFool as the fast option)
//! finds that changes the *predicted* label. Every reported margin is the norm of a perturbation
//! that a fresh forward pass confirms flips the prediction (`attack::finalize`); a sample for
//! which the attack finds none has no margin ("beyond the search").

use faultline_attacks::attack::argmax;
use faultline_attacks::norm::sample_rng;
use faultline_attacks::{Attack, BatchRef, Goal, Method};
use faultline_engine::{runner_up, Model};
use rand_chacha::rand_core::Rng;

use crate::error::{Error, Result};
use crate::margin::scores::{RowGaps, Scores};
use crate::record::{AttackOutcome, Condition, MarginDetail, SampleRecord};

/// A margins record as the analyses read it: the clean prediction (the label the margin is
/// measured against), whether the sample was attacked, its input margin, clean scores, logits
/// and features.
#[derive(Debug, Clone, Copy)]
pub struct MarginRow<'a> {
    /// Position in the data set.
    pub index: usize,
    /// True label.
    pub label: usize,
    /// Clean prediction.
    pub prediction: usize,
    /// The sample was attacked (all are, unless a subset was asked for).
    pub attacked: bool,
    /// `d_in` (None: not attacked, or no perturbation found).
    pub input_margin: Option<f32>,
    /// Clean scores.
    pub scores: &'a Scores,
    /// Clean logits.
    pub logits: &'a [f32],
    /// Penultimate features, when kept.
    pub features: Option<&'a [f32]>,
}

/// The margins view of every record that has one.
pub fn rows(records: &[SampleRecord]) -> Vec<MarginRow<'_>> {
    records
        .iter()
        .filter_map(|r| {
            let m = r.margin.as_ref()?;
            Some(MarginRow {
                index: r.index,
                label: r.label,
                prediction: r.clean_prediction.unwrap_or(r.prediction),
                attacked: r.attack.is_some(),
                input_margin: m.input_margin,
                scores: &m.scores,
                logits: &m.logits,
                features: m.features.as_deref(),
            })
        })
        .collect()
}

/// Scores every sample of a batch and attacks those with `attack_mask[i]` for their input
/// margin; `gaps` enables the feature-space margin, `keep_features` stores the penultimate
/// features in the records.
#[allow(clippy::too_many_arguments)]
pub fn measure_batch(
    model: &Model,
    batch: BatchRef,
    labels: &[usize],
    attack: &Attack,
    attack_mask: &[bool],
    gaps: Option<&RowGaps>,
    keep_features: bool,
) -> Result<Vec<SampleRecord>> {
    measure_batch_watched(
        model,
        batch,
        labels,
        attack,
        attack_mask,
        gaps,
        keep_features,
        &mut |_| {},
    )
}

/// [`measure_batch`], telling `watch` once per iteration of the attack how far it is on the
/// attacked samples (for per-sample progress).
#[allow(clippy::too_many_arguments)]
pub fn measure_batch_watched(
    model: &Model,
    batch: BatchRef,
    labels: &[usize],
    attack: &Attack,
    attack_mask: &[bool],
    gaps: Option<&RowGaps>,
    keep_features: bool,
    watch: faultline_attacks::Watch,
) -> Result<Vec<SampleRecord>> {
    let Method::MinNorm(method) = &attack.method else {
        return Err(Error::Invalid(format!(
            "{} is not a minimum-norm attack: input margins need fab, deepfool or cw",
            attack.name
        )));
    };
    let k = model.num_classes();
    let n = labels.len();
    let x = batch.images;
    let (z, feats) = if keep_features {
        let (z, f) = model.features(x, &["penultimate"])?;
        let f = f.into_iter().next().map(|t| t.into_f32()).transpose()?;
        (z, f)
    } else {
        (model.logits(x)?, None)
    };
    let dim = feats.as_ref().map_or(0, |f| f.len() / n.max(1));
    let condition = Condition::Attack {
        name: attack.name.clone(),
        norm: attack.norm(),
        eps: None,
    };
    let mut recs: Vec<SampleRecord> = (0..n)
        .map(|i| {
            let row = &z[i * k..(i + 1) * k];
            let pred = argmax(row);
            SampleRecord {
                index: batch.indices[i],
                label: labels[i],
                condition: condition.clone(),
                prediction: pred,
                logit_margin: row[labels[i]] - row[runner_up(row, labels[i])],
                clean_prediction: Some(pred),
                attack: None,
                margin: Some(MarginDetail {
                    input_margin: None,
                    scores: Scores::of(row, gaps),
                    logits: row.to_vec(),
                    features: feats.as_ref().map(|f| f[i * dim..(i + 1) * dim].to_vec()),
                }),
                flag: None,
            }
        })
        .collect();
    let sel: Vec<usize> = (0..n).filter(|&i| attack_mask[i]).collect();
    if sel.is_empty() {
        return Ok(recs);
    }
    // The margin is measured against the clean prediction, not the label.
    let preds: Vec<usize> = recs.iter().map(|r| r.prediction).collect();
    let goal = Goal {
        labels: &preds,
        targets: None,
    };
    let s = batch.select(goal, &sel);
    let (b, g) = s.parts();
    let out = method.run_watched(model, b, g, watch)?;
    // The attack measures its margin against the clean prediction; the record's is against
    // the label, so the returned images are predicted once more.
    let z_adv = model.logits(&out.adv)?;
    let norm = attack.norm();
    for (j, &i) in sel.iter().enumerate() {
        let r = &out.results[j];
        let rec = &mut recs[i];
        let outcome = AttackOutcome {
            success: r.success,
            linf: r.linf,
            l2: r.l2,
            l1: r.l1,
            forward: r.forward + 2,
            backward: r.backward,
            ..AttackOutcome::default()
        };
        if r.success {
            if let Some(m) = rec.margin.as_mut() {
                m.input_margin = Some(outcome.norm_in(norm));
            }
            let row = &z_adv[j * k..(j + 1) * k];
            rec.prediction = r.prediction;
            rec.logit_margin = row[rec.label] - row[runner_up(row, rec.label)];
        }
        rec.attack = Some(outcome);
    }
    Ok(recs)
}

/// Which of `total` samples (positions in a run's selection) to attack: all, or `subset` of
/// them drawn uniformly without replacement by a seeded shuffle (the same seed always picks the
/// same positions).
pub fn choose_subset(total: usize, subset: Option<usize>, seed: u64) -> Vec<bool> {
    match subset {
        Some(m) if m < total => {
            let mut idx: Vec<usize> = (0..total).collect();
            let mut rng = sample_rng(seed, 0, "margins-subset");
            for i in 0..m {
                let j = i + (rng.next_u64() % (total - i) as u64) as usize;
                idx.swap(i, j);
            }
            let mut chosen = vec![false; total];
            idx[..m].iter().for_each(|&i| chosen[i] = true);
            chosen
        }
        _ => vec![true; total],
    }
}
