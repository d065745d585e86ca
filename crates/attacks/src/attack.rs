//! What every attack shares: the objective it ascends (untargeted or targeted CE, DLR or
//! margin), the per-sample result re-checked by a fresh forward pass, and pass counters.

use faultline_engine::{runner_up, Loss, Model};
use serde::{Deserialize, Serialize};

use crate::norm::Norm;
use crate::{Error, Result};

/// The loss an attack ascends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AttackLoss {
    /// Cross-entropy (untargeted: raise CE of the label; targeted: lower CE of the target).
    #[default]
    Ce,
    /// Difference of logits ratio (Croce & Hein 2020); targeted:
    /// `−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e−12)`.
    Dlr,
    /// Logit margin (untargeted: lower `z_y − max_{j≠y} z_j`; targeted: raise `z_t − max_{j≠t} z_j`).
    Margin,
}

impl std::str::FromStr for AttackLoss {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "ce" => Ok(AttackLoss::Ce),
            "dlr" => Ok(AttackLoss::Dlr),
            "margin" => Ok(AttackLoss::Margin),
            o => Err(format!("unknown loss '{o}': use ce, dlr or margin")),
        }
    }
}

/// Labels and, for targeted attacks, targets of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Goal<'a> {
    /// True labels.
    pub labels: &'a [usize],
    /// Target classes (targeted attacks), one per sample.
    pub targets: Option<&'a [usize]>,
}

/// The logit gap by which minimum-norm refinements want the goal met, so that a re-check in a
/// different batch (whose GEMM blocking may round differently, ~1e-6) reaches the same verdict.
pub const DECISIVE_GAP: f32 = 1e-4;

impl Goal<'_> {
    /// Whether the goal is met by at least `gap` in logits: `max_{j≠y} z_j − z_y ≥ gap`
    /// (untargeted) or `z_t − max_{j≠t} z_j ≥ gap` (targeted); `gap = 0` is [`Goal::reached`]
    /// up to ties.
    pub fn reached_by(&self, i: usize, z: &[f32], gap: f32) -> bool {
        match self.targets {
            Some(t) => {
                let t = t[i];
                z[t] - z[runner_up(z, t)] >= gap && self.reached(i, z)
            }
            None => {
                let y = self.labels[i];
                z[runner_up(z, y)] - z[y] >= gap && self.reached(i, z)
            }
        }
    }
    /// Whether logits row `z` of sample `i` meets the goal (misclassified, or the target reached).
    pub fn reached(&self, i: usize, z: &[f32]) -> bool {
        let p = argmax(z);
        match self.targets {
            Some(t) => p == t[i],
            None => p != self.labels[i],
        }
    }
}

/// Index of the first maximal logit.
pub fn argmax(z: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = j;
        }
    }
    best
}

/// Logits and the input gradient of the objective to *maximize* on a batch: one forward and one
/// backward pass.
pub fn objective_grad(
    model: &Model,
    x: &[f32],
    loss: AttackLoss,
    goal: Goal,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let k = model.num_classes();
    let (sign, engine_loss): (f32, Option<Loss>) = match (loss, goal.targets) {
        (AttackLoss::Ce, None) => (
            1.0,
            Some(Loss::CrossEntropy {
                labels: goal.labels,
            }),
        ),
        (AttackLoss::Ce, Some(t)) => (-1.0, Some(Loss::CrossEntropy { labels: t })),
        (AttackLoss::Margin, None) => (
            -1.0,
            Some(Loss::Margin {
                labels: goal.labels,
            }),
        ),
        (AttackLoss::Margin, Some(t)) => (1.0, Some(Loss::Margin { labels: t })),
        (AttackLoss::Dlr, None) => (
            1.0,
            Some(Loss::Dlr {
                labels: goal.labels,
            }),
        ),
        (AttackLoss::Dlr, Some(_)) => (1.0, None),
    };
    let (z, mut g) = match engine_loss {
        // One pass per chunk, forward then backward (see `Model::loss_grad`).
        Some(l) => {
            let r = model.loss_grad(x, &l)?;
            (r.logits, r.grad)
        }
        None => {
            let f = model.forward(x)?;
            let z = f.logits().to_vec();
            let t = goal.targets.unwrap_or_default();
            if k < 4 {
                return Err(Error::Invalid(
                    "the targeted DLR loss needs at least 4 classes".into(),
                ));
            }
            let mut w = vec![0.0f32; z.len()];
            for (i, (row, wr)) in z.chunks(k).zip(w.chunks_mut(k)).enumerate() {
                let (y, tt) = (goal.labels[i], t[i]);
                let mut order: Vec<usize> = (0..k).collect();
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                let (p1, p3, p4) = (order[0], order[2], order[3]);
                let u = row[y] - row[tt];
                let d = row[p1] - 0.5 * (row[p3] + row[p4]) + 1e-12;
                // L = −u/d: ∂L/∂z_y = −1/d, ∂L/∂z_t = 1/d, ∂L/∂d = u/d².
                wr[y] -= 1.0 / d;
                wr[tt] += 1.0 / d;
                wr[p1] += u / (d * d);
                wr[p3] -= 0.5 * u / (d * d);
                wr[p4] -= 0.5 * u / (d * d);
            }
            let g = f.input_grad(&w)?;
            (z, g)
        }
    };
    if sign < 0.0 {
        g.iter_mut().for_each(|v| *v = -*v);
    }
    Ok((z, g))
}

/// One sample's outcome, measured on the returned image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleResult {
    /// The goal is met on the returned image (re-predicted by a fresh forward pass).
    pub success: bool,
    /// Prediction on the returned image.
    pub prediction: usize,
    /// `z_label − max_{j≠label} z_j` on the returned image.
    pub logit_margin: f32,
    /// ‖x_adv − x‖∞.
    pub linf: f32,
    /// ‖x_adv − x‖₂.
    pub l2: f32,
    /// ‖x_adv − x‖₁.
    #[serde(default)]
    pub l1: f32,
    /// Forward passes spent on this sample (the final check included).
    pub forward: u32,
    /// Backward passes spent on this sample.
    pub backward: u32,
}

/// Adversarial images of a batch and their results.
#[derive(Debug, Clone)]
pub struct AttackOutput {
    /// One image per sample, inside [0, 1] (and inside the ε-ball for bounded attacks).
    pub adv: Vec<f32>,
    /// Per-sample results.
    pub results: Vec<SampleResult>,
}

/// Pass counters per sample, kept while an attack runs.
#[derive(Debug, Clone)]
pub struct Passes {
    /// Forward passes per sample.
    pub forward: Vec<u32>,
    /// Backward passes per sample.
    pub backward: Vec<u32>,
}

impl Passes {
    /// Zero counters for `n` samples.
    pub fn new(n: usize) -> Self {
        Passes {
            forward: vec![0; n],
            backward: vec![0; n],
        }
    }
    /// Counts `f` forward and `b` backward passes for each sample in `active`.
    pub fn add(&mut self, active: &[usize], f: u32, b: u32) {
        for &i in active {
            self.forward[i] += f;
            self.backward[i] += b;
        }
    }
}

/// Re-predicts the returned images with one forward pass and measures every sample: the
/// success flags that callers see always agree with re-prediction.
pub fn finalize(
    model: &Model,
    x0: &[f32],
    adv: Vec<f32>,
    goal: Goal,
    mut passes: Passes,
) -> Result<AttackOutput> {
    let k = model.num_classes();
    let n = goal.labels.len();
    let per = x0.len() / n.max(1);
    let z = model.logits(&adv)?;
    let all: Vec<usize> = (0..n).collect();
    passes.add(&all, 1, 0);
    let results = (0..n)
        .map(|i| {
            let row = &z[i * k..(i + 1) * k];
            let y = goal.labels[i];
            let (a, b) = (&adv[i * per..(i + 1) * per], &x0[i * per..(i + 1) * per]);
            SampleResult {
                success: goal.reached(i, row),
                prediction: argmax(row),
                logit_margin: row[y] - row[runner_up(row, y)],
                linf: Norm::Linf.dist(a, b),
                l2: Norm::L2.dist(a, b),
                l1: Norm::L1.dist(a, b),
                forward: passes.forward[i],
                backward: passes.backward[i],
            }
        })
        .collect();
    Ok(AttackOutput { adv, results })
}

/// Copies the images of `idx` (in order) out of a batch with `per` values per image.
pub fn gather(x: &[f32], idx: &[usize], per: usize) -> Vec<f32> {
    idx.iter()
        .flat_map(|&i| x[i * per..(i + 1) * per].iter().copied())
        .collect()
}

/// Checks the per-sample data-set indices of a batch (they seed the random streams), and, for
/// attacks that rank their own targets (APGD-T, FAB-T), that no targets are given and that the
/// model has enough classes.
pub fn check_run(
    name: &str,
    model: &Model,
    goal: &Goal,
    indices: &[usize],
    target_classes: usize,
) -> Result<()> {
    let (n, k) = (goal.labels.len(), model.num_classes());
    if indices.len() != n {
        return Err(Error::Invalid(format!(
            "{} indices for {n} samples",
            indices.len()
        )));
    }
    if target_classes > 0 && goal.targets.is_some() {
        return Err(Error::Invalid(format!(
            "{name} ranks its own targets: give no targets with target_classes > 0"
        )));
    }
    if target_classes + 1 > k {
        return Err(Error::Invalid(format!(
            "{target_classes} target classes for a {k}-class model"
        )));
    }
    Ok(())
}

/// Checks a batch against the model before an attack runs.
pub fn check_batch(model: &Model, x: &[f32], goal: &Goal) -> Result<usize> {
    let k = model.num_classes();
    let n = goal.labels.len();
    if n == 0 || !x.len().is_multiple_of(n) {
        return Err(Error::Invalid(format!("{} values for {n} labels", x.len())));
    }
    if let Some((i, y)) = goal.labels.iter().enumerate().find(|(_, &y)| y >= k) {
        return Err(Error::Invalid(format!(
            "label {y} of sample {i} is out of range for {k} classes"
        )));
    }
    if let Some(t) = goal.targets {
        if t.len() != n || t.iter().any(|&v| v >= k) {
            return Err(Error::Invalid(
                "targets must be one class index per sample".into(),
            ));
        }
    }
    Ok(x.len() / n)
}
