//! The few-row kernel (`skinny`) against the gemm crate on the products it takes: a classifier's
//! fully connected layers in attacks (LeNet-5's 3136 → 200 forward on 8 and 16 rows, backward
//! on FAB's 9 seeds × 8 rows; ResNet's 512/2048 → 1000 on 8 rows), a few-channel convolution's
//! `Wᵀ·dY` and convolutions with up to `MAX_ROWS` output channels as GEMMs. Both run in
//! alternation within each round on one thread (or `--threads T`); prints each one's best rate
//! in GMAC/s and the median [min, max] over rounds of gemm's time over skinny's.
//!
//! ```sh
//! cargo bench -p faultline-matmul --bench skinny -- [--rounds 7] [--threads 1]
//! ```

use faultline_matmul::{matmul_on, Route, View};
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rounds = arg("--rounds", 7);
    let threads = arg("--threads", 1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    // (what, m, n, k)
    let shapes: [(&str, usize, usize, usize); 12] = [
        ("LeNet fc1 fwd, 8 rows", 8, 200, 3136),
        ("LeNet fc1 fwd, 16 rows", 16, 200, 3136),
        ("LeNet fc1 bwd, 72 rows", 72, 3136, 200),
        ("ResNet fc fwd 512", 8, 1000, 512),
        ("ResNet fc fwd 2048", 8, 1000, 2048),
        ("ResNet fc bwd 2048", 8, 2048, 1000),
        ("conv 3x3 1ch Wt.dY", 9, 784, 32),
        ("conv 16ch 32x32 3x3", 16, 1024, 144),
        ("conv 32ch 16x16 3x3", 32, 256, 288),
        ("conv 64ch 56x56 1x1", 64, 3136, 256),
        ("conv 64ch 8x8 3x3", 64, 64, 576),
        ("96 rows", 96, 784, 512),
    ];
    for (what, m, n, k) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 / 13.0 - 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 11) as f32 / 11.0 - 0.5).collect();
        let mut c = vec![0.0f32; m * n];
        let reps = (1e9 / (m * n * k) as f64).ceil() as usize;
        let mut time = |route: Route| {
            let t = Instant::now();
            for _ in 0..reps {
                pool.install(|| {
                    matmul_on(
                        route,
                        m,
                        n,
                        k,
                        &mut c,
                        n,
                        false,
                        View::rows(&a, k),
                        View::rows(&b, n),
                        threads > 1,
                    )
                });
            }
            t.elapsed().as_secs_f64() / reps as f64
        };
        time(Route::Auto);
        time(Route::Gemm);
        let (mut ts, mut tg) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            ts.push(time(Route::Auto));
            tg.push(time(Route::Gemm));
        }
        let mut ratios: Vec<f64> = tg.iter().zip(&ts).map(|(g, s)| g / s).collect();
        ratios.sort_by(f64::total_cmp);
        let gmacs =
            |t: &[f64]| (m * n * k) as f64 / t.iter().copied().fold(f64::MAX, f64::min) / 1e9;
        println!(
            "{what:24} {m:3}x{n:5}x{k:5}  skinny {:6.1}  gemm {:6.1} GMAC/s  gemm/skinny {:.2} [{:.2}, {:.2}]",
            gmacs(&ts),
            gmacs(&tg),
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}
