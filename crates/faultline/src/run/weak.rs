//! `weak`: weak-robust training samples (REVa; Nuhu et al. 2025, methods.md §1).
//!
//! Every clean-correct training sample is scored by how easily small random perturbations flip
//! it (§1.3): Q neighbours `clip(x + ε·r_q)` per ε of a grid, with the same Q directions r_q at
//! every ε ([U]: signed uniform in [−1, 1]^d, so ε is an L∞ radius, or standard Gaussian); the
//! misprediction score of a neighbour is 0 when it is still classified right, else the largest
//! wrong-class probability; the sample's score is their mean over all Q·|grid| neighbours (ties
//! broken by the misclassified fraction), and the first ε at which any neighbour flips is kept.
//! Alternatives for comparison: `logit` (the negated logit margin, no neighbours) and `margin`
//! (the negated DeepFool L∞ input margin). Each sample draws from its own seeded stream, so its
//! score depends neither on the batch nor on the thread count.
//!
//! The weakest `fraction` of the scored samples (per class by default, keeping the class mix,
//! [U]) is the weak validation set, written to `weak_indices.txt`. Its accuracy under each
//! perturbation type (corruption family × severity, attacks at a few ε) is set beside that of a
//! random subset of the same size and class mix and of the test set: families ranked by the weak
//! set's mean accuracy, the lowest `top` are the weaknesses ν, the highest the strengths ρ.
//! [`harden`] fine-tunes against ν (see its documentation).

use std::path::{Path, PathBuf};
use std::time::Instant;

use faultline_attacks::attack::argmax;
use faultline_attacks::{registry, BatchRef, Goal};
use faultline_corruptions::CorruptionKind;
use faultline_engine::Model;
use faultline_seed::Stream;
use serde::{Deserialize, Serialize};

use crate::corruption::parse_kinds;
use crate::data::Dataset;
use crate::error::{io, setting, Error, Result};
use crate::eval::{accuracy_under, check_batch, Perturbation};
use crate::model::ModelCard;
use crate::plot::bars;
use crate::run::{check_batch_size, threads, write_file, DataCard, Loaded, Output, Progress};
use crate::rundir::RunDir;
use crate::subset::{select, Selection, Subset};

/// The random direction of the neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Noise {
    /// Signed uniform in [−1, 1] per pixel (ε is an L∞ radius). The default [U].
    Uniform,
    /// Standard Gaussian per pixel.
    Gaussian,
}

/// How samples are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// Mean misprediction score of the random neighbours (REVa). The default.
    Ms,
    /// Negated logit margin `−(z_y − max_{j≠y} z_j)` of the clean sample.
    Logit,
    /// Negated DeepFool L∞ input margin (the smallest perturbation found that flips it).
    Margin,
}

/// Settings of `weak`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeakConfig {
    /// The training samples scored [default: all; `limit` class-stratified by default].
    pub selection: Selection,
    /// Samples per forward batch (of clean samples; each brings Q·|grid| neighbours).
    pub batch_size: usize,
    /// Neighbours per ε [default 32, U].
    pub q: usize,
    /// The ε grid [default 1/255, 2/255, 4/255, 8/255, U].
    pub eps: Vec<f32>,
    /// Direction distribution.
    pub noise: Noise,
    /// Score.
    pub score: ScoreKind,
    /// Fraction of the scored samples kept as the weak set [default 0.1].
    pub fraction: f32,
    /// Keep the class mix (`true`, default) or take the globally weakest.
    pub stratify: bool,
    /// Perturbation types of the strengths-and-weaknesses table.
    pub perturbations: Vec<Perturbation>,
    /// Test samples evaluated under every perturbation (with a test set), class-stratified.
    pub test_limit: Option<usize>,
    /// Families named as weaknesses and as strengths.
    pub top: usize,
    /// Seed of the neighbours, the random comparison subset, the random corruptions and attacks.
    pub seed: u64,
}

/// The default perturbation types: the 15 standard corruption families at severities 1, 3 and
/// 5, FGSM and PGD at 1/255 and 2/255.
pub fn default_perturbations() -> Vec<Perturbation> {
    let mut v = Vec::new();
    for k in parse_kinds("standard").unwrap_or_default() {
        for s in [1u8, 3, 5] {
            v.push(Perturbation::Corruption {
                name: k.name().to_string(),
                severity: s,
            });
        }
    }
    for name in ["fgsm", "pgd"] {
        for e in [1.0f32, 2.0] {
            v.push(Perturbation::Attack {
                name: name.into(),
                eps: e / 255.0,
                steps: None,
            });
        }
    }
    v
}

impl Default for WeakConfig {
    fn default() -> Self {
        WeakConfig {
            selection: Selection::default(),
            batch_size: 16,
            q: 32,
            eps: [1.0f32, 2.0, 4.0, 8.0].iter().map(|e| e / 255.0).collect(),
            noise: Noise::Uniform,
            score: ScoreKind::Ms,
            fraction: 0.1,
            stratify: true,
            perturbations: default_perturbations(),
            test_limit: Some(1000),
            top: 3,
            seed: 0,
        }
    }
}

impl WeakConfig {
    /// Checks the settings before anything runs.
    pub fn check(&self) -> Result<()> {
        check_batch_size(self.batch_size)?;
        if self.q == 0 {
            return Err(setting("--q", "must be at least 1"));
        }
        if self.eps.is_empty() || self.eps.iter().any(|e| !(*e > 0.0 && *e <= 1.0)) {
            return Err(setting(
                "--eps",
                "radii must be in (0, 1] (pixel units, e.g. 2/255)",
            ));
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(setting("--fraction", "must be in (0, 1]"));
        }
        if self.top == 0 {
            return Err(setting("--top", "must be at least 1"));
        }
        for p in &self.perturbations {
            match p {
                Perturbation::Corruption { name, severity } => {
                    if !CorruptionKind::ALL.iter().any(|k| k.name() == name)
                        || !(1..=5).contains(severity)
                    {
                        return Err(setting(
                            "--perturbations",
                            format!("unknown corruption {name}/{severity}"),
                        ));
                    }
                }
                Perturbation::Attack { name, eps, .. } => {
                    let e = registry::entry(name)
                        .map_err(|e| setting("--perturbations", e.to_string()))?;
                    if e.kind != registry::Kind::Bounded || !(*eps > 0.0 && *eps <= 1.0) {
                        return Err(setting(
                            "--perturbations",
                            format!("{name} at {eps}: needs a bounded attack and ε in (0, 1]"),
                        ));
                    }
                }
                Perturbation::Clean => {}
            }
        }
        Ok(())
    }
}

/// One scored training sample (a line of `samples.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WeakRecord {
    /// Data-set index.
    pub index: usize,
    /// Label.
    pub label: usize,
    /// Clean prediction.
    pub prediction: usize,
    /// Clean logit margin against the label.
    pub logit_margin: f32,
    /// The score (higher is weaker); none for a clean-misclassified sample.
    pub score: Option<f64>,
    /// Fraction of the neighbours misclassified (`ms` score).
    pub flipped: Option<f64>,
    /// The smallest ε of the grid at which a neighbour is misclassified (`ms` score).
    pub first_flip_eps: Option<f32>,
}

/// Accuracy of the three sets under one perturbation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    /// The perturbation's label.
    pub perturbation: String,
    /// Its family.
    pub family: String,
    /// Accuracy of the weak set.
    pub weak: f64,
    /// Accuracy of the random subset of the same size and class mix.
    pub random: f64,
    /// Accuracy of the test set (with `--test`).
    pub test: Option<f64>,
}

/// The body of `weak`'s `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct WeakReport {
    /// Size of the weak set over the samples scored.
    pub weak_fraction: f64,
    /// Weak-set size.
    pub weak_count: usize,
    /// Samples scored (clean-correct) and samples read.
    pub scored: usize,
    /// Samples read.
    pub samples: usize,
    /// Families with the lowest mean weak-set accuracy (ν), weakest first.
    pub weaknesses: Vec<String>,
    /// Families with the highest (ρ), strongest first.
    pub strengths: Vec<String>,
    /// The corruption families with the lowest mean weak-set accuracy, weakest first: what
    /// `harden` augments with (attacks, whose accuracy is often 0 on every set, would otherwise
    /// fill ν).
    pub corruption_weaknesses: Vec<String>,
    /// Per perturbation: weak, random and test accuracy.
    pub weak_vs_random: Vec<Comparison>,
    /// Per family: mean accuracy of the weak set, the random subset and the test set.
    pub families: Vec<Comparison>,
    /// Perturbation types where the weak set is at least 20 points below the random subset.
    pub gap_20_points: usize,
    /// Scored samples per second.
    pub samples_per_second: f64,
    /// Samples already scored by an interrupted run this one resumed.
    pub resumed_from: usize,
    /// Worker threads.
    pub threads: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The model.
    pub model: ModelCard,
    /// The training data.
    pub data: DataCard,
    /// The test data.
    pub test: Option<DataCard>,
}

/// A test set evaluated next to the weak set.
pub struct TestSet<'a> {
    /// The data set.
    pub data: &'a dyn Dataset,
    /// Its description.
    pub card: DataCard,
}

fn softmax_max_wrong(z: &[f32], y: usize) -> f32 {
    let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let s: f32 = z.iter().map(|v| (v - m).exp()).sum();
    z.iter()
        .enumerate()
        .filter(|(j, _)| *j != y)
        .map(|(_, v)| (v - m).exp() / s)
        .fold(0.0, f32::max)
}

/// Scores one batch of samples (NCHW `images` with their labels and data-set indices); the
/// neighbours of each sample come from its own stream, so a sample's record does not depend on
/// the batch it is in.
pub fn score_batch(
    model: &Model,
    cfg: &WeakConfig,
    images: &[f32],
    labels: &[usize],
    indices: &[usize],
) -> Result<Vec<WeakRecord>> {
    let n = labels.len();
    let per = images.len() / n.max(1);
    let k = model.num_classes();
    let z = model.logits(images)?;
    let mut out: Vec<WeakRecord> = (0..n)
        .map(|i| {
            let row = &z[i * k..(i + 1) * k];
            let y = labels[i];
            let other = row
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != y)
                .map(|(_, v)| *v)
                .fold(f32::NEG_INFINITY, f32::max);
            WeakRecord {
                index: indices[i],
                label: y,
                prediction: argmax(row),
                logit_margin: row[y] - other,
                score: None,
                flipped: None,
                first_flip_eps: None,
            }
        })
        .collect();
    let correct: Vec<usize> = (0..n).filter(|&i| out[i].prediction == labels[i]).collect();
    match cfg.score {
        ScoreKind::Logit => {
            for &i in &correct {
                out[i].score = Some(-(out[i].logit_margin as f64));
            }
        }
        ScoreKind::Margin => {
            if correct.is_empty() {
                return Ok(out);
            }
            let at = registry::build(
                "deepfool",
                &registry::Settings {
                    seed: cfg.seed,
                    ..Default::default()
                },
            )
            .map_err(Error::Attack)?;
            let registry::Method::MinNorm(m) = &at.method else {
                unreachable!("deepfool is minimum-norm")
            };
            let xs: Vec<f32> = correct
                .iter()
                .flat_map(|&i| images[i * per..(i + 1) * per].to_vec())
                .collect();
            let ls: Vec<usize> = correct.iter().map(|&i| labels[i]).collect();
            let ix: Vec<usize> = correct.iter().map(|&i| indices[i]).collect();
            let r = m
                .run(
                    model,
                    BatchRef::new(&xs, &ix),
                    Goal {
                        labels: &ls,
                        targets: None,
                    },
                )
                .map_err(Error::Attack)?;
            for (j, &i) in correct.iter().enumerate() {
                // A sample no search flipped is as strong as the box allows.
                let d = if r.results[j].success {
                    r.results[j].linf
                } else {
                    1.0
                };
                out[i].score = Some(-(d as f64));
            }
        }
        ScoreKind::Ms => {
            let g = cfg.eps.len();
            let mut eps = cfg.eps.clone();
            eps.sort_by(f32::total_cmp);
            let per_sample = cfg.q * g;
            for &i in &correct {
                let x = &images[i * per..(i + 1) * per];
                let mut s = Stream::new(cfg.seed, indices[i] as u64, "weak:neighbours");
                let mut neighbours = Vec::with_capacity(per_sample * per);
                let mut dirs = vec![0.0f32; per];
                for _ in 0..cfg.q {
                    for d in dirs.iter_mut() {
                        *d = match cfg.noise {
                            Noise::Uniform => 2.0 * s.unit() - 1.0,
                            Noise::Gaussian => s.gauss(),
                        };
                    }
                    for &e in &eps {
                        neighbours.extend(
                            x.iter()
                                .zip(&dirs)
                                .map(|(v, d)| (v + e * d).clamp(0.0, 1.0)),
                        );
                    }
                }
                let zn = model.logits(&neighbours)?;
                let y = labels[i];
                let (mut ms, mut flips) = (0.0f64, 0usize);
                let mut first: Option<f32> = None;
                for (j, row) in zn.chunks(k).enumerate() {
                    if argmax(row) != y {
                        ms += softmax_max_wrong(row, y) as f64;
                        flips += 1;
                        let e = eps[j % g];
                        first = Some(first.map_or(e, |f: f32| f.min(e)));
                    }
                }
                out[i].score = Some(ms / per_sample as f64);
                out[i].flipped = Some(flips as f64 / per_sample as f64);
                out[i].first_flip_eps = first;
            }
        }
    }
    Ok(out)
}

/// The weak set: the weakest `fraction` of the scored records, per class when `stratify`,
/// ordered by score (ties: flipped fraction, then index). Returns ascending indices.
pub fn select_weak(records: &[WeakRecord], fraction: f32, stratify: bool) -> Vec<usize> {
    let mut scored: Vec<&WeakRecord> = records.iter().filter(|r| r.score.is_some()).collect();
    let key = |r: &&WeakRecord| (r.score.unwrap_or(0.0), r.flipped.unwrap_or(0.0));
    scored.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0)
            .then(kb.1.total_cmp(&ka.1))
            .then(a.index.cmp(&b.index))
    });
    let mut picked: Vec<usize> = if stratify {
        let classes = scored.iter().map(|r| r.label).max().map_or(0, |m| m + 1);
        (0..classes)
            .flat_map(|c| {
                let of: Vec<&&WeakRecord> = scored.iter().filter(|r| r.label == c).collect();
                let take = ((of.len() as f64) * fraction as f64)
                    .round()
                    .max(if of.is_empty() { 0.0 } else { 1.0 }) as usize;
                of.into_iter()
                    .take(take)
                    .map(|r| r.index)
                    .collect::<Vec<_>>()
            })
            .collect()
    } else {
        let take = ((scored.len() as f64) * fraction as f64).round().max(1.0) as usize;
        scored.iter().take(take).map(|r| r.index).collect()
    };
    picked.sort_unstable();
    picked
}

/// A random subset of the scored samples with the weak set's class mix (seeded).
fn random_like(records: &[WeakRecord], weak: &[usize], seed: u64) -> Vec<usize> {
    let label_of = |i: usize| records.iter().find(|r| r.index == i).map(|r| r.label);
    let classes = records.iter().map(|r| r.label).max().map_or(0, |m| m + 1);
    let mut out = Vec::new();
    for c in 0..classes {
        let want = weak.iter().filter(|&&i| label_of(i) == Some(c)).count();
        let mut pool: Vec<usize> = records
            .iter()
            .filter(|r| r.label == c && r.score.is_some())
            .map(|r| r.index)
            .collect();
        let mut s = Stream::new(seed, c as u64, "weak:random");
        for i in 0..want.min(pool.len()) {
            let j = i + s.below(pool.len() - i);
            pool.swap(i, j);
        }
        out.extend(pool.into_iter().take(want));
    }
    out.sort_unstable();
    out
}

/// Mean accuracy per family, in first-appearance order.
fn by_family(rows: &[Comparison]) -> Vec<Comparison> {
    let mut fams: Vec<String> = Vec::new();
    for r in rows {
        if !fams.contains(&r.family) {
            fams.push(r.family.clone());
        }
    }
    fams.into_iter()
        .map(|f| {
            let of: Vec<&Comparison> = rows.iter().filter(|r| r.family == f).collect();
            let m = |g: &dyn Fn(&Comparison) -> f64| {
                of.iter().map(|r| g(r)).sum::<f64>() / of.len() as f64
            };
            Comparison {
                perturbation: f.clone(),
                family: f,
                weak: m(&|r| r.weak),
                random: m(&|r| r.random),
                test: of
                    .iter()
                    .all(|r| r.test.is_some())
                    .then(|| m(&|r| r.test.unwrap_or(0.0))),
            }
        })
        .collect()
}

/// Writes `gallery.png`: up to 8 of the weakest samples per class (rows), 2× scale.
fn gallery(data: &dyn Dataset, records: &[WeakRecord], weak: &[usize], path: &Path) -> Result<()> {
    let info = data.info();
    let (c, h, w) = (info.channels, info.height, info.width);
    let classes = records.iter().map(|r| r.label).max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); classes];
    let mut ordered: Vec<&WeakRecord> =
        records.iter().filter(|r| weak.contains(&r.index)).collect();
    ordered.sort_by(|a, b| b.score.unwrap_or(0.0).total_cmp(&a.score.unwrap_or(0.0)));
    for r in ordered {
        if rows[r.label].len() < 8 {
            rows[r.label].push(r.index);
        }
    }
    let (cols, scale, gap) = (8usize, 2usize, 2usize);
    let (cw, ch) = (w * scale + gap, h * scale + gap);
    let (iw, ih) = ((cols * cw) as u32, (classes.max(1) * ch) as u32);
    let mut img = image::RgbImage::from_pixel(iw, ih, image::Rgb([255, 255, 255]));
    for (row, idx) in rows.iter().enumerate() {
        if idx.is_empty() {
            continue;
        }
        let b = data.read(idx)?;
        for (col, i) in (0..idx.len()).enumerate() {
            let px = b.image(i);
            for y in 0..h * scale {
                for x in 0..w * scale {
                    let at = |ch_: usize| {
                        (px[(ch_.min(c - 1) * h + y / scale) * w + x / scale] * 255.0)
                            .round()
                            .clamp(0.0, 255.0) as u8
                    };
                    img.put_pixel(
                        (col * cw + x) as u32,
                        (row * ch + y) as u32,
                        image::Rgb([at(0), at(1), at(2)]),
                    );
                }
            }
        }
    }
    img.save(path)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

/// Runs `weak` on the training data of `loaded`, with an optional test set.
pub fn run(
    cfg: &WeakConfig,
    loaded: &Loaded,
    test: Option<&TestSet>,
    out: &Output,
    progress: &dyn Progress,
) -> Result<WeakReport> {
    cfg.check()?;
    let t0 = Instant::now();
    let data = loaded.data.as_ref();
    let model = &loaded.model.model;
    let k = loaded.model.card.num_classes;
    // A shard covers whole batches (see `Shard`).
    let selection = cfg.selection.batched(cfg.batch_size);
    let indices = loaded.select(&selection)?;
    let mut settings = loaded.settings(&selection, &indices)?;
    settings["weak"] = serde_json::to_value(cfg).unwrap_or_default();
    settings["test"] = serde_json::json!(test.map(|t| t.card.path.clone()));
    let (mut rd, mut records): (RunDir, Vec<WeakRecord>) =
        RunDir::open(&out.dir, "weak", settings, out.mode())?;
    if let Some(line) = rd.replaced() {
        progress.note(line);
    }
    // Keep the records of a prefix of the selection (a resumed run appends in the same order).
    let done = records
        .iter()
        .zip(&indices)
        .take_while(|(r, &i)| r.index == i)
        .count();
    records.truncate(done);
    if done > 0 {
        progress.note(&format!(
            "resuming {}: {done} of {} samples already scored",
            out.dir.display(),
            indices.len()
        ));
    }
    progress.start("scoring", indices.len(), done);
    let t_score = Instant::now();
    for chunk in indices[done..].chunks(cfg.batch_size) {
        let b = data.read(chunk)?;
        check_batch(&b, k, &data.info().source.display().to_string())?;
        let recs = score_batch(model, cfg, &b.images, &b.labels, &b.indices)?;
        rd.append(&recs)?;
        records.extend(recs);
        progress.advance(records.len());
        progress.message(&format!(
            "{:.1} samples/s",
            (records.len() - done) as f64 / t_score.elapsed().as_secs_f64().max(1e-9)
        ));
    }
    progress.finish();
    let score_secs = t_score.elapsed().as_secs_f64();
    let weak = select_weak(&records, cfg.fraction, cfg.stratify);
    let scored = records.iter().filter(|r| r.score.is_some()).count();
    if weak.is_empty() {
        return Err(Error::Invalid(
            "no sample was classified right: nothing to score".into(),
        ));
    }
    let list: String = weak.iter().map(|i| format!("{i}\n")).collect();
    write_file(&out.file("weak_indices.txt"), &list)?;
    gallery(data, &records, &weak, &out.file("gallery.png"))?;
    let random = random_like(&records, &weak, cfg.seed);
    let mut kinds = vec![Perturbation::Clean];
    kinds.extend(cfg.perturbations.iter().cloned());
    progress.note(&format!(
        "weak set: {} of {scored} scored samples; evaluating it, a random subset and the test set under {} perturbations",
        weak.len(),
        kinds.len()
    ));
    let wa = accuracy_under(model, data, &weak, &kinds, 64, cfg.seed)?;
    let ra = accuracy_under(model, data, &random, &kinds, 64, cfg.seed)?;
    let ta = match test {
        Some(t) => {
            let ix = select(t.data, cfg.test_limit, Subset::Stratified, cfg.seed)?;
            Some(accuracy_under(model, t.data, &ix, &kinds, 64, cfg.seed)?)
        }
        None => None,
    };
    let rows: Vec<Comparison> = kinds
        .iter()
        .enumerate()
        .map(|(i, p)| Comparison {
            perturbation: p.label(),
            family: p.family().to_string(),
            weak: wa[i],
            random: ra[i],
            test: ta.as_ref().map(|t| t[i]),
        })
        .collect();
    let families = by_family(&rows);
    let mut ranked: Vec<&Comparison> = families.iter().filter(|f| f.family != "clean").collect();
    ranked.sort_by(|a, b| a.weak.total_cmp(&b.weak));
    let top = cfg.top.min(ranked.len());
    let weaknesses: Vec<String> = ranked.iter().take(top).map(|f| f.family.clone()).collect();
    let strengths: Vec<String> = ranked
        .iter()
        .rev()
        .take(top)
        .map(|f| f.family.clone())
        .collect();
    let corruption_weaknesses: Vec<String> = ranked
        .iter()
        .filter(|f| CorruptionKind::ALL.iter().any(|k| k.name() == f.family))
        .take(cfg.top)
        .map(|f| f.family.clone())
        .collect();
    let gap = rows
        .iter()
        .filter(|r| r.perturbation != "clean" && r.random - r.weak >= 0.2)
        .count();
    let mut series = vec![
        (
            "weak".to_string(),
            families.iter().map(|f| f.weak).collect::<Vec<_>>(),
        ),
        (
            "random".to_string(),
            families.iter().map(|f| f.random).collect(),
        ),
    ];
    if families.iter().all(|f| f.test.is_some()) {
        series.push((
            "test".to_string(),
            families.iter().map(|f| f.test.unwrap_or(0.0)).collect(),
        ));
    }
    let cats: Vec<String> = families.iter().map(|f| f.family.clone()).collect();
    write_file(
        &out.file("weak_vs_random.svg"),
        &bars(
            "Accuracy per perturbation family (mean over severities / ε)",
            &cats,
            &series,
        ),
    )?;
    let report = WeakReport {
        weak_fraction: weak.len() as f64 / scored.max(1) as f64,
        weak_count: weak.len(),
        scored,
        samples: records.len(),
        weaknesses,
        strengths,
        corruption_weaknesses,
        weak_vs_random: rows,
        families,
        gap_20_points: gap,
        samples_per_second: (records.len() - done) as f64 / score_secs.max(1e-9),
        resumed_from: done,
        threads: threads(),
        seconds: t0.elapsed().as_secs_f64(),
        model: loaded.model.card.clone(),
        data: loaded.data_card(),
        test: test.map(|t| t.card.clone()),
    };
    rd.finish(&report)?;
    Ok(report)
}

/// Reads the weak set, the weaknesses and the corruption weaknesses of an earlier `weak` run
/// directory.
pub fn read_weak_run(dir: &Path) -> Result<(Vec<usize>, Vec<String>, Vec<String>)> {
    let p = dir.join("weak_indices.txt");
    let text = std::fs::read_to_string(&p).map_err(io(&p))?;
    let mut idx = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        idx.push(l.parse::<usize>().map_err(|_| {
            Error::Invalid(format!(
                "{}:{}: '{l}' is not a sample index",
                p.display(),
                n + 1
            ))
        })?);
    }
    let rp = dir.join("run.json");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rp).map_err(io(&rp))?).map_err(|e| {
            Error::RunDir {
                path: rp.clone(),
                why: format!("not a faultline run record ({e})"),
            }
        })?;
    if run["command"] != "weak" || run["status"] != "complete" {
        return Err(Error::RunDir {
            path: rp,
            why: "not a complete `weak` run".into(),
        });
    }
    let list = |key: &str| -> Vec<String> {
        run[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok((idx, list("weaknesses"), list("corruption_weaknesses")))
}

/// Settings of `harden`: fine-tuning against the weaknesses a `weak` run found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HardenConfig {
    /// The fine-tuning run (epochs, optimiser, …); its augmentation is extended by the
    /// weaknesses' corruption families, and by PGD on half of each batch when an attack is one.
    pub finetune: crate::run::finetune::FinetuneConfig,
    /// Copies of each weak sample added to the training samples (over-weighting them) [U,
    /// default 1: each weak sample is seen twice per epoch].
    pub weak_copies: usize,
    /// Severities the weaknesses' corruptions are drawn from in training.
    pub severities: Vec<u8>,
    /// Perturbation types evaluated on the test set before and after.
    pub perturbations: Vec<Perturbation>,
    /// Test samples, class-stratified [default 1000].
    pub test_limit: Option<usize>,
    /// Also train against attacks among the weaknesses (PGD on half of each batch) [default:
    /// no; adversarial training trades clean accuracy, which plain hardening should keep].
    pub attacks: bool,
}

impl Default for HardenConfig {
    /// Fine-tuning at lr 0.001 with a corruption probability of 0.3: on the shared ResNet-20
    /// (5,000 training JPEGs, one epoch, test on 500 JPEGs) finetune's own 0.002 and 0.5 raised
    /// the weakest family by 25 points but cost 13 points of clean accuracy; 0.001 and 0.3 raised
    /// it by 32 points and clean accuracy by 4 (see the weak note in docs/benchmarks.md).
    fn default() -> Self {
        HardenConfig {
            finetune: crate::run::finetune::FinetuneConfig {
                lr: 0.001,
                corrupt_prob: 0.3,
                ..crate::run::finetune::FinetuneConfig::default()
            },
            weak_copies: 1,
            severities: vec![1, 2, 3, 4, 5],
            perturbations: default_perturbations(),
            test_limit: Some(1000),
            attacks: false,
        }
    }
}

/// Test accuracy of one perturbation before and after hardening.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BeforeAfter {
    /// The perturbation (or family, in [`HardenReport::families`]).
    pub perturbation: String,
    /// Its family.
    pub family: String,
    /// Test accuracy of the original model.
    pub before: f64,
    /// Test accuracy of the hardened model.
    pub after: f64,
    /// True when the family was not used in training.
    pub held_out: bool,
}

/// The body of `harden`'s `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct HardenReport {
    /// Perturbation → test accuracy of the original model.
    pub before: std::collections::BTreeMap<String, f64>,
    /// Perturbation → test accuracy of the hardened model.
    pub after: std::collections::BTreeMap<String, f64>,
    /// Every perturbation, with the family's held-out flag.
    pub table: Vec<BeforeAfter>,
    /// Per family (mean over severities / ε).
    pub families: Vec<BeforeAfter>,
    /// The weaknesses trained against.
    pub trained_against: Vec<String>,
    /// Families never used in training.
    pub held_out: Vec<String>,
    /// Test accuracy change on the weakest trained-against family (mean over its types).
    pub gain_on_weakest: Option<f64>,
    /// Clean test accuracy change.
    pub clean_change: f64,
    /// The hardened model.
    pub model_out: PathBuf,
    /// The fine-tuning run's report (in `finetune/`).
    pub finetune: crate::run::finetune::FinetuneReport,
}

/// Fine-tunes the model of `loaded` against the weaknesses of the `weak` run in `weak_dir`
/// (methods.md §1.4, step 3): augmentation drawn from ν's corruption families (each at
/// `severities`; with `attacks`, also PGD on half of each batch for the attacks in ν), the weak samples
/// over-weighted by `weak_copies` extra copies, on the same training samples the `weak` run
/// scored (the same selection). Then evaluates the original and the hardened model on the test set
/// under every perturbation type, families never trained on marked held out. The "revised
/// loss" of the paper is unknown; the loss is the cross-entropy.
pub fn harden(
    cfg: &HardenConfig,
    loaded: &Loaded,
    weak_dir: &Path,
    test: &TestSet,
    out: &Output,
    progress: &dyn Progress,
) -> Result<HardenReport> {
    use crate::run::finetune::{self, Adversarial, Augment};
    let (weak, all_nu, corruption_nu) = read_weak_run(weak_dir)?;
    let mut nu = corruption_nu;
    if cfg.attacks {
        let attacks: Vec<String> = all_nu
            .into_iter()
            .filter(|f| !nu.contains(f) && registry::entry(f).is_ok())
            .collect();
        nu.extend(attacks);
    }
    if nu.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: the weak run names no weaknesses",
            weak_dir.display()
        )));
    }
    let mut ft = cfg.finetune.clone();
    for f in &nu {
        if CorruptionKind::ALL.iter().any(|k| k.name() == f) {
            ft.augment.push(Augment::Corruption {
                name: f.clone(),
                severities: cfg.severities.clone(),
            });
        } else if registry::entry(f).is_ok() {
            let eps = cfg
                .perturbations
                .iter()
                .filter_map(|p| match p {
                    Perturbation::Attack { name, eps, .. } if name == f => Some(*eps),
                    _ => None,
                })
                .fold(0.0f32, f32::max);
            if eps > 0.0 && ft.adversarial.is_none() {
                ft.adversarial = Some(Adversarial {
                    attack: "pgd".into(),
                    eps,
                    steps: 3,
                    fraction: 0.5,
                    warmup: 0.5,
                });
            }
        }
    }
    ft.extra = weak
        .iter()
        .flat_map(|&i| std::iter::repeat_n(i, cfg.weak_copies))
        .collect();
    let trained: Vec<String> = nu.clone();
    let report_ft = finetune::run(&ft, loaded, None, &out.sub("finetune"), progress)?;
    let info = loaded.data.info();
    let norm = loaded
        .model
        .card
        .normalization
        .as_ref()
        .map(|n| faultline_engine::Normalization {
            mean: n.mean.clone(),
            std: n.std.clone(),
        });
    let hardened = crate::model::load_model(
        &report_ft.model_out,
        [info.channels, info.height, info.width],
        norm,
    )?;
    let ix = select(test.data, cfg.test_limit, Subset::Stratified, ft.seed)?;
    let mut kinds = vec![Perturbation::Clean];
    kinds.extend(cfg.perturbations.iter().cloned());
    progress.note(&format!(
        "evaluating both models on {} test samples under {} perturbations",
        ix.len(),
        kinds.len()
    ));
    let before = accuracy_under(&loaded.model.model, test.data, &ix, &kinds, 64, ft.seed)?;
    let after = accuracy_under(&hardened.model, test.data, &ix, &kinds, 64, ft.seed)?;
    let is_trained = |fam: &str| {
        trained.iter().any(|t| t == fam) || (fam == "fgsm" && trained.iter().any(|t| t == "pgd"))
    };
    let table: Vec<BeforeAfter> = kinds
        .iter()
        .enumerate()
        .map(|(i, p)| BeforeAfter {
            perturbation: p.label(),
            family: p.family().to_string(),
            before: before[i],
            after: after[i],
            held_out: p.family() != "clean" && !is_trained(p.family()),
        })
        .collect();
    let mut fams: Vec<String> = Vec::new();
    for r in &table {
        if !fams.contains(&r.family) {
            fams.push(r.family.clone());
        }
    }
    let families: Vec<BeforeAfter> = fams
        .iter()
        .map(|f| {
            let of: Vec<&BeforeAfter> = table.iter().filter(|r| &r.family == f).collect();
            let n = of.len() as f64;
            BeforeAfter {
                perturbation: f.clone(),
                family: f.clone(),
                before: of.iter().map(|r| r.before).sum::<f64>() / n,
                after: of.iter().map(|r| r.after).sum::<f64>() / n,
                held_out: of[0].held_out,
            }
        })
        .collect();
    let weakest = families
        .iter()
        .filter(|f| !f.held_out && f.family != "clean")
        .min_by(|a, b| a.before.total_cmp(&b.before));
    let clean = &table[0];
    let report = HardenReport {
        before: table
            .iter()
            .map(|r| (r.perturbation.clone(), r.before))
            .collect(),
        after: table
            .iter()
            .map(|r| (r.perturbation.clone(), r.after))
            .collect(),
        held_out: families
            .iter()
            .filter(|f| f.held_out)
            .map(|f| f.family.clone())
            .collect(),
        gain_on_weakest: weakest.map(|w| w.after - w.before),
        clean_change: clean.after - clean.before,
        table,
        families,
        trained_against: trained,
        model_out: report_ft.model_out.clone(),
        finetune: report_ft,
    };
    let base = loaded.select(&cfg.finetune.selection)?;
    let mut settings = loaded.settings(&cfg.finetune.selection, &base)?;
    settings["harden"] = serde_json::to_value(cfg).unwrap_or_default();
    settings["weak_dir"] = serde_json::json!(weak_dir);
    settings["test"] = serde_json::json!(test.card.path);
    let (rd, _): (RunDir, Vec<serde_json::Value>) =
        RunDir::open(&out.dir, "harden", settings, true)?;
    rd.finish(&report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(index: usize, label: usize, score: Option<f64>) -> WeakRecord {
        WeakRecord {
            index,
            label,
            prediction: label,
            logit_margin: 1.0,
            score,
            flipped: score,
            first_flip_eps: None,
        }
    }

    #[test]
    fn weakest_per_class_and_globally() {
        let r = vec![
            rec(0, 0, Some(0.9)),
            rec(1, 0, Some(0.1)),
            rec(2, 0, None),
            rec(3, 1, Some(0.5)),
            rec(4, 1, Some(0.6)),
            rec(5, 0, Some(0.8)),
            rec(6, 1, Some(0.0)),
        ];
        // Per class: a third of 3 scored in class 0 rounds to 1 (index 0), of 3 in class 1 to 1 (index 4).
        assert_eq!(select_weak(&r, 0.34, true), [0, 4]);
        // Globally: 0.34 of the 6 scored rounds to 2, the two highest scores.
        assert_eq!(select_weak(&r, 0.34, false), [0, 5]);
        let rand = random_like(&r, &[0, 4], 1);
        assert_eq!(rand.len(), 2);
        assert!(
            rand.iter().any(|&i| [0, 1, 5].contains(&i))
                && rand.iter().any(|&i| [3, 4, 6].contains(&i))
        );
    }
}
