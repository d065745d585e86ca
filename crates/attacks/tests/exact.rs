//! Exact cases: for a linear classifier `z = Wx + b` far from the box edges, the smallest
//! perturbation that changes the prediction from `y` is `min_k (z_y − z_k)/‖w_y − w_k‖_*`
//! (dual norm: L2 for L2, L1 for L∞). DeepFool must land within 1 % of it and never below.

mod common;

use common::{exact, linear};

use faultline_attacks::{
    BatchRef, BoundedAttack, DeepFoolParams, Goal, MinNormAttack, Norm, PgdParams,
};

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
        let idx: Vec<usize> = (0..n).collect();
        let out = DeepFoolParams {
            norm,
            ..Default::default()
        }
        .run(
            &m,
            BatchRef::new(&x, &idx),
            Goal {
                labels: &labels,
                targets: None,
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
            steps: 50,
            ..Default::default()
        };
        let out = p
            .run(
                &m,
                BatchRef::new(&x, &(0..n).collect::<Vec<_>>()),
                Goal {
                    labels: &labels,
                    targets: None,
                },
                eps,
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
