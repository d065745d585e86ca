//! `faultline bench`: forward and forward + input-gradient throughput of a model on random
//! images, as medians over timed repetitions after a warm-up pass.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use faultline::engine::Loss;
use faultline::model::load_model;
use serde_json::json;

use crate::common::demo_model;

/// Arguments of `faultline bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// ONNX model to time [default: the demo ResNet-20]
    #[arg(long, value_name = "M.onnx")]
    pub model: Option<PathBuf>,
    /// Batch sizes to time, comma-separated (run in ascending order, so the memory peak
    /// printed for each is that of the batches up to it)
    #[arg(
        long,
        default_value = "1,8,32,128,512",
        value_delimiter = ',',
        value_name = "B"
    )]
    pub batch_size: Vec<usize>,
    /// Image shape C,H,W fed to the model [default: the model's declared input]
    #[arg(long, value_delimiter = ',', value_name = "C,H,W")]
    pub shape: Option<Vec<usize>>,
    /// Timed repetitions per measurement (the median is reported)
    #[arg(long, default_value_t = 7, value_name = "N")]
    pub iters: usize,
    /// Print one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident set size of this process in MiB (Linux; None elsewhere).
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn run(args: &BenchArgs, threads: usize) -> Result<()> {
    let path = args.model.clone().unwrap_or_else(demo_model);
    if args.iters == 0 || args.batch_size.contains(&0) {
        bail!("--iters and --batch-size must be positive");
    }
    // Learn the declared image shape without preparing, then load for real.
    let (probe, _) = faultline::onnx::load(&path)
        .with_context(|| format!("loading model {}", path.display()))?;
    let shape: [usize; 3] = match &args.shape {
        Some(s) if s.len() == 3 => [s[0], s[1], s[2]],
        Some(_) => bail!("--shape takes three numbers: C,H,W"),
        None => {
            let d = probe.declared_input();
            match d {
                [_, Some(c), Some(h), Some(w)] => [*c, *h, *w],
                _ => bail!("the model declares input {d:?}; pass --shape C,H,W"),
            }
        }
    };
    drop(probe);
    let loaded = load_model(&path, shape, None)
        .with_context(|| format!("loading model {}", path.display()))?;
    let model = &loaded.model;
    let per: usize = shape.iter().product();
    let mut rows = Vec::new();
    let mut batches = args.batch_size.clone();
    batches.sort_unstable();
    batches.dedup();
    for &b in &batches {
        // Deterministic pseudo-random pixels in [0, 1).
        let mut s = 0x9e3779b97f4a7c15u64 ^ b as u64;
        let x: Vec<f32> = (0..b * per)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect();
        let k = model.num_classes();
        let labels: Vec<usize> = (0..b).map(|i| i % k).collect();
        model.logits(&x)?;
        model.loss_grad(&x, &Loss::CrossEntropy { labels: &labels })?;
        let mut fwd = Vec::new();
        let mut grad = Vec::new();
        for _ in 0..args.iters {
            let t = Instant::now();
            std::hint::black_box(model.logits(&x)?);
            fwd.push(b as f64 / t.elapsed().as_secs_f64());
            let t = Instant::now();
            std::hint::black_box(model.loss_grad(&x, &Loss::CrossEntropy { labels: &labels })?);
            grad.push(b as f64 / t.elapsed().as_secs_f64());
        }
        rows.push((b, median(fwd), median(grad), peak_rss_mib()));
    }
    let rss = peak_rss_mib();
    let mut o = std::io::stdout().lock();
    if args.json {
        let (_, f0, g0, _) = rows[0];
        let v = json!({
            "model": path,
            "threads": threads,
            "batch_size": rows[0].0,
            "forward_img_per_s": f0,
            "input_grad_img_per_s": g0,
            "peak_rss_mib": rss,
            "results": rows.iter().map(|(b, f, g, r)| json!({"batch_size": b, "forward_img_per_s": f, "input_grad_img_per_s": g, "peak_rss_mib": r})).collect::<Vec<_>>(),
            "iters": args.iters,
            "version": env!("CARGO_PKG_VERSION"),
        });
        writeln!(o, "{v}")?;
    } else {
        writeln!(
            o,
            "model {} ({}x{}x{}), {threads} threads, median of {} runs",
            path.display(),
            shape[0],
            shape[1],
            shape[2],
            args.iters
        )?;
        writeln!(
            o,
            "{:>6}  {:>14}  {:>24}  {:>13}",
            "batch", "forward img/s", "forward+input-grad img/s", "peak RSS MiB"
        )?;
        for (b, f, g, r) in &rows {
            let r = r.map_or("-".to_string(), |r| format!("{r:.0}"));
            writeln!(o, "{b:>6}  {f:>14.1}  {g:>24.1}  {r:>13}")?;
        }
        if let Some(r) = rss {
            writeln!(o, "peak resident memory {r:.0} MiB")?;
        }
    }
    Ok(())
}
