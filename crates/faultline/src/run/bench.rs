//! `bench`: forward and forward + input-gradient throughput of a model on random images, as
//! medians over timed repetitions after a warm-up pass, and the peak memory.

use std::path::PathBuf;
use std::time::Instant;

use faultline_engine::Loss;
use serde::Serialize;

use crate::error::{setting, Result};
use crate::model::load_model;

/// Settings of `bench`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    /// The ONNX model.
    pub model: PathBuf,
    /// Batch sizes, timed in ascending order.
    pub batch_sizes: Vec<usize>,
    /// Image shape `[C, H, W]` [default: the model's declared input].
    pub shape: Option<[usize; 3]>,
    /// Timed repetitions per measurement (the median is reported).
    pub iters: usize,
    /// Also time every graph node over the timed passes (a little slower: one clock read
    /// and a lock per node and pass).
    pub profile: bool,
}

/// One graph node's share of the timed passes at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct NodeProfile {
    /// The node's name.
    pub node: String,
    /// Its operator.
    pub op: String,
    /// Mean milliseconds per forward pass (forward passes of both measurements).
    pub forward_ms: f64,
    /// Mean milliseconds per backward pass.
    pub backward_ms: f64,
}

/// Throughput at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// Images per pass.
    pub batch_size: usize,
    /// Forward passes, images per second (median).
    pub forward_img_per_s: f64,
    /// Forward + input-gradient passes, images per second (median).
    pub input_grad_img_per_s: f64,
    /// Peak resident memory of the process so far, MiB (Linux).
    pub peak_rss_mib: Option<f64>,
    /// With `profile`: every node's time, in graph order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Vec<NodeProfile>>,
}

/// What `bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The model.
    pub model: PathBuf,
    /// The image shape fed.
    pub shape: [usize; 3],
    /// Worker threads.
    pub threads: usize,
    /// Repetitions per measurement.
    pub iters: usize,
    /// One row per batch size, ascending.
    pub results: Vec<BenchRow>,
    /// Peak resident memory at the end, MiB.
    pub peak_rss_mib: Option<f64>,
    /// faultline's version.
    pub version: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident set size of this process in MiB (Linux; None elsewhere).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Deterministic pseudo-random pixels in [0, 1).
fn pixels(n: usize, seed: u64) -> Vec<f32> {
    let mut s = 0x9e3779b97f4a7c15u64 ^ seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// Times the model.
pub fn run(cfg: &BenchConfig) -> Result<BenchReport> {
    if cfg.iters == 0 {
        return Err(setting("--iters", "must be at least 1"));
    }
    if cfg.batch_sizes.is_empty() || cfg.batch_sizes.contains(&0) {
        return Err(setting("--batch-size", "batch sizes must be positive"));
    }
    let shape = match cfg.shape {
        Some(s) => s,
        None => {
            // Learn the declared image shape without preparing.
            let (probe, _) = faultline_onnx::load(&cfg.model)?;
            match probe.declared_input() {
                [_, Some(c), Some(h), Some(w)] => [*c, *h, *w],
                d => {
                    return Err(setting(
                        "--shape",
                        format!("the model declares input {d:?}; pass --shape C,H,W"),
                    ))
                }
            }
        }
    };
    let loaded = load_model(&cfg.model, shape, None)?;
    let model = &loaded.model;
    let per: usize = shape.iter().product();
    let mut batches = cfg.batch_sizes.clone();
    batches.sort_unstable();
    batches.dedup();
    let mut results = Vec::new();
    for &b in &batches {
        let x = pixels(b * per, b as u64);
        let k = model.num_classes();
        let labels: Vec<usize> = (0..b).map(|i| i % k).collect();
        let loss = Loss::CrossEntropy { labels: &labels };
        model.logits(&x)?;
        model.loss_grad(&x, &loss)?;
        let (mut fwd, mut grad) = (Vec::new(), Vec::new());
        if cfg.profile {
            faultline_engine::profile::start();
        }
        for _ in 0..cfg.iters {
            let t = Instant::now();
            std::hint::black_box(model.logits(&x)?);
            fwd.push(b as f64 / t.elapsed().as_secs_f64());
            let t = Instant::now();
            std::hint::black_box(model.loss_grad(&x, &loss)?);
            grad.push(b as f64 / t.elapsed().as_secs_f64());
        }
        let profile = cfg.profile.then(|| {
            let table = faultline_engine::profile::stop();
            // Each timed repetition runs two forward passes (logits, then loss_grad's) and one
            // backward pass.
            let per = |t: std::time::Duration, passes: usize| {
                t.as_secs_f64() * 1e3 / (passes * cfg.iters) as f64
            };
            let mut rows: Vec<NodeProfile> = Vec::new();
            for e in table {
                let i = match rows.iter().position(|r| r.node == e.node) {
                    Some(i) => i,
                    None => {
                        rows.push(NodeProfile {
                            node: e.node.clone(),
                            op: e.op.to_string(),
                            forward_ms: 0.0,
                            backward_ms: 0.0,
                        });
                        rows.len() - 1
                    }
                };
                if e.backward {
                    rows[i].backward_ms += per(e.time, 1);
                } else {
                    rows[i].forward_ms += per(e.time, 2);
                }
            }
            rows
        });
        results.push(BenchRow {
            batch_size: b,
            profile,
            forward_img_per_s: median(fwd),
            input_grad_img_per_s: median(grad),
            peak_rss_mib: peak_rss_mib(),
        });
    }
    Ok(BenchReport {
        model: cfg.model.clone(),
        shape,
        threads: rayon::current_num_threads(),
        iters: cfg.iters,
        results,
        peak_rss_mib: peak_rss_mib(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}
