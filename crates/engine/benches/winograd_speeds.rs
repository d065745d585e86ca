//! The measurement behind the engine's choice of Winograd F(2×2, 3×3) (a benchmark, not a
//! check). On 8-sample batches of twelve 3×3 same-padded layers from the three benchmark
//! networks, it alternates the channel-lanes kernel and Winograd within one process and prints
//! the median [min, max] over rounds of Winograd's speed over the channel-lanes kernel's, with
//! each one's best rate in direct-convolution GMAC/s. Needs AVX2 + FMA.
//!
//! ```sh
//! cargo bench -p faultline-engine --bench winograd_speeds                        # all layers, 15 rounds
//! cargo bench -p faultline-engine --bench winograd_speeds -- 64x16 --rounds 5    # one layer (channels x side)
//! ```
//!
//! A plain `main` (`harness = false`) rather than criterion, for the reason given in
//! `kernel_speeds`: the result is a ratio of two kernels timed in alternation, round by round,
//! within one process, which criterion's one-routine-at-a-time durations cannot express.

mod common;

use common::{alternate, best_rate, summary, Args};
use faultline_engine::bench_support::{Kernel, Layer};

fn main() {
    let args = Args::parse(15);
    if !Kernel::lanes_available() {
        println!("the channel-lanes and Winograd kernels need AVX2 + FMA, which this CPU lacks");
        return;
    }
    // Against the kernel Winograd would replace: this CPU's SIMD kernel (the direct kernel
    // with AVX-512, else the channel-lanes kernel).
    let simd = Kernel::simd().unwrap_or(Kernel::ChannelLanes);
    let name = simd.name();
    for &(c, hw) in &args.layers {
        let layer = Layer::same_3x3(8, c, hw);
        let reps = args.reps(&layer, 1e8);
        let t = alternate(&layer, &[simd, Kernel::Winograd], args.rounds, reps);
        if !args.bench {
            println!("{c}x{hw}: each kernel ran once (a smoke run; `cargo bench` measures)");
            continue;
        }
        let ratios = (0..args.rounds).map(|r| t[0][r] / t[1][r]).collect();
        println!(
            "{c:>4} channels {hw:>3}x{hw:<3} {name} {:6.1}  Winograd {:6.1} GMAC/s  Winograd / {name} {}",
            best_rate(&layer, &t[0]),
            best_rate(&layer, &t[1]),
            summary(ratios)
        );
    }
}
