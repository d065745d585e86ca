//! The ImageNet-sized layers other than same-size 3×3 ones (`bench_support::IMAGENET_LAYERS`:
//! ResNet's 7×7 stride-2 stem, bottleneck 1×1 layers, strided 3×3 and 1×1 layers) on 8-sample
//! batches: the engine's own choice (`auto`) alternated with the direct kernel (where the CPU
//! has it) and the GEMM route (im2col, or the input itself for a stride-1 1×1 layer) within
//! one process, the best rate of each in GMAC/s, the median [min, max] over rounds of
//! auto's speed over the faster alternative and over im2col alone (the unbanded col2im route
//! for a strided input gradient, where the direct kernel's choice shares auto's banded one),
//! and the [min, max] milliseconds per call of auto and im2col. `--grad` times the input
//! gradient instead.
//!
//! ```sh
//! cargo bench -p faultline-engine --bench imagenet_layers -- [--grad] [--rounds 5]
//! ```
//!
//! A plain `main` for the reason `kernel_speeds` gives: the figure is a ratio of kernels timed
//! in alternation within each round.

mod common;

use common::{alternate_with, best_rate, summary, Args};
use faultline_engine::bench_support::{Kernel, Layer, IMAGENET_LAYERS};

fn main() {
    let args = Args::parse(5);
    let grad = std::env::args().any(|a| a == "--grad");
    let mut kernels = vec![Kernel::Auto, Kernel::Im2col];
    if let Some(Kernel::Direct) = Kernel::simd() {
        kernels.push(Kernel::Direct);
    }
    for shape in IMAGENET_LAYERS {
        let layer = Layer::new(8, shape);
        let t = alternate_with(&kernels, args.rounds, args.reps(&layer, 4e9), |k| {
            let r = if grad {
                layer.run_grad(k)
            } else {
                layer.run(k)
            };
            std::hint::black_box(r.expect("the layer runs on every kernel"));
        });
        let ratios = (0..args.rounds)
            .map(|r| (1..kernels.len()).map(|k| t[k][r]).fold(f64::MAX, f64::min) / t[0][r])
            .collect();
        let over_im2col = (0..args.rounds).map(|r| t[1][r] / t[0][r]).collect();
        let ms = |k: usize| {
            let (lo, hi) = t[k]
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            format!("[{:.2}, {:.2}]", lo * 1e3, hi * 1e3)
        };
        let rates: Vec<String> = kernels
            .iter()
            .zip(&t)
            .map(|(k, ts)| format!("{} {:6.1}", k.name(), best_rate(&layer, ts)))
            .collect();
        println!(
            "{:>4}->{:<4} {}x{} k{} s{}  {} GMAC/s  auto / best other {}  auto / im2col {}  ms auto {} im2col {}",
            shape.c,
            shape.m,
            shape.hw,
            shape.hw,
            shape.k,
            shape.stride,
            rates.join("  "),
            summary(ratios),
            summary(over_im2col),
            ms(0),
            ms(1)
        );
        if !args.bench {
            break;
        }
    }
}
