//! What every attack shares: the two contracts (a bounded attack searches within a radius ε
//! given per call; a minimum-norm attack looks for the smallest perturbation), the batch and
//! goal they run on, the per-sample result re-checked by a fresh forward pass, and pass
//! counters. The contracts follow Foolbox's `FixedEpsilonAttack` / `MinimizationAttack`: ε is
//! an argument of `run`, never a field of an attack's parameters.

use faultline_engine::{runner_up, Model};
use serde::{Deserialize, Serialize};

use crate::norm::Norm;
use crate::{Error, Result};

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

/// The images of a batch and their positions in the data set (which seed every per-sample
/// random stream, so results do not depend on how samples are batched).
#[derive(Debug, Clone, Copy)]
pub struct BatchRef<'a> {
    /// N·C·H·W values in [0, 1].
    pub images: &'a [f32],
    /// Data-set index of each sample.
    pub indices: &'a [usize],
}

impl<'a> BatchRef<'a> {
    /// A batch of `images` whose samples sit at `indices` in the data set.
    pub fn new(images: &'a [f32], indices: &'a [usize]) -> Self {
        BatchRef { images, indices }
    }
    /// Values per image.
    pub fn per(&self) -> usize {
        self.images.len() / self.indices.len().max(1)
    }
    /// Image `i`.
    pub fn image(&self, i: usize) -> &'a [f32] {
        let per = self.per();
        &self.images[i * per..(i + 1) * per]
    }
    /// The samples at batch positions `pos` (in that order), with their labels and targets.
    pub fn select(&self, goal: Goal, pos: &[usize]) -> Selection {
        Selection {
            images: gather(self.images, pos, self.per()),
            indices: pos.iter().map(|&i| self.indices[i]).collect(),
            labels: pos.iter().map(|&i| goal.labels[i]).collect(),
            targets: goal.targets.map(|t| pos.iter().map(|&i| t[i]).collect()),
        }
    }
}

/// An owned subset of a batch (see [`BatchRef::select`]).
#[derive(Debug, Clone)]
pub struct Selection {
    /// The images.
    pub images: Vec<f32>,
    /// Their data-set indices.
    pub indices: Vec<usize>,
    /// Their labels.
    pub labels: Vec<usize>,
    /// Their targets (targeted runs).
    pub targets: Option<Vec<usize>>,
}

impl Selection {
    /// The subset as a batch and a goal.
    pub fn parts(&self) -> (BatchRef<'_>, Goal<'_>) {
        (
            BatchRef::new(&self.images, &self.indices),
            Goal {
                labels: &self.labels,
                targets: self.targets.as_deref(),
            },
        )
    }
}

/// What every attack tells about itself (for run records and `faultline list`).
pub trait Described {
    /// The norm it works in.
    fn norm(&self) -> Norm;
    /// Its effective parameters, as written to `run.json`.
    fn params(&self) -> serde_json::Value;
}

/// Implements [`Described`] for a parameter struct with a `norm` field.
macro_rules! described {
    ($($t:ty),*) => {$(
        impl $crate::attack::Described for $t {
            fn norm(&self) -> $crate::norm::Norm {
                self.norm
            }
            fn params(&self) -> serde_json::Value {
                serde_json::to_value(self).unwrap_or_default()
            }
        }
    )*};
}
pub(crate) use described;

/// The end of one stage of an ensemble on a batch (for progress displays).
#[derive(Debug, Clone, Copy)]
pub struct StageDone<'a> {
    /// The stage's name.
    pub name: &'a str,
    /// Its position (0-based) and the number of stages.
    pub position: (usize, usize),
    /// Samples of the batch still robust after it.
    pub robust: usize,
}

/// Where an attack stands on its batch, for progress displays (see [`Passes::watched`]): the
/// samples it has settled (it works on them no more: broken, for a bounded attack, so their
/// result is final) and the share of its schedule (iterations of all its runs: restarts, target
/// classes, binary-search steps) done, which covers the samples still worked on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    /// Samples of the batch.
    pub samples: usize,
    /// Of them, settled.
    pub settled: usize,
    /// Share of the schedule done, in [0, 1].
    pub schedule: f32,
}

impl Tick {
    /// Samples counted as done: the settled ones and the schedule's share of the others.
    pub fn done(&self) -> f64 {
        let rest = self.samples.saturating_sub(self.settled) as f64;
        self.settled as f64 + rest * f64::from(self.schedule.clamp(0.0, 1.0))
    }
}

/// Told where an attack stands on its batch, once per iteration (see [`Tick`]).
pub type Watch<'a> = &'a mut dyn FnMut(Tick);

/// An attack that looks for an adversarial example within the ball of radius `eps` around each
/// image (in its norm) and the image box [0, 1].
pub trait BoundedAttack: Described + Send + Sync {
    /// Attacks a batch; one returned image per sample, inside the ball and the box, with
    /// success flags re-checked on it.
    fn run(&self, model: &Model, batch: BatchRef, goal: Goal, eps: f32) -> Result<AttackOutput> {
        self.run_watched(model, batch, goal, eps, &mut |_| {})
    }
    /// [`BoundedAttack::run`], telling `watch` once per iteration how far it is; progress
    /// never changes the result.
    fn run_watched(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        eps: f32,
        watch: Watch,
    ) -> Result<AttackOutput>;
    /// [`BoundedAttack::run_watched`] inside an ensemble, with what the earlier stages learned
    /// (A3's adaptive stages read and extend `memory`; other attacks ignore it).
    fn run_learning(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        eps: f32,
        memory: &mut crate::a3::Memory,
        watch: Watch,
    ) -> Result<AttackOutput> {
        let _ = memory;
        self.run_watched(model, batch, goal, eps, watch)
    }
    /// Names of the stages of an ensemble (empty for a single attack).
    fn stages(&self) -> Vec<&str> {
        Vec::new()
    }
    /// [`BoundedAttack::run_watched`], calling `on_stage` after each stage of an ensemble.
    fn run_staged(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        eps: f32,
        on_stage: &mut dyn FnMut(StageDone),
        watch: Watch,
    ) -> Result<AttackOutput> {
        let _ = on_stage;
        self.run_watched(model, batch, goal, eps, watch)
    }
}

/// An attack that looks for the smallest perturbation (in its norm) meeting the goal; the norms
/// it finds are the `linf`/`l2`/`l1` fields of the successful results.
pub trait MinNormAttack: Described + Send + Sync {
    /// Attacks a batch; one returned image per sample inside the box, success re-checked on it.
    fn run(&self, model: &Model, batch: BatchRef, goal: Goal) -> Result<AttackOutput> {
        self.run_watched(model, batch, goal, &mut |_| {})
    }
    /// [`MinNormAttack::run`], telling `watch` once per iteration how far it is; progress never
    /// changes the result.
    fn run_watched(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        watch: Watch,
    ) -> Result<AttackOutput>;
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
    /// Ensembles: the position of the stage that broke the sample (None: none did, or a single
    /// attack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<usize>,
    /// Ensembles: forward and backward passes spent on this sample by each stage, in order
    /// (`[0, 0]` for a stage that did not run on it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_passes: Vec<[u32; 2]>,
}

/// Adversarial images of a batch and their results.
#[derive(Debug, Clone)]
pub struct AttackOutput {
    /// One image per sample, inside [0, 1] (and inside the ε-ball for bounded attacks).
    pub adv: Vec<f32>,
    /// Per-sample results.
    pub results: Vec<SampleResult>,
}

/// Pass counters per sample, kept while an attack runs, and the attack's progress on its batch
/// (samples settled, schedule done) told to an optional watch: every attack keeps one, so this
/// is the one place progress is counted.
pub struct Passes<'w> {
    /// Forward passes per sample.
    pub forward: Vec<u32>,
    /// Backward passes per sample.
    pub backward: Vec<u32>,
    settled: Vec<bool>,
    tick: Tick,
    watch: Option<Watch<'w>>,
}

impl<'w> Passes<'w> {
    /// Zero counters for `n` samples, progress told to nobody.
    pub fn new(n: usize) -> Self {
        Passes {
            forward: vec![0; n],
            backward: vec![0; n],
            settled: vec![false; n],
            tick: Tick {
                samples: n,
                settled: 0,
                schedule: 0.0,
            },
            watch: None,
        }
    }
    /// Zero counters for `n` samples, progress told to `watch`.
    pub fn watched(n: usize, watch: Watch<'w>) -> Self {
        Passes {
            watch: Some(watch),
            ..Passes::new(n)
        }
    }
    /// Counts `f` forward and `b` backward passes for each sample in `active`.
    pub fn add(&mut self, active: &[usize], f: u32, b: u32) {
        for &i in active {
            self.forward[i] += f;
            self.backward[i] += b;
        }
    }
    /// Marks sample `i` settled: the attack works on it no more (see [`Tick`]).
    pub fn settle(&mut self, i: usize) {
        if let Some(s) = self.settled.get_mut(i) {
            if !*s {
                *s = true;
                self.tick.settled += 1;
            }
        }
    }
    /// Tells the watch that iteration `it.0` of `it.1` of run `run.0` of `run.1` is done (the
    /// share of the schedule never goes back).
    pub fn at(&mut self, run: (usize, usize), it: (usize, usize)) {
        let share = (run.0 as f32 + it.0 as f32 / it.1.max(1) as f32) / run.1.max(1) as f32;
        self.tick.schedule = self.tick.schedule.max(share.min(1.0));
        if let Some(w) = self.watch.as_mut() {
            w(self.tick);
        }
    }
}

impl std::fmt::Debug for Passes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passes")
            .field("forward", &self.forward)
            .field("backward", &self.backward)
            .field("tick", &self.tick)
            .finish()
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
                stage: None,
                stage_passes: Vec::new(),
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
