//! Per-sample measurement: the clean scores of every sample and, for the samples chosen for it,
//! the input margin `d_in(x)` — the norm of the smallest perturbation a minimum-norm attack
//! (FAB by default, 5 restarts × 100 iterations as the paper; DeepFool as the fast option)
//! finds that changes the *predicted* label. Every reported margin is the norm of a perturbation
//! that a fresh forward pass confirms flips the prediction (`attack::finalize`); a sample for
//! which the attack finds none has no margin ("beyond the search").

use faultline_attacks::norm::sample_rng;
use faultline_attacks::{deepfool, fab, DeepFoolParams, FabParams, Goal, Norm};
use faultline_engine::Model;
use rand_chacha::rand_core::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::eval::argmax;
use crate::margin::scores::{RowGaps, Scores};

/// The minimum-norm attack that estimates input margins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", content = "params", rename_all = "lowercase")]
pub enum MarginAttack {
    /// FAB, untargeted, minimum-norm mode (`eps` None).
    Fab(FabParams),
    /// DeepFool (fast; an upper bound on the margin like every attack, usually looser than FAB).
    DeepFool(DeepFoolParams),
}

impl MarginAttack {
    /// The norm of the margins.
    pub fn norm(&self) -> Norm {
        match self {
            MarginAttack::Fab(p) => p.norm,
            MarginAttack::DeepFool(p) => p.norm,
        }
    }
}

/// One sample (a line of `samples.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarginRecord {
    /// Position in the data set.
    pub index: usize,
    /// True label.
    pub label: usize,
    /// Clean prediction (the label the margin is measured against).
    pub prediction: usize,
    /// The sample was attacked (all are, unless a subset was asked for).
    pub attacked: bool,
    /// `d_in`: norm (in the threat norm) of the smallest re-checked perturbation found that
    /// changes the prediction; None when not attacked or when no perturbation was found.
    pub input_margin: Option<f32>,
    /// Prediction on the perturbed image (the clean prediction when none was found).
    pub adv_prediction: usize,
    /// Clean scores.
    #[serde(flatten)]
    pub scores: Scores,
    /// Clean logits (inputs of a pseudo-margin learned from logits).
    pub logits: Vec<f32>,
    /// Penultimate features, kept only when a pseudo-margin is learned from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<f32>>,
    /// Forward passes spent on the sample.
    pub forward: u32,
    /// Backward passes spent on the sample.
    pub backward: u32,
}

impl crate::record::SampleIndexed for MarginRecord {
    fn sample_index(&self) -> usize {
        self.index
    }
}

/// Scores every sample of a batch and attacks those with `attack_mask[i]` for their input
/// margin; `gaps` enables the feature-space margin, `keep_features` stores the penultimate
/// features in the records.
#[allow(clippy::too_many_arguments)]
pub fn measure_batch(
    model: &Model,
    x: &[f32],
    labels: &[usize],
    indices: &[usize],
    attack: &MarginAttack,
    attack_mask: &[bool],
    gaps: Option<&RowGaps>,
    keep_features: bool,
) -> Result<Vec<MarginRecord>> {
    let k = model.num_classes();
    let n = labels.len();
    let per = x.len() / n.max(1);
    let (z, feats) = if keep_features {
        let (z, f) = model.features(x, &["penultimate"])?;
        let f = f.into_iter().next().map(|t| t.into_f32()).transpose()?;
        (z, f)
    } else {
        (model.logits(x)?, None)
    };
    let dim = feats.as_ref().map_or(0, |f| f.len() / n.max(1));
    let mut recs: Vec<MarginRecord> = (0..n)
        .map(|i| {
            let row = &z[i * k..(i + 1) * k];
            let pred = argmax(row);
            MarginRecord {
                index: indices[i],
                label: labels[i],
                prediction: pred,
                attacked: false,
                input_margin: None,
                adv_prediction: pred,
                scores: Scores::of(row, gaps),
                logits: row.to_vec(),
                features: feats.as_ref().map(|f| f[i * dim..(i + 1) * dim].to_vec()),
                forward: 1,
                backward: 0,
            }
        })
        .collect();
    let sel: Vec<usize> = (0..n).filter(|&i| attack_mask[i]).collect();
    if sel.is_empty() {
        return Ok(recs);
    }
    let xs: Vec<f32> = sel
        .iter()
        .flat_map(|&i| x[i * per..(i + 1) * per].iter().copied())
        .collect();
    let preds: Vec<usize> = sel.iter().map(|&i| recs[i].prediction).collect();
    let ids: Vec<usize> = sel.iter().map(|&i| indices[i]).collect();
    let goal = Goal {
        labels: &preds,
        targets: None,
    };
    let out = match attack {
        MarginAttack::Fab(p) => fab(
            model,
            &xs,
            goal,
            &ids,
            &FabParams {
                eps: None,
                ..p.clone()
            },
        )?,
        MarginAttack::DeepFool(p) => deepfool(model, &xs, goal, p)?,
    };
    let norm = attack.norm();
    for (j, &i) in sel.iter().enumerate() {
        let r = &out.results[j];
        let rec = &mut recs[i];
        rec.attacked = true;
        rec.forward += r.forward;
        rec.backward += r.backward;
        if r.success {
            rec.input_margin = Some(match norm {
                Norm::Linf => r.linf,
                Norm::L2 => r.l2,
                Norm::L1 => r.l1,
            });
            rec.adv_prediction = r.prediction;
        }
    }
    Ok(recs)
}

/// Which of `total` samples to attack: all, or `subset` of them drawn uniformly without
/// replacement by a seeded shuffle (the same seed always picks the same samples).
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
