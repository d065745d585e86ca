//! The per-layer measurement behind the engine's automatic kernel choice (a benchmark, not a
//! check: it asserts nothing). On 8-sample batches of twelve 3×3 same-padded layers from the
//! three benchmark networks, it alternates this CPU's SIMD kernel (the direct kernel with
//! AVX-512, else the channel-lanes kernel with AVX2) with the two GEMM routes (column-shift and
//! im2col) within one process, and prints the best rate of each in GMAC/s and the median
//! [min, max] over rounds of the SIMD kernel's speed over the better GEMM route's.
//!
//! ```sh
//! cargo bench -p faultline-engine --bench kernel_speeds                         # all layers, 5 rounds
//! cargo bench -p faultline-engine --bench kernel_speeds -- 64x32 --rounds 15    # one layer (channels x side)
//! ```
//!
//! A plain `main` (`harness = false`) rather than criterion: criterion times one routine at a
//! time and reports its duration, while the figure this benchmark exists for is a ratio of
//! kernels timed in alternation within each round (see `common`), which criterion's model —
//! one duration per routine, routines measured one after another — cannot express.

mod common;

use common::{alternate, best_rate, summary, Args};
use faultline_engine::bench_support::{Kernel, Layer};

fn main() {
    let args = Args::parse(5);
    let Some(simd) = Kernel::simd() else {
        println!("no SIMD convolution kernel runs on this CPU");
        return;
    };
    let (name, gemms) = (simd.name(), [Kernel::RowShift, Kernel::Im2col]);
    for &(c, hw) in &args.layers {
        let layer = Layer::same_3x3(8, c, hw);
        let reps = args.reps(&layer, 2e8);
        let t = alternate(&layer, &[simd, gemms[0], gemms[1]], args.rounds, reps);
        if !args.bench {
            println!("{c}x{hw}: each kernel ran once (a smoke run; `cargo bench` measures)");
            continue;
        }
        let ratios = (0..args.rounds)
            .map(|r| t[1][r].min(t[2][r]) / t[0][r])
            .collect();
        println!(
            "{c:>4} channels {hw:>3}x{hw:<3} {name} {:6.1}  column-shift {:6.1}  im2col {:6.1} GMAC/s  {name} / best GEMM {}",
            best_rate(&layer, &t[0]),
            best_rate(&layer, &t[1]),
            best_rate(&layer, &t[2]),
            summary(ratios)
        );
    }
}
