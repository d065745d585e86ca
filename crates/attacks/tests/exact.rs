//! Exact cases: for a linear classifier `z = Wx + b` far from the box edges, the smallest
//! perturbation that changes the prediction from `y` is `min_k (z_y − z_k)/‖w_y − w_k‖_*`
//! (dual norm: L2 for L2, L1 for L∞). DeepFool must land within 1 % of it and never below.

use faultline_attacks::{deepfool, pgd, DeepFoolParams, Goal, Norm, PgdParams};
use faultline_engine::ops::{Flatten, Gemm};
use faultline_engine::{GraphBuilder, Model, Tensor};

fn linear(d: usize, k: usize, seed: u64) -> (Model, Vec<f32>, Vec<f32>) {
    let mut s = seed;
    let mut r = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / 16777216.0) - 0.5
    };
    let w: Vec<f32> = (0..d * k).map(|_| r()).collect();
    let b: Vec<f32> = (0..k).map(|_| 0.1 * r()).collect();
    let mut g = GraphBuilder::new();
    g.input("x");
    g.constant("w", Tensor::from_f32(vec![k, d], w.clone()).unwrap());
    g.constant("b", Tensor::from_f32(vec![k], b.clone()).unwrap());
    g.node("flat", Box::new(Flatten { axis: 1 }), &[Some("x")], "f");
    g.node(
        "fc",
        Box::new(Gemm {
            trans_b: true,
            ..Gemm::default()
        }),
        &[Some("f"), Some("w"), Some("b")],
        "z",
    );
    let mut m = Model::new(g.build("z").unwrap(), vec![]);
    m.prepare([1, 1, d], None).unwrap();
    (m, w, b)
}

/// The exact minimal distance for each sample, and the predicted labels.
fn exact(
    w: &[f32],
    b: &[f32],
    x: &[f32],
    d: usize,
    k: usize,
    norm: Norm,
) -> (Vec<f64>, Vec<usize>) {
    let mut dist = Vec::new();
    let mut labels = Vec::new();
    for xi in x.chunks(d) {
        let z: Vec<f64> = (0..k)
            .map(|c| {
                b[c] as f64
                    + (0..d)
                        .map(|j| w[c * d + j] as f64 * xi[j] as f64)
                        .sum::<f64>()
            })
            .collect();
        let y = (0..k).fold(0, |m, c| if z[c] > z[m] { c } else { m });
        let best = (0..k)
            .filter(|&c| c != y)
            .map(|c| {
                let diff = (0..d).map(|j| (w[y * d + j] - w[c * d + j]) as f64);
                let dn = match norm {
                    Norm::L2 => diff.map(|v| v * v).sum::<f64>().sqrt(),
                    Norm::Linf => diff.map(f64::abs).sum::<f64>(),
                };
                (z[y] - z[c]) / dn
            })
            .fold(f64::INFINITY, f64::min);
        dist.push(best);
        labels.push(y);
    }
    (dist, labels)
}

#[test]
fn deepfool_finds_the_exact_linear_margin() {
    let (d, k, n) = (20, 5, 16);
    let (m, w, b) = linear(d, k, 3);
    // Images near the middle of the box, so the box constraint never binds.
    let x: Vec<f32> = (0..n * d)
        .map(|i| 0.5 + 0.02 * (((i * 7919) % 13) as f32 / 13.0 - 0.5))
        .collect();
    for norm in [Norm::L2, Norm::Linf] {
        let (want, labels) = exact(&w, &b, &x, d, k, norm);
        let out = deepfool(
            &m,
            &x,
            Goal {
                labels: &labels,
                targets: None,
            },
            &DeepFoolParams {
                norm,
                ..Default::default()
            },
        )
        .unwrap();
        for (i, r) in out.results.iter().enumerate() {
            assert!(r.success, "{norm:?} sample {i} not broken");
            let got = if norm == Norm::L2 { r.l2 } else { r.linf } as f64;
            assert!(
                got >= want[i] * (1.0 - 1e-4),
                "{norm:?} sample {i}: {got} below the exact {}",
                want[i]
            );
            assert!(
                got <= want[i] * 1.01,
                "{norm:?} sample {i}: {got} more than 1 % above {}",
                want[i]
            );
        }
    }
}

#[test]
fn pgd_stays_in_the_ball_and_agrees_with_the_exact_margin() {
    let (d, k, n) = (20, 5, 16);
    let (m, w, b) = linear(d, k, 5);
    let x: Vec<f32> = (0..n * d)
        .map(|i| 0.5 + 0.02 * (((i * 104729) % 17) as f32 / 17.0 - 0.5))
        .collect();
    let (want, labels) = exact(&w, &b, &x, d, k, Norm::Linf);
    for eps in [0.005f32, 0.02, 0.05] {
        let p = PgdParams {
            eps,
            steps: 50,
            ..Default::default()
        };
        let out = pgd(
            &m,
            &x,
            Goal {
                labels: &labels,
                targets: None,
            },
            &(0..n).collect::<Vec<_>>(),
            &p,
        )
        .unwrap();
        for (i, r) in out.results.iter().enumerate() {
            assert!(r.linf <= eps + 1e-6);
            // A sample whose exact margin is clearly inside ε must be broken, one clearly
            // outside must not be (PGD on a linear model reaches the L∞ optimum).
            if want[i] < eps as f64 * 0.9 {
                assert!(
                    r.success,
                    "eps {eps} sample {i}: margin {} < ε but not broken",
                    want[i]
                );
            }
            if want[i] > eps as f64 * 1.001 {
                assert!(
                    !r.success,
                    "eps {eps} sample {i}: margin {} > ε but broken",
                    want[i]
                );
            }
        }
    }
}
