//! The sparse input-gradient route (`kernels::sparse_grad`) against the dense kernels, on
//! output gradients shaped like those behind a ReLU and 2×2 max pooling
//! (`Layer::masked_grad`), with 1 seed per sample (an attack's loss gradient) and 9 (FAB's
//! per-class seeds): LeNet-5's two layers and a ResNet-20 layer. Each round times the sparse
//! route, the fastest dense kernel of this CPU and the engine's own choice back to back on an
//! 8-sample batch; it prints each one's best time and the median [min, max] over rounds of
//! dense / sparse and dense / auto.
//!
//! ```sh
//! cargo bench -p faultline-engine --bench sparse_grad -- [--rounds 5]
//! ```

mod common;

use common::{alternate_with, summary, Args};
use faultline_engine::bench_support::{Kernel, Layer, Shape};

fn main() {
    let args = Args::parse(5);
    let dense = Kernel::simd().unwrap_or(Kernel::Im2col);
    let kernels = [Kernel::Sparse, dense, Kernel::Auto];
    let layer = |c, m, hw| Shape {
        c,
        m,
        hw,
        k: 3,
        stride: 1,
    };
    // (name, shape, pooled, share of non-zero values before pooling)
    let cases = [
        ("LeNet-5 conv2, pooled", layer(32, 64, 14), true, 0.75),
        ("LeNet-5 conv1, pooled", layer(1, 32, 28), true, 0.75),
        (
            "grey 5x5 1->6, pooled",
            Shape {
                k: 5,
                ..layer(1, 6, 28)
            },
            true,
            0.75,
        ),
        ("grey 3x3 1->16, pooled", layer(1, 16, 28), true, 0.75),
        ("RGB stem 3->16 32x32, ReLU", layer(3, 16, 32), false, 0.5),
        ("RGB stem 3->64 32x32, ReLU", layer(3, 64, 32), false, 0.5),
        ("ResNet 32ch 16x16, ReLU", layer(32, 32, 16), false, 0.5),
        (
            "ResNet 32ch 16x16, sparse ReLU",
            layer(32, 32, 16),
            false,
            0.15,
        ),
    ];
    for (name, shape, pooled, keep) in cases {
        for copies in [1, 9] {
            let layer = Layer::new(8, shape);
            let dy = layer
                .masked_grad(copies, pooled, keep, 7)
                .expect("the layer's output shape");
            let reps = args.reps(&layer, 2e9 / copies as f64);
            let t = alternate_with(&kernels, args.rounds, reps, |k| {
                let r = layer.run_grad_of(&dy, copies, k);
                std::hint::black_box(r.expect("the layer runs on every kernel"));
            });
            let best = |ts: &[f64]| ts.iter().cloned().fold(f64::MAX, f64::min) * 1e3;
            let over = |k: usize| summary((0..args.rounds).map(|r| t[1][r] / t[k][r]).collect());
            let nz = dy.iter().filter(|&&v| v != 0.0).count() as f64 / dy.len() as f64;
            println!(
                "{name:<32} copies {copies}  non-zero {:4.1} %  ms: sparse {:.3} {} {:.3} auto {:.3}  {}/sparse {}  {}/auto {}",
                nz * 100.0,
                best(&t[0]),
                dense.name(),
                best(&t[1]),
                best(&t[2]),
                dense.name(),
                over(0),
                dense.name(),
                over(2),
            );
            if !args.bench {
                return;
            }
        }
    }
}
