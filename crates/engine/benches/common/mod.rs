//! What both per-layer kernel benchmarks share: their command line, the alternated timing of
//! several kernels within one process, and the median of per-round ratios.
//!
//! Every speed claim in this project is a ratio measured within one process: the machines
//! drift between speed phases over minutes, which moves absolute figures (GMAC/s) far more than
//! a ratio of two kernels timed in alternation, round after round. So each round times every
//! kernel once, back to back, a ratio is taken per round, and the median over rounds (with its
//! range) is the result; the best rate of each kernel is printed alongside for scale.

// Each benchmark uses only part of this module.
#![allow(dead_code)]

use std::time::Instant;

use faultline_engine::bench_support::{Kernel, Layer, LAYERS};

/// The command line: `[LAYER…] [--rounds N]`, a layer written `64x16` (channels x side).
/// `cargo bench` passes `--bench`; without it (`cargo test --benches`) the benchmark only
/// smoke-tests itself: one round, one call per kernel, on the first selected layer.
pub struct Args {
    /// Layers to time, `(channels, side)`.
    pub layers: Vec<(usize, usize)>,
    /// Rounds of alternation per layer.
    pub rounds: usize,
    /// Whether this is a real measurement (else a smoke run).
    pub bench: bool,
}

impl Args {
    /// Parses the arguments, with `rounds` unless `--rounds` says otherwise.
    pub fn parse(rounds: usize) -> Args {
        let mut filters = Vec::new();
        let (mut bench, mut rounds) = (false, rounds);
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--bench" => bench = true,
                "--rounds" => {
                    rounds = args
                        .next()
                        .and_then(|r| r.parse().ok())
                        .filter(|&r| r > 0)
                        .expect("--rounds takes a positive number");
                }
                // Other flags (libtest's, passed out of habit) do not apply here.
                a if a.starts_with('-') => {}
                a => filters.push(a.to_string()),
            }
        }
        let mut layers: Vec<(usize, usize)> = LAYERS
            .into_iter()
            .filter(|(c, hw)| filters.is_empty() || filters.contains(&format!("{c}x{hw}")))
            .collect();
        if layers.is_empty() {
            let known: Vec<String> = LAYERS.iter().map(|(c, hw)| format!("{c}x{hw}")).collect();
            panic!(
                "no layer matches {filters:?}; the layers are {}",
                known.join(" ")
            );
        }
        if !bench {
            layers.truncate(1);
            rounds = 1;
        }
        Args {
            layers,
            rounds,
            bench,
        }
    }

    /// Calls per timing: enough for about `macs_per_timing` multiply-adds (1 in a smoke run).
    pub fn reps(&self, layer: &Layer, macs_per_timing: f64) -> usize {
        if self.bench {
            (macs_per_timing / layer.macs).ceil() as usize
        } else {
            1
        }
    }
}

/// Times `kernels` on `layer` in turn (A, B, …, A, B, …) for `rounds` rounds, each timing
/// `reps` calls; returns, per kernel, its seconds per call in each round.
pub fn alternate(layer: &Layer, kernels: &[Kernel], rounds: usize, reps: usize) -> Vec<Vec<f64>> {
    alternate_with(kernels, rounds, reps, |k| {
        std::hint::black_box(layer.run(k).expect("the layer runs on every kernel"));
    })
}

/// [`alternate`] for any call `run(kernel)`.
pub fn alternate_with(
    kernels: &[Kernel],
    rounds: usize,
    reps: usize,
    run: impl Fn(Kernel),
) -> Vec<Vec<f64>> {
    let mut times = vec![Vec::with_capacity(rounds); kernels.len()];
    for _ in 0..rounds {
        for (k, t) in kernels.iter().zip(&mut times) {
            let start = Instant::now();
            for _ in 0..reps {
                run(*k);
            }
            t.push(start.elapsed().as_secs_f64() / reps as f64);
        }
    }
    times
}

/// GMAC/s of the fastest of `times` (seconds per call of `layer`).
pub fn best_rate(layer: &Layer, times: &[f64]) -> f64 {
    layer.macs / times.iter().copied().fold(f64::MAX, f64::min) / 1e9
}

/// `median [min, max]` of per-round ratios.
pub fn summary(mut ratios: Vec<f64>) -> String {
    ratios.sort_by(f64::total_cmp);
    format!(
        "{:.2} [{:.2}, {:.2}]",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    )
}
