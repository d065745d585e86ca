//! The training loop: seeded shuffles, mini-batches, a loss, backward, Adam, per-epoch
//! history and an optional validation split.
//!
//! Defaults reproduce the margin-consistency notebook's pseudo-margin training (methods.md
//! §5.5): Adam lr 1e-4, 500 epochs, batch 5000 (full batch on its 4000-sample training split),
//! MSE, seed 0. The result depends only on the seed and the rayon thread count (the products
//! never split a sum across threads, so in practice not even on that; see the tests).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::adam::{Adam, AdamParams};
use crate::error::{check_finite, check_len, Error, Result};
use crate::loss::{flip_pairs, mse, ranking, Loss};
use crate::mlp::{Gradients, Mlp, Trace};
use crate::rng;
use crate::standardize::Standardizer;

/// Everything [`fit`] needs besides the model and the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    /// Passes over the training rows. Default 500 (notebook).
    pub epochs: usize,
    /// Rows per step; a set smaller than this trains full-batch. Default 5000 (notebook).
    pub batch_size: usize,
    /// Adam learning rate. Default 1e-4 (notebook).
    pub lr: f32,
    /// Adam β1. Default 0.9.
    pub beta1: f32,
    /// Adam β2. Default 0.999.
    pub beta2: f32,
    /// Adam ε. Default 1e-8.
    pub eps: f32,
    /// Weight decay λ (L2 added to the gradient, as PyTorch `Adam`). Default 0 (notebook).
    pub weight_decay: f32,
    /// Apply weight decay decoupled (AdamW) instead. Default false.
    pub decoupled_weight_decay: bool,
    /// Seed of the epoch shuffles, the validation split and the validation ranking pairs
    /// (the weights' seed is [`Mlp::new`]'s). Default 0 (notebook).
    pub seed: u64,
    /// The loss. Default [`Loss::Mse`] (the one behind the notebook's printed results).
    pub loss: Loss,
    /// Reshuffle the training rows every epoch (PyTorch `DataLoader(shuffle=True)`); batches
    /// are consecutive runs of the shuffled order, the last one possibly shorter.
    /// Default true (notebook).
    pub shuffle: bool,
    /// Fraction of rows held out (a seeded random subset) to report a validation loss after
    /// each epoch. Default 0 (the notebook splits 80/20 before training; do that outside or
    /// set 0.2 here).
    pub validation_fraction: f32,
    /// Fit a per-feature [`Standardizer`] on the training rows and store it in the model
    /// (false keeps the model's own, if it has one). Default false (notebook).
    pub standardize: bool,
    /// Threads for the matrix products: 0 uses the current rayon pool, k > 0 a pool of k.
    /// Default 0.
    pub threads: usize,
}

impl Default for TrainParams {
    fn default() -> Self {
        let adam = AdamParams::default();
        TrainParams {
            epochs: 500,
            batch_size: 5000,
            lr: adam.lr,
            beta1: adam.beta1,
            beta2: adam.beta2,
            eps: adam.eps,
            weight_decay: adam.weight_decay,
            decoupled_weight_decay: adam.decoupled_weight_decay,
            seed: 0,
            loss: Loss::Mse,
            shuffle: true,
            validation_fraction: 0.0,
            standardize: false,
            threads: 0,
        }
    }
}

impl TrainParams {
    /// The optimizer part.
    pub fn adam(&self) -> AdamParams {
        AdamParams {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decoupled_weight_decay: self.decoupled_weight_decay,
        }
    }

    fn validate(&self) -> Result<()> {
        self.adam().validate()?;
        if self.batch_size == 0 {
            return Err(Error::Param {
                name: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return Err(Error::Param {
                name: "validation_fraction",
                reason: format!("{} is not in [0, 1)", self.validation_fraction),
            });
        }
        Ok(())
    }
}

/// What [`fit`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Mean training loss of each epoch: the average over the epoch's loss terms (samples for
    /// MSE, pairs for ranking) of the loss each batch had just before its step.
    pub train_loss: Vec<f64>,
    /// Loss on the validation rows after each epoch; empty without a validation split.
    pub validation_loss: Vec<f64>,
    /// Rows trained on (ascending).
    pub train_indices: Vec<usize>,
    /// Rows held out (ascending).
    pub validation_indices: Vec<usize>,
    /// Rows per step actually used (`min(batch_size, training rows)`).
    pub batch_size: usize,
    /// Optimizer steps taken (a ranking batch without a usable pair takes none).
    pub steps: u64,
    /// Wall-clock seconds of the loop.
    pub elapsed_s: f64,
}

impl TrainReport {
    /// Epochs per second of the training loop (validation included).
    pub fn epochs_per_s(&self) -> f64 {
        self.train_loss.len() as f64 / self.elapsed_s.max(1e-12)
    }
}

/// Trains `model` on `n` rows: inputs `x` (`[n, model.input()]`) and targets `t`
/// (`[n, model.output()]`), minimising `params.loss` with Adam. See [`TrainParams`].
pub fn fit(
    model: &mut Mlp,
    x: &[f32],
    t: &[f32],
    n: usize,
    params: &TrainParams,
) -> Result<TrainReport> {
    fit_with_progress(model, x, t, n, params, &mut |_, _, _| {})
}

/// [`fit`], calling `progress(epoch, train_loss, validation_loss)` after every epoch.
pub fn fit_with_progress(
    model: &mut Mlp,
    x: &[f32],
    t: &[f32],
    n: usize,
    params: &TrainParams,
    progress: &mut (dyn FnMut(usize, f64, Option<f64>) + Send),
) -> Result<TrainReport> {
    params.validate()?;
    check_len("input", x, n, model.input())?;
    check_len("target", t, n, model.output())?;
    check_finite("input", x)?;
    check_finite("target", t)?;
    if params.loss == Loss::Ranking && model.output() != 1 {
        return Err(Error::RankingOutput {
            output: model.output(),
        });
    }
    let n_val = (n as f64 * params.validation_fraction as f64).round() as usize;
    if n == 0 || n_val >= n {
        return Err(Error::Param {
            name: "n",
            reason: format!("{n} rows leave no training rows after holding out {n_val}"),
        });
    }
    if params.threads > 0 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(params.threads)
            .build()
            .map_err(|e| Error::ThreadPool(e.to_string()))?;
        pool.install(|| train(model, x, t, n, n_val, params, progress))
    } else {
        train(model, x, t, n, n_val, params, progress)
    }
}

/// Copies rows `idx` of a `[*, width]` matrix into `out`.
fn gather(src: &[f32], width: usize, idx: &[usize], out: &mut Vec<f32>) {
    out.clear();
    for &i in idx {
        out.extend_from_slice(&src[i * width..(i + 1) * width]);
    }
}

fn train(
    model: &mut Mlp,
    x: &[f32],
    t: &[f32],
    n: usize,
    n_val: usize,
    params: &TrainParams,
    progress: &mut (dyn FnMut(usize, f64, Option<f64>) + Send),
) -> Result<TrainReport> {
    let start = Instant::now();
    let (din, dout) = (model.input(), model.output());
    let (mut train_idx, mut val_idx) = if n_val > 0 {
        let perm = rng::permutation(&mut rng::stream(params.seed, "validation-split"), n);
        (perm[n_val..].to_vec(), perm[..n_val].to_vec())
    } else {
        ((0..n).collect(), Vec::new())
    };
    train_idx.sort_unstable();
    val_idx.sort_unstable();

    let mut xb = Vec::new();
    let mut tb = Vec::new();
    if params.standardize {
        gather(x, din, &train_idx, &mut xb);
        model.set_standardizer(Some(Standardizer::fit(&xb, train_idx.len(), din)?))?;
    }
    let (mut xv, mut tv) = (Vec::new(), Vec::new());
    gather(x, din, &val_idx, &mut xv);
    gather(t, dout, &val_idx, &mut tv);

    let batch = params.batch_size.min(train_idx.len());
    let mut adam = Adam::new(params.adam(), &model.parameter_sizes())?;
    let mut shuffle_rng = rng::stream(params.seed, "epoch-shuffle");
    let mut order = train_idx.clone();
    let mut trace = Trace::new();
    let mut grads = Gradients::default();
    let mut grad_out = Vec::new();
    let mut report = TrainReport {
        train_loss: Vec::with_capacity(params.epochs),
        validation_loss: Vec::new(),
        train_indices: train_idx,
        validation_indices: val_idx,
        batch_size: batch,
        steps: 0,
        elapsed_s: 0.0,
    };

    for epoch in 0..params.epochs {
        if params.shuffle {
            rng::shuffle(&mut shuffle_rng, &mut order);
        }
        let (mut sum, mut terms) = (0f64, 0usize);
        for idx in order.chunks(batch) {
            let rows = idx.len();
            gather(x, din, idx, &mut xb);
            gather(t, dout, idx, &mut tb);
            model.forward_trace(&xb, rows, &mut trace)?;
            grad_out.resize(rows * dout, 0.0);
            let (loss, count) = match params.loss {
                Loss::Mse => (mse(trace.output(), &tb, &mut grad_out)?, rows * dout),
                Loss::Ranking => ranking(trace.output(), &tb, &flip_pairs(rows), &mut grad_out)?,
            };
            if !loss.is_finite() {
                return Err(Error::Diverged { epoch, loss });
            }
            if count == 0 {
                // A ranking batch whose pairs are all ties carries no signal; stepping on a
                // zero gradient would still move the weights through Adam's momentum.
                continue;
            }
            sum += loss * count as f64;
            terms += count;
            model.backward_into(&trace, &grad_out, &mut grads, false)?;
            adam.step(&mut model.parameters_mut(), &grads.slices())?;
        }
        let train_loss = if terms > 0 { sum / terms as f64 } else { 0.0 };
        report.train_loss.push(train_loss);
        let val_loss = if n_val > 0 {
            let l = evaluate(model, &xv, &tv, n_val, params.loss, params.seed)?;
            report.validation_loss.push(l);
            Some(l)
        } else {
            None
        };
        progress(epoch, train_loss, val_loss);
    }
    report.steps = adam.steps();
    report.elapsed_s = start.elapsed().as_secs_f64();
    Ok(report)
}

/// The loss of `model` on `n` rows without training. For [`Loss::Ranking`], the pairs are
/// [`flip_pairs`] over a permutation of the rows drawn from `seed` (the same permutation for
/// the same `seed` and `n`, so successive evaluations compare).
pub fn evaluate(model: &Mlp, x: &[f32], t: &[f32], n: usize, loss: Loss, seed: u64) -> Result<f64> {
    check_len("target", t, n, model.output())?;
    let out = model.forward(x, n)?;
    let mut g = vec![0.0; out.len()];
    match loss {
        Loss::Mse => mse(&out, t, &mut g),
        Loss::Ranking => {
            if model.output() != 1 {
                return Err(Error::RankingOutput {
                    output: model.output(),
                });
            }
            let perm = rng::permutation(&mut rng::stream(seed, "evaluate-pairs"), n);
            let pairs: Vec<_> = flip_pairs(n)
                .into_iter()
                .map(|(a, b)| (perm[a], perm[b]))
                .collect();
            Ok(ranking(&out, t, &pairs, &mut g)?.0)
        }
    }
}
