//! Exact cases for FAB and APGD on a linear classifier `z = Wx + b` far from the box edges,
//! where the smallest perturbation that changes the prediction from `y` is
//! `min_k (z_y − z_k)/‖w_y − w_k‖_*` (dual norm: L2 for L2, L1 for L∞). FAB (minimum-norm mode)
//! must land within 1 % of it and never below; APGD at ε slightly above the exact L∞ margin must
//! break the sample (1.02 × for APGD-DLR and APGD-T; 1.5 × for cross-entropy, see the test), and
//! at 0.98 × must never do so. Same seed ⇒ identical outputs.

mod common;

use common::{exact, linear};

use faultline_attacks::{
    ApgdParams, AttackLoss, BatchRef, BoundedAttack, FabParams, Goal, MinNormAttack, Norm,
};

fn images(n: usize, d: usize, mul: usize, m: usize) -> Vec<f32> {
    (0..n * d)
        .map(|i| 0.5 + 0.02 * (((i * mul) % m) as f32 / m as f32 - 0.5))
        .collect()
}

#[test]
fn fab_finds_the_exact_linear_margin() {
    let (d, k, n) = (20, 5, 16);
    let (m, w, b) = linear(d, k, 3);
    let x = images(n, d, 7919, 13);
    let idx: Vec<usize> = (0..n).collect();
    for norm in [Norm::L2, Norm::Linf] {
        let (want, labels) = exact(&w, &b, &x, d, k, norm);
        let goal = Goal {
            labels: &labels,
            targets: None,
        };
        let p = FabParams {
            norm,
            ..Default::default()
        };
        let out = MinNormAttack::run(&p, &m, BatchRef::new(&x, &idx), goal).unwrap();
        let mut worst: f64 = 0.0;
        for (i, r) in out.results.iter().enumerate() {
            assert!(r.success, "{norm:?} sample {i} not broken");
            let got = if norm == Norm::L2 { r.l2 } else { r.linf } as f64;
            worst = worst.max(got / want[i]);
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
        eprintln!("FAB {norm:?}: worst ratio to the exact margin {worst:.5}");
        // Determinism: the same seed gives the same images.
        let again = MinNormAttack::run(&p, &m, BatchRef::new(&x, &idx), goal).unwrap();
        assert_eq!(out.adv, again.adv);
        // Bounded mode: succeed exactly where the margin is inside ε, and stay in the ball.
        let eps = {
            let mut s = want.clone();
            s.sort_by(f64::total_cmp);
            s[n / 2] as f32
        };
        let bounded = BoundedAttack::run(
            &FabParams {
                norm,
                ..Default::default()
            },
            &m,
            BatchRef::new(&x, &idx),
            goal,
            eps,
        )
        .unwrap();
        for (i, r) in bounded.results.iter().enumerate() {
            let got = if norm == Norm::L2 { r.l2 } else { r.linf };
            assert!(got <= eps * (1.0 + 1e-5));
            if want[i] < eps as f64 * 0.98 {
                assert!(r.success, "{norm:?} bounded sample {i} not broken");
            }
            if want[i] > eps as f64 * 1.001 {
                assert!(!r.success, "{norm:?} bounded sample {i} broken beyond ε");
            }
        }
    }
}

#[test]
fn apgd_breaks_exactly_the_samples_inside_the_linf_margin() {
    let (d, k, n) = (20, 5, 16);
    let (m, w, b) = linear(d, k, 5);
    let x = images(n, d, 104729, 17);
    let idx: Vec<usize> = (0..n).collect();
    let (want, labels) = exact(&w, &b, &x, d, k, Norm::Linf);
    let goal = Goal {
        labels: &labels,
        targets: None,
    };
    // DLR (untargeted and APGD-T) is a rescaled margin, so 2 % above the margin suffices.
    // Cross-entropy is not: on a linear model CE is convex in x and its maximum over the ball can
    // sit at a vertex that raises several runner-up logits without a flip, so CE breaks every
    // sample only from about 1.5 × the margin (measured: 0/16 at 1.02–1.25, 16/16 at 1.5).
    for (loss, targets, above) in [
        (AttackLoss::Ce, 0, 1.5f32),
        (AttackLoss::Dlr, 0, 1.02),
        (AttackLoss::Dlr, 3, 1.02),
    ] {
        for (i, &marg) in want.iter().enumerate() {
            let one = Goal {
                labels: &labels[i..i + 1],
                targets: None,
            };
            let xi = &x[i * d..(i + 1) * d];
            for (f, must) in [(above, true), (0.98, false)] {
                let eps = marg as f32 * f;
                let p = ApgdParams {
                    loss,
                    target_classes: targets,
                    ..Default::default()
                };
                let out = p.run(&m, BatchRef::new(xi, &[i]), one, eps).unwrap();
                let r = &out.results[0];
                assert!(r.linf <= eps * (1.0 + 1e-5) + 1e-7);
                assert_eq!(
                    r.success, must,
                    "{loss:?} T{targets} sample {i}: margin {marg}, ε = {}",
                    eps
                );
            }
        }
    }
    // Determinism on the whole batch.
    let p = ApgdParams::default();
    let a = p.run(&m, BatchRef::new(&x, &idx), goal, 0.01).unwrap();
    let b2 = p.run(&m, BatchRef::new(&x, &idx), goal, 0.01).unwrap();
    assert_eq!(a.adv, b2.adv);
    assert_eq!(a.results, b2.results);
}
