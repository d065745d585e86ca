//! Square Attack: a score-based random search with square-shaped updates, in L∞ and L2. It
//! needs logits only (no gradients).
//!
//! # Paper
//! Andriushchenko, Croce, Flammarion, Hein, *Square Attack: a query-efficient black-box
//! adversarial attack via random search*, ECCV 2020 (arXiv 1912.00049).
//!
//! # Update
//! Each sample keeps its best point `x̂` and the loss there: untargeted, the margin
//! `z_y − max_{j≠y} z_j`; targeted, the cross-entropy of the target `t` (success is
//! `z_t > max_{j≠t} z_j`). One proposal per query, accepted when its loss is lower or it meets
//! the goal; a sample stops at its first success. The side `s` of the squares follows the
//! schedule `p` (the fraction of the `h·w` pixels of one channel a square covers): `p_init`,
//! halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 queries (positions rescaled by
//! `queries/10000`).
//! * L∞: start at vertical stripes, `clip_[0,1](x0 ± ε)` with one sign per channel and column;
//!   a proposal sets an `s × s` square (`s = round(√(p·h·w))`, at least 1) of every channel `c`
//!   to `clip_[0,1](x0 + σ_c·ε)`, `σ_c = ±1`.
//! * L2: start at a 5 × 5 grid of `⌊h/5⌋`-sided windows, each filled with the centred pattern
//!   η (nested rectangles weighted `1/(r+1)²`, opposite signs on the two halves, transposed at
//!   random) times a random sign per channel, scaled to `‖δ‖₂ = ε`. A proposal (odd `s ≥ 3`)
//!   draws two windows `W1`, `W2`, empties `W2` and fills `W1` (per channel) with
//!   `σ_c·η + δ_{W1}/‖δ_{W1}‖`, rescaled to `√(max(ε² − ‖δ‖², 0)/C + ‖δ_{W1∪W2}‖²)`; then the
//!   whole `δ` is rescaled to `‖δ‖₂ = ε` and the image clipped to [0, 1].
//!
//! # Defaults
//! AutoAttack's `SquareAttack` (`autoattack/square.py`, read at commit 1706c9b), as its standard
//! version runs it: 5000 queries, `p_init = 0.8`, 1 restart, margin loss (untargeted),
//! cross-entropy of the target (targeted), rescaled schedule. `queries` counts proposals after
//! the initial point, so a run makes at most `queries + 1` model evaluations per sample, as
//! AutoAttack's loop. AutoAttack's optional untargeted cross-entropy loss is not offered.
//! Differences:
//! * every random draw (stripes, square positions, signs, the transposition of η) comes from
//!   `norm::sample_rng(seed, index, "square:<restart>")` per sample; AutoAttack draws one square
//!   position and one η per query for the whole batch (signs per sample), from torch's generator;
//! * square corners are drawn from `{0, …, h − s}` as in the paper's algorithm, where AutoAttack's
//!   `random_int(0, h − s)` gives `{0, …, h − s − 1}` (never touching the last row and column);
//! * images that are not square or are smaller than AutoAttack assumes are handled: `s` is capped
//!   at `min(h, w)` (kept odd for L2), and the L2 start grid has `min(5, ⌊h/s⌋) × min(5, ⌊w/s⌋)`
//!   windows of side `max(⌊min(h, w)/5⌋, 1)`, centred;
//! * success is the argmax test of [`Goal::reached`] (AutoAttack: margin ≤ 0, so an exact tie
//!   counts for it and not here);
//! * a sample never broken returns the lowest-loss point of its runs (AutoAttack returns `x0`).
//!
//! Samples that already meet the goal on the clean image are not attacked and return `x0`
//! (AutoAttack's `perturb`); later restarts only run on samples not yet broken. The random draws
//! of a sample do not depend on its batch; the engine's logits can differ by float rounding
//! (~1e−6) with the batch size, which can only matter when a proposal ties the current loss to
//! that precision (measured on a linear model over 48 samples and 5000 queries: L∞ images
//! identical in another batch split, L2 identical for 47 of 48, all success flags identical).
//!
//! # Cost
//! Forward passes only: one for the clean prediction, then per run and sample still attacked one
//! for the initial point and one per query until its first success, and one to re-check the
//! returned image. No backward passes.

use faultline_engine::{runner_up, Model};
use rand_chacha::rand_core::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::attack::{
    check_batch, check_run, described, finalize, gather, AttackOutput, BatchRef, BoundedAttack,
    Goal, Passes, Watch,
};
use crate::norm::{sample_rng, uniform, Norm};
use crate::{Error, Result};

/// Parameters of the Square Attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SquareParams {
    /// Threat model (default L∞).
    pub norm: Norm,
    /// Queries (proposals) per run after the initial point (default 5000).
    pub queries: usize,
    /// Initial fraction of a channel's pixels covered by a square (default 0.8).
    pub p_init: f32,
    /// Runs; each later run starts afresh (new stripes or grid) on the samples not yet broken
    /// (default 1).
    pub restarts: usize,
    /// Rescale the schedule of `p` to `queries` (positions × `queries/10000`; default true, as
    /// AutoAttack's `resc_schedule`).
    pub rescale_schedule: bool,
    /// Seed of the per-sample random streams.
    pub seed: u64,
}

impl Default for SquareParams {
    fn default() -> Self {
        SquareParams {
            norm: Norm::Linf,
            queries: 5000,
            p_init: 0.8,
            restarts: 1,
            rescale_schedule: true,
            seed: 0,
        }
    }
}

impl SquareParams {
    /// The fraction `p` of a channel's pixels covered by the square of query `it` (0-based):
    /// AutoAttack's `p_selection`.
    pub fn p_at(&self, it: usize) -> f64 {
        let it = if self.rescale_schedule {
            (it as f64 / self.queries.max(1) as f64 * 10000.0) as usize
        } else {
            it
        };
        let halvings = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000]
            .iter()
            .filter(|&&q| it > q)
            .count();
        self.p_init as f64 / (1u64 << halvings) as f64
    }
}

described!(SquareParams);

impl BoundedAttack for SquareParams {
    fn run_watched(
        &self,
        model: &Model,
        batch: BatchRef,
        goal: Goal,
        eps: f32,
        watch: Watch,
    ) -> Result<AttackOutput> {
        square(model, batch.images, goal, batch.indices, self, eps, watch)
    }
}

fn square(
    model: &Model,
    x: &[f32],
    goal: Goal,
    indices: &[usize],
    p: &SquareParams,
    eps: f32,
    watch: Watch,
) -> Result<AttackOutput> {
    let per = check_batch(model, x, &goal)?;
    check_run("Square", model, &goal, indices, 0)?;
    if p.norm == Norm::L1 {
        return Err(Error::Invalid(
            "Square does not support L1: use PGD or FAB".into(),
        ));
    }
    if !(eps.is_finite() && eps > 0.0) {
        return Err(Error::Invalid(format!(
            "Square needs a finite ε > 0, got {}",
            eps
        )));
    }
    if !(p.p_init > 0.0 && p.p_init <= 1.0) {
        return Err(Error::Invalid(format!(
            "Square's p_init must lie in (0, 1], got {}",
            p.p_init
        )));
    }
    let shape = model.image_shape().ok_or_else(|| {
        Error::Invalid("Square needs the model's image shape (prepare the model first)".into())
    })?;
    if shape.iter().product::<usize>() != per || per == 0 {
        return Err(Error::Invalid(format!(
            "Square: {per} values per image for the model's image shape {shape:?}"
        )));
    }
    let k = model.num_classes();
    let n = goal.labels.len();
    let mut passes = Passes::watched(n, watch);
    let z = model.logits(x)?;
    passes.add(&(0..n).collect::<Vec<_>>(), 1, 0);
    let mut done: Vec<bool> = (0..n)
        .map(|i| goal.reached(i, &z[i * k..(i + 1) * k]))
        .collect();
    let mut best = x.to_vec();
    let mut best_loss = vec![f64::INFINITY; n];
    let geo = Geometry::new(shape);
    let runs = p.restarts.max(1);
    for restart in 0..runs {
        let todo: Vec<usize> = (0..n).filter(|&i| !done[i]).collect();
        if todo.is_empty() {
            break;
        }
        let labels: Vec<usize> = todo.iter().map(|&i| goal.labels[i]).collect();
        let targets: Option<Vec<usize>> =
            goal.targets.map(|t| todo.iter().map(|&i| t[i]).collect());
        let sub = Goal {
            labels: &labels,
            targets: targets.as_deref(),
        };
        let mut rngs: Vec<ChaCha8Rng> = todo
            .iter()
            .map(|&i| sample_rng(p.seed, indices[i], &format!("square:{restart}")))
            .collect();
        let x0 = gather(x, &todo, per);
        let mut cur: Vec<f32> = Vec::with_capacity(x0.len());
        for (j, rng) in rngs.iter_mut().enumerate() {
            let o = &x0[j * per..(j + 1) * per];
            cur.extend(match p.norm {
                Norm::Linf => geo.stripes(o, eps, rng),
                Norm::L2 | Norm::L1 => geo.grid(o, eps, rng),
            });
        }
        let z = model.logits(&cur)?;
        passes.add(&todo, 1, 0);
        let mut loss = vec![0.0f64; todo.len()];
        let mut hit = vec![false; todo.len()];
        for j in 0..todo.len() {
            let row = &z[j * k..(j + 1) * k];
            loss[j] = loss_of(&sub, j, row);
            hit[j] = sub.reached(j, row);
            if hit[j] {
                passes.settle(todo[j]);
            }
        }
        let mut active: Vec<usize> = (0..todo.len()).filter(|&j| !hit[j]).collect();
        for it in 0..p.queries {
            if active.is_empty() {
                break;
            }
            let frac = p.p_at(it);
            let mut prop: Vec<f32> = Vec::with_capacity(active.len() * per);
            for &j in &active {
                let r = j * per..(j + 1) * per;
                prop.extend(match p.norm {
                    Norm::Linf => geo.linf_step(&cur[r.clone()], &x0[r], eps, frac, &mut rngs[j]),
                    Norm::L2 | Norm::L1 => {
                        geo.l2_step(&cur[r.clone()], &x0[r], eps, frac, &mut rngs[j])
                    }
                });
            }
            let z = model.logits(&prop)?;
            passes.add(&active.iter().map(|&j| todo[j]).collect::<Vec<_>>(), 1, 0);
            let mut still = Vec::with_capacity(active.len());
            for (a, &j) in active.iter().enumerate() {
                let row = &z[a * k..(a + 1) * k];
                let l = loss_of(&sub, j, row);
                let reached = sub.reached(j, row);
                if l < loss[j] || reached {
                    loss[j] = l;
                    cur[j * per..(j + 1) * per].copy_from_slice(&prop[a * per..(a + 1) * per]);
                }
                if reached {
                    hit[j] = true;
                    passes.settle(todo[j]);
                } else {
                    still.push(j);
                }
            }
            active = still;
            passes.at((restart, runs), (it + 1, p.queries));
        }
        for (j, &i) in todo.iter().enumerate() {
            if hit[j] || loss[j] < best_loss[i] {
                best[i * per..(i + 1) * per].copy_from_slice(&cur[j * per..(j + 1) * per]);
                best_loss[i] = loss[j];
            }
            done[i] |= hit[j];
        }
        passes.at((restart + 1, runs), (0, 1));
    }
    finalize(model, x, best, goal, passes)
}

/// The loss Square lowers: the margin `z_y − max_{j≠y} z_j` (untargeted) or the cross-entropy
/// of the target (targeted), in f64.
fn loss_of(goal: &Goal, j: usize, z: &[f32]) -> f64 {
    match goal.targets {
        None => {
            let y = goal.labels[j];
            z[y] as f64 - z[runner_up(z, y)] as f64
        }
        Some(t) => {
            let m = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let lse = m + z.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            lse - z[t[j]] as f64
        }
    }
}

/// Image layout and the square updates on one image (C·H·W).
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
}

/// A random sign, ±1 with equal odds.
fn sign(rng: &mut ChaCha8Rng) -> f32 {
    if rng.next_u32() & 1 == 0 {
        1.0
    } else {
        -1.0
    }
}

/// Uniform in `{0, …, m}`.
fn corner(rng: &mut ChaCha8Rng, m: usize) -> usize {
    ((uniform(rng) as f64 * (m + 1) as f64) as usize).min(m)
}

/// `a × b` nested rectangles centred at `(a/2, b/2)`, ring `r` weighted `1/(r+1)²` (cumulated),
/// scaled to unit Frobenius norm (AutoAttack's `eta_rectangles`), row-major.
fn rectangles(a: usize, b: usize) -> Vec<f32> {
    let mut d = vec![0.0f32; a * b];
    let (xc, yc) = (a / 2 + 1, b / 2 + 1);
    let (mut r0, mut c0) = (xc as isize - 1, yc as isize - 1);
    for ring in 0..xc.max(yc) {
        let (rs, re) = (
            r0.max(0) as usize,
            ((r0 + 2 * ring as isize + 1).max(0) as usize).min(a),
        );
        let (cs, ce) = (
            c0.max(0) as usize,
            ((c0 + 2 * ring as isize + 1).max(0) as usize).min(b),
        );
        let v = 1.0 / ((ring + 1) * (ring + 1)) as f32;
        for r in rs..re {
            for c in cs..ce {
                d[r * b + c] += v;
            }
        }
        r0 -= 1;
        c0 -= 1;
    }
    normalize(&mut d);
    d
}

/// Scales `d` to unit L2 norm (unchanged when zero).
fn normalize(d: &mut [f32]) {
    let n = Norm::L2.of(d.iter().copied());
    if n > 0.0 {
        d.iter_mut().for_each(|v| *v /= n);
    }
}

/// The `s × s` pattern η: rectangles of opposite signs on the top `⌊s/2⌋` and bottom rows, unit
/// norm, transposed with probability ½ (one draw), row-major.
fn eta(s: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let top = rectangles(s / 2, s);
    let bottom = rectangles(s - s / 2, s);
    let mut d: Vec<f32> = top.into_iter().chain(bottom.iter().map(|v| -v)).collect();
    normalize(&mut d);
    if uniform(rng) > 0.5 {
        let mut t = vec![0.0f32; s * s];
        for r in 0..s {
            for c in 0..s {
                t[c * s + r] = d[r * s + c];
            }
        }
        d = t;
    }
    d
}

impl Geometry {
    fn new(shape: [usize; 3]) -> Self {
        Geometry {
            c: shape[0],
            h: shape[1],
            w: shape[2],
        }
    }

    /// L∞ start: `clip(x0 ± ε)`, one sign per channel and column.
    fn stripes(&self, x0: &[f32], eps: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let (c, h, w) = (self.c, self.h, self.w);
        let signs: Vec<f32> = (0..c * w).map(|_| sign(rng)).collect();
        (0..c * h * w)
            .map(|q| {
                let (ch, col) = (q / (h * w), q % w);
                (x0[q] + eps * signs[ch * w + col]).clamp(0.0, 1.0)
            })
            .collect()
    }

    /// The side of a square covering the fraction `frac` of a channel, at least `min`, at most
    /// `min(h, w)`.
    fn side(&self, frac: f64, min: usize) -> usize {
        let s = ((frac * (self.h * self.w) as f64).sqrt().round_ties_even() as usize).max(min);
        s.min(self.h.min(self.w)).max(1)
    }

    /// An L∞ proposal: one square of every channel moved to `x0 ± ε` (one sign per channel).
    /// AutoAttack computes `clip(clip(x̂ ± 2ε, x0 − ε, x0 + ε), 0, 1)`, the same value up to
    /// rounding; writing `x0 ± ε` directly keeps an unchanged square bit for bit unchanged.
    fn linf_step(
        &self,
        cur: &[f32],
        x0: &[f32],
        eps: f32,
        frac: f64,
        rng: &mut ChaCha8Rng,
    ) -> Vec<f32> {
        let (h, w) = (self.h, self.w);
        let s = self.side(frac, 1);
        let vh = corner(rng, h - s);
        let vw = corner(rng, w - s);
        let mut out = cur.to_vec();
        for ch in 0..self.c {
            let sg = sign(rng);
            for r in vh..vh + s {
                for col in vw..vw + s {
                    let q = ch * h * w + r * w + col;
                    out[q] = (x0[q] + sg * eps).clamp(0.0, 1.0);
                }
            }
        }
        out
    }

    /// L2 start: a centred grid of windows filled with ±η per channel, scaled to ‖δ‖₂ = ε.
    fn grid(&self, x0: &[f32], eps: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let (c, h, w) = (self.c, self.h, self.w);
        let s = (h.min(w) / 5).max(1);
        let (nh, nw) = ((h / s).min(5), (w / s).min(5));
        let (oh, ow) = ((h - nh * s) / 2, (w - nw * s) / 2);
        let mut d = vec![0.0f32; c * h * w];
        for gi in 0..nh {
            for gj in 0..nw {
                let e = eta(s, rng);
                for ch in 0..c {
                    let sg = sign(rng);
                    for r in 0..s {
                        for col in 0..s {
                            let q = ch * h * w + (oh + gi * s + r) * w + ow + gj * s + col;
                            d[q] += e[r * s + col] * sg;
                        }
                    }
                }
            }
        }
        apply_l2(x0, &d, eps)
    }

    /// An L2 proposal (see the module docs).
    fn l2_step(
        &self,
        cur: &[f32],
        x0: &[f32],
        eps: f32,
        frac: f64,
        rng: &mut ChaCha8Rng,
    ) -> Vec<f32> {
        let (c, h, w) = (self.c, self.h, self.w);
        let mut s = self.side(frac, 3);
        if s.is_multiple_of(2) {
            // Odd sides, as AutoAttack; an even cap min(h, w) gives way to the odd side below.
            s = if s < h.min(w) { s + 1 } else { s - 1 };
        }
        let mut delta: Vec<f32> = cur.iter().zip(x0).map(|(a, b)| a - b).collect();
        let (vh, vw) = (corner(rng, h - s), corner(rng, w - s));
        let (vh2, vw2) = (corner(rng, h - s), corner(rng, w - s));
        let in1 = |r: usize, col: usize| (vh..vh + s).contains(&r) && (vw..vw + s).contains(&col);
        let in2 =
            |r: usize, col: usize| (vh2..vh2 + s).contains(&r) && (vw2..vw2 + s).contains(&col);
        let sq = |v: f32| (v as f64) * (v as f64);
        let mut norm_image = 0.0f64;
        let mut norm_windows = 0.0f64;
        let mut norm_w1 = vec![0.0f64; c];
        for ch in 0..c {
            for r in 0..h {
                for col in 0..w {
                    let v = sq(delta[ch * h * w + r * w + col]);
                    norm_image += v;
                    if in1(r, col) {
                        norm_w1[ch] += v;
                    }
                    if in1(r, col) || in2(r, col) {
                        norm_windows += v;
                    }
                }
            }
        }
        let budget = ((eps as f64 * eps as f64 - norm_image).max(0.0) / c as f64 + norm_windows)
            .sqrt() as f32;
        let e = eta(s, rng);
        let mut fill = vec![0.0f32; c * s * s];
        for ch in 0..c {
            let sg = sign(rng);
            let n1 = norm_w1[ch].sqrt() as f32;
            let f = &mut fill[ch * s * s..(ch + 1) * s * s];
            for r in 0..s {
                for col in 0..s {
                    let old = delta[ch * h * w + (vh + r) * w + vw + col];
                    f[r * s + col] = e[r * s + col] * sg + old / (1e-12 + n1);
                }
            }
            let nf = Norm::L2.of(f.iter().copied());
            f.iter_mut().for_each(|v| *v = *v / (1e-12 + nf) * budget);
        }
        for ch in 0..c {
            for r in 0..h {
                for col in 0..w {
                    let q = ch * h * w + r * w + col;
                    if in1(r, col) {
                        delta[q] = fill[ch * s * s + (r - vh) * s + col - vw];
                    } else if in2(r, col) {
                        delta[q] = 0.0;
                    }
                }
            }
        }
        apply_l2(x0, &delta, eps)
    }
}

/// `clip_[0,1](x0 + ε·δ/(‖δ‖₂ + 1e−12))`.
fn apply_l2(x0: &[f32], delta: &[f32], eps: f32) -> Vec<f32> {
    let n = Norm::L2.of(delta.iter().copied()) + 1e-12;
    x0.iter()
        .zip(delta)
        .map(|(&o, &d)| (o + d / n * eps).clamp(0.0, 1.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_halves_at_autoattacks_positions() {
        let p = SquareParams::default();
        // 5000 queries: positions × 0.5.
        assert_eq!(p.p_at(0), 0.8f32 as f64);
        assert_eq!(p.p_at(5), 0.8f32 as f64);
        assert_eq!(p.p_at(6), 0.8f32 as f64 / 2.0);
        assert_eq!(p.p_at(4001), 0.8f32 as f64 / 512.0);
        let q = SquareParams {
            queries: 10000,
            ..Default::default()
        };
        assert_eq!(q.p_at(10), 0.8f32 as f64);
        assert_eq!(q.p_at(11), 0.8f32 as f64 / 2.0);
        assert_eq!(q.p_at(201), 0.8f32 as f64 / 8.0);
        assert_eq!(q.p_at(501), 0.8f32 as f64 / 16.0);
    }

    #[test]
    fn eta_has_unit_norm_and_opposite_halves() {
        let mut rng = sample_rng(0, 0, "t");
        for s in [1usize, 3, 5, 8] {
            let e = eta(s, &mut rng);
            let n = Norm::L2.of(e.iter().copied());
            assert!((n - 1.0).abs() < 1e-5, "s = {s}: norm {n}");
            let total: f32 = e.iter().sum();
            assert!(e.iter().all(|v| v.is_finite()), "{e:?}");
            if s % 2 == 0 {
                assert!(total.abs() < 1e-5, "s = {s}: sum {total}");
            }
        }
    }
}
