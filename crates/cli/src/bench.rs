//! `faultline bench`: forward and forward + input-gradient throughput of a model on random
//! images, as medians over timed repetitions after a warm-up pass.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use faultline::run::bench::{self, BenchConfig};
use serde_json::json;

use crate::common::demo_model;

/// Arguments of `faultline bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// ONNX model to time [default: the demo ResNet-20]
    #[arg(short, long, value_name = "M.onnx")]
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
    /// Also time every graph node and print, per batch size, the operators and the nodes
    /// that take the most time (forward and backward, milliseconds per pass)
    #[arg(long)]
    pub profile: bool,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let shape = match &args.shape {
        Some(s) if s.len() == 3 => Some([s[0], s[1], s[2]]),
        Some(_) => bail!("--shape takes three numbers: C,H,W"),
        None => None,
    };
    let cfg = BenchConfig {
        model: args.model.clone().unwrap_or_else(demo_model),
        batch_sizes: args.batch_size.clone(),
        shape,
        iters: args.iters,
        profile: args.profile,
    };
    let r = bench::run(&cfg).with_context(|| format!("timing {}", cfg.model.display()))?;
    let mut o = std::io::stdout().lock();
    if args.json {
        let first = &r.results[0];
        let mut v = serde_json::to_value(&r)?;
        v["batch_size"] = json!(first.batch_size);
        v["forward_img_per_s"] = json!(first.forward_img_per_s);
        v["input_grad_img_per_s"] = json!(first.input_grad_img_per_s);
        writeln!(o, "{v}")?;
        return Ok(());
    }
    let [c, h, w] = r.shape;
    writeln!(
        o,
        "model {} ({c}x{h}x{w}), {} threads, median of {} runs",
        r.model.display(),
        r.threads,
        r.iters
    )?;
    writeln!(
        o,
        "{:>6}  {:>14}  {:>24}  {:>13}",
        "batch", "forward img/s", "forward+input-grad img/s", "peak RSS MiB"
    )?;
    for row in &r.results {
        let rss = row
            .peak_rss_mib
            .map_or("-".to_string(), |m| format!("{m:.0}"));
        writeln!(
            o,
            "{:>6}  {:>14.1}  {:>24.1}  {rss:>13}",
            row.batch_size, row.forward_img_per_s, row.input_grad_img_per_s
        )?;
    }
    for row in &r.results {
        if let Some(p) = &row.profile {
            print_profile(&mut o, row.batch_size, p)?;
        }
    }
    if let Some(m) = r.peak_rss_mib {
        writeln!(o, "peak resident memory {m:.0} MiB")?;
    }
    Ok(())
}

/// The per-operator totals and the twelve slowest nodes of one batch size's profile.
fn print_profile(o: &mut impl Write, batch: usize, p: &[bench::NodeProfile]) -> Result<()> {
    let total: f64 = p.iter().map(|r| r.forward_ms + r.backward_ms).sum();
    writeln!(
        o,
        "\nbatch {batch}: {total:.2} ms per forward + backward pass over the nodes"
    )?;
    let mut ops: Vec<(&str, f64, f64)> = Vec::new();
    for r in p {
        match ops.iter_mut().find(|(op, ..)| *op == r.op) {
            Some(e) => {
                e.1 += r.forward_ms;
                e.2 += r.backward_ms;
            }
            None => ops.push((&r.op, r.forward_ms, r.backward_ms)),
        }
    }
    ops.sort_by(|a, b| (b.1 + b.2).total_cmp(&(a.1 + a.2)));
    writeln!(
        o,
        "{:>24}  {:>10}  {:>10}  {:>6}",
        "operator", "fwd ms", "bwd ms", "share"
    )?;
    for (op, f, b) in &ops {
        let share = 100.0 * (f + b) / total.max(f64::MIN_POSITIVE);
        writeln!(o, "{op:>24}  {f:>10.3}  {b:>10.3}  {share:>5.1}%")?;
    }
    let mut nodes: Vec<&bench::NodeProfile> = p.iter().collect();
    nodes.sort_by(|a, b| (b.forward_ms + b.backward_ms).total_cmp(&(a.forward_ms + a.backward_ms)));
    writeln!(
        o,
        "{:>40}  {:>16}  {:>10}  {:>10}",
        "node", "operator", "fwd ms", "bwd ms"
    )?;
    for r in nodes.iter().take(12) {
        let name: String = r
            .node
            .chars()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        writeln!(
            o,
            "{name:>40}  {:>16}  {:>10.3}  {:>10.3}",
            r.op, r.forward_ms, r.backward_ms
        )?;
    }
    Ok(())
}
