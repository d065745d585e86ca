//! Minimum-norm refinement shared by minimum-norm attacks: for every sample whose adversarial
//! image meets its goal, bisect `t ∈ [0, 1]` on `x0 + t·(x_adv − x0)` for the smallest multiple
//! that still meets it, checking each candidate with a forward pass. The segment lies in the
//! [0, 1] box (it joins two points of it), so no clipping is needed and the result is always a
//! re-checked adversarial image. Candidates must meet the goal by `DECISIVE_GAP` in logits, so
//! that the verdict survives re-prediction in another batch.

use faultline_engine::Model;

use crate::attack::{gather, Goal, Passes, DECISIVE_GAP};
use crate::Result;

/// Shrinks the perturbations of the successful samples of `adv` in place (`steps` bisections).
pub fn shrink(
    model: &Model,
    x0: &[f32],
    adv: &mut [f32],
    goal: Goal,
    steps: usize,
    passes: &mut Passes,
) -> Result<()> {
    let n = goal.labels.len();
    let per = x0.len() / n.max(1);
    let k = model.num_classes();
    let z = model.logits(adv)?;
    let all: Vec<usize> = (0..n).collect();
    passes.add(&all, 1, 0);
    let ok: Vec<usize> = (0..n)
        .filter(|&i| goal.reached(i, &z[i * k..(i + 1) * k]))
        .collect();
    if ok.is_empty() {
        return Ok(());
    }
    let (mut lo, mut hi) = (vec![0.0f32; ok.len()], vec![1.0f32; ok.len()]);
    let delta: Vec<f32> = ok
        .iter()
        .flat_map(|&i| (0..per).map(move |p| (i, p)))
        .map(|(i, p)| adv[i * per + p] - x0[i * per + p])
        .collect();
    let base = gather(x0, &ok, per);
    let labels: Vec<usize> = ok.iter().map(|&i| goal.labels[i]).collect();
    let targets: Option<Vec<usize>> = goal.targets.map(|t| ok.iter().map(|&i| t[i]).collect());
    let sub = Goal {
        labels: &labels,
        targets: targets.as_deref(),
    };
    // The last candidate that met the goal, kept bit for bit (recomputing x0 + t·δ would round
    // differently and could step back over the boundary).
    let mut keep: Vec<f32> = gather(adv, &ok, per);
    for _ in 0..steps {
        let cand: Vec<f32> = (0..ok.len())
            .flat_map(|j| {
                let t = 0.5 * (lo[j] + hi[j]);
                let (b, d) = (
                    &base[j * per..(j + 1) * per],
                    &delta[j * per..(j + 1) * per],
                );
                b.iter()
                    .zip(d)
                    .map(move |(b, d)| b + t * d)
                    .collect::<Vec<_>>()
            })
            .collect();
        let z = model.logits(&cand)?;
        passes.add(&ok, 1, 0);
        for j in 0..ok.len() {
            let t = 0.5 * (lo[j] + hi[j]);
            if sub.reached_by(j, &z[j * k..(j + 1) * k], DECISIVE_GAP) {
                hi[j] = t;
                keep[j * per..(j + 1) * per].copy_from_slice(&cand[j * per..(j + 1) * per]);
            } else {
                lo[j] = t;
            }
        }
    }
    for (j, &i) in ok.iter().enumerate() {
        adv[i * per..(i + 1) * per].copy_from_slice(&keep[j * per..(j + 1) * per]);
    }
    Ok(())
}
