//! The `faultline` binary: a thin layer of argument parsing and printing over the `faultline`
//! library. Exit status: 0 on success, 2 on error (a one-line message on stderr).

mod attack;
mod audit;
mod bench;
mod calibrate;
mod classwise;
mod common;
mod corrupt;
mod eval;
mod finetune;
mod list;
mod margins;
mod merge;
mod metrics;
mod quantize;
mod reverse;
mod weak;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Where an image classifier breaks, why, and what to do about it.
///
/// Run without --model and --data to use the shipped demo: ResNet-20 on the CIFAR-10 test set.
#[derive(Parser, Debug)]
#[command(name = "faultline", version, about, long_about)]
struct Cli {
    /// Worker threads for the engine [default: all cores]
    #[arg(long, global = true, value_name = "T")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Clean accuracy, per-class accuracy, confusion matrix and logit margins; writes
    /// DIR/run.json and DIR/samples.jsonl
    Eval(eval::EvalArgs),
    /// Robust accuracy under an adversarial attack (FGSM, PGD, MI-FGSM, APGD, FAB, Square, DeepFool,
    /// C&W) or the standard AutoAttack-grade ensemble (--preset standard), per ε
    Attack(attack::AttackArgs),
    /// Brittle decisions: input margins (FAB or DeepFool) against logit margins and other
    /// scores, margin consistency (Kendall τ), detection of non-robust samples, pseudo-margin
    Margins(margins::MarginsArgs),
    /// Class-wise robustness: per-class accuracy, confusion, CFPS under attacks and corruptions,
    /// targeted reachability and latent structure, with SVG charts
    Classwise(classwise::ClasswiseArgs),
    /// Write a corrupted copy of a data set (CIFAR-10-C-style .npy files or an image folder)
    Corrupt(corrupt::CorruptArgs),
    /// Fine-tune (optionally adversarially) on a training set and write the model back as
    /// DIR/model.onnx, with per-epoch loss and validation accuracy in DIR/run.json
    Finetune(finetune::FinetuneArgs),
    /// Weak-robust training samples: score every training sample by random neighbours, keep the
    /// weakest as a validation set, rank the weaknesses per perturbation type
    Weak(weak::WeakArgs),
    /// Fine-tune against the weaknesses of a `weak` run; test accuracy before and after per
    /// perturbation type
    Harden(weak::HardenArgs),
    /// The comprehensive metric suite (Guo et al.): behaviour under white- and black-box attacks,
    /// imperceptibility, neuron coverage, mCE, mFR, boundary distances, neuron sensitivity and
    /// uncertainty, and with --defended the defended-vs-undefended metrics
    Metrics(metrics::MetricsArgs),
    /// The headline metrics of several `metrics` runs side by side (terminal, CSV, SVG), with
    /// the better run per metric
    Compare(metrics::CompareArgs),
    /// Join the run directories of a sharded run (--shard 1/N … N/N) into the directory the
    /// unsharded run writes: checks the shards, joins their per-sample records and recomputes
    /// every aggregate from them
    Merge(merge::MergeArgs),
    /// Reverse adversarial examples: a bounded attack run as loss descent toward the true or the
    /// predicted label, on clean and corrupted images; accuracy before and after
    Reverse(reverse::ReverseArgs),
    /// Post-training static quantization (int8, or 4-bit fake quantization) into an ONNX QDQ
    /// model DIR/model.onnx, with float and quantized accuracy in DIR/run.json
    Quantize(quantize::QuantizeArgs),
    /// Train a small calibrator network in front of a frozen (optionally quantized) model on some
    /// corruption families; accuracy without and with it on families it never saw. Writes
    /// DIR/calibrator.onnx and DIR/combined.onnx (calibrator then model, one graph)
    Calibrate(calibrate::CalibrateArgs),
    /// Forward and forward + input-gradient throughput (img/s) on random images
    Bench(bench::BenchArgs),
    /// Every analysis in one process (clean, corruptions, attack ensemble over ε, class-wise,
    /// margins, metrics, weak samples) with a cost estimate first; writes DIR/run.json and the
    /// self-contained DIR/report.html
    Audit(audit::AuditArgs),
    /// Rebuild the HTML report from earlier run directories (an audit directory or single runs)
    Report(audit::ReportArgs),
    /// Supported attacks (with their parameters and defaults), presets, corruptions, ONNX
    /// operators and data formats
    List(list::ListArgs),
}

fn main() -> ExitCode {
    // Recorded in the run.json of shards, for `merge` to run the command again.
    faultline::rundir::set_invocation(
        std::env::args().collect(),
        std::env::current_dir().unwrap_or_default(),
    );
    let cli = Cli::parse();
    let result = common::set_threads(cli.threads).and_then(|_| dispatch(&cli.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs a parsed command (`merge` runs the shards' command again through it).
fn dispatch(command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Eval(a) => eval::run(a),
        Command::Attack(a) => attack::run(a),
        Command::Classwise(a) => classwise::run(a),
        Command::Margins(a) => margins::run(a),
        Command::Corrupt(a) => corrupt::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Finetune(a) => finetune::run(a),
        Command::Weak(a) => weak::run(a),
        Command::Harden(a) => weak::harden(a),
        Command::List(a) => list::run(a),
        Command::Metrics(a) => metrics::run(a),
        Command::Compare(a) => metrics::compare(a),
        Command::Merge(a) => merge::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Report(a) => audit::report(a),
        Command::Reverse(a) => reverse::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Calibrate(a) => calibrate::run(a),
    }
}

/// Parses a recorded command line (arguments after the program name) and runs it.
fn run_args(args: &[String]) -> anyhow::Result<()> {
    let cli =
        Cli::try_parse_from(std::iter::once("faultline".to_string()).chain(args.iter().cloned()))
            .map_err(|e| {
            anyhow::anyhow!(
                "the shards' recorded command line: {}",
                e.to_string().lines().next().unwrap_or("")
            )
        })?;
    dispatch(&cli.command)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
