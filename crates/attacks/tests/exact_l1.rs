//! The L1 threat model on a linear classifier `z = Wx + b`, where the smallest L1 perturbation
//! that reaches the half-space `{z_c ≥ z_y}` inside the box is a linear programme solved exactly
//! by filling the coordinates in decreasing `|w_c,i − w_y,i|` up to their box edges
//! (`common::l1_halfspace`; without the box it is `(z_y − z_c)/‖w_y − w_c‖_∞`).
//!
//! * FAB-L1 (minimum-norm mode), untargeted and targeted, lands within 1 % of the exact value
//!   and never below it; bounded FAB-L1 succeeds exactly where the exact margin is inside ε
//!   (band 0.98–1.001 × ε, as the L∞/L2 test).
//! * PGD-L1 (SLIDE steps) stays in the L1 ball ∩ box and breaks the samples whose exact margin is
//!   at most ε/2.
//! * DeepFool, APGD and Square refuse L1 with an error.
//! * FAB-L1 (one run of 100 iterations) on 10 MNIST test images with the clean LeNet-5: every
//!   returned point re-checks as adversarial; the median L1 norm is printed (no reference
//!   exists).

mod common;

use std::time::Instant;

use common::{exact, l1_halfspace, linear, setup};

use faultline_attacks::attack::argmax;
use faultline_attacks::{
    ApgdParams, AttackLoss, BatchRef, BoundedAttack, DeepFoolParams, FabParams, Goal,
    MinNormAttack, Norm, PgdParams, SquareParams,
};

fn images(n: usize, d: usize, mul: usize, m: usize) -> Vec<f32> {
    (0..n * d)
        .map(|i| 0.5 + 0.3 * (((i * mul) % m) as f32 / m as f32 - 0.5))
        .collect()
}

fn logits(w: &[f32], b: &[f32], x: &[f32], k: usize) -> Vec<f64> {
    let d = x.len();
    (0..k)
        .map(|c| {
            b[c] as f64
                + (0..d)
                    .map(|j| w[c * d + j] as f64 * x[j] as f64)
                    .sum::<f64>()
        })
        .collect()
}

/// How many samples have an exact box-constrained margin above the unconstrained formula.
fn box_binds(w: &[f32], b: &[f32], x: &[f32], d: usize, k: usize, want: &[f64]) -> usize {
    x.chunks(d)
        .zip(want)
        .filter(|(xi, &e)| {
            let z = logits(w, b, xi, k);
            let y = (0..k).fold(0, |m, c| if z[c] > z[m] { c } else { m });
            let free = (0..k)
                .filter(|&c| c != y)
                .map(|c| {
                    let inf = (0..d)
                        .map(|j| (w[y * d + j] - w[c * d + j]).abs() as f64)
                        .fold(0.0, f64::max);
                    (z[y] - z[c]) / inf
                })
                .fold(f64::INFINITY, f64::min);
            e > free * (1.0 + 1e-9)
        })
        .count()
}

#[test]
fn fab_l1_finds_the_exact_linear_margin() {
    let (d, k, n) = (20, 5, 16);
    let (m, w, b) = linear(d, k, 3);
    let x = images(n, d, 7919, 13);
    let idx: Vec<usize> = (0..n).collect();
    let (want, labels) = exact(&w, &b, &x, d, k, Norm::L1);
    let binds = box_binds(&w, &b, &x, d, k, &want);
    let goal = Goal {
        labels: &labels,
        targets: None,
    };
    let p = FabParams {
        norm: Norm::L1,
        ..Default::default()
    };
    let t0 = Instant::now();
    let out = MinNormAttack::run(&p, &m, BatchRef::new(&x, &idx), goal).unwrap();
    let took = t0.elapsed();
    let mut worst: f64 = 0.0;
    for (i, r) in out.results.iter().enumerate() {
        assert!(r.success, "sample {i} not broken");
        let got = r.l1 as f64;
        assert!(
            (got - Norm::L1.dist(&out.adv[i * d..(i + 1) * d], &x[i * d..(i + 1) * d]) as f64)
                .abs()
                < 1e-6
        );
        worst = worst.max(got / want[i]);
        assert!(
            got >= want[i] * (1.0 - 1e-4),
            "sample {i}: {got} below the exact {}",
            want[i]
        );
        assert!(
            got <= want[i] * 1.01,
            "sample {i}: {got} more than 1 % above {}",
            want[i]
        );
    }
    eprintln!(
        "FAB L1: worst ratio to the exact margin {worst:.5} (box binds on {binds}/{n}; {took:.2?})"
    );
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
            norm: Norm::L1,
            ..Default::default()
        },
        &m,
        BatchRef::new(&x, &idx),
        goal,
        eps,
    )
    .unwrap();
    let mut hits = 0;
    for (i, r) in bounded.results.iter().enumerate() {
        assert!(r.l1 <= eps * (1.0 + 1e-5), "{} > ε = {eps}", r.l1);
        assert!(bounded.adv[i * d..(i + 1) * d]
            .iter()
            .all(|v| (0.0..=1.0).contains(v)));
        if want[i] < eps as f64 * 0.98 {
            assert!(r.success, "bounded sample {i} not broken");
        }
        if want[i] > eps as f64 * 1.001 {
            assert!(!r.success, "bounded sample {i} broken beyond ε");
        }
        hits += r.success as usize;
    }
    eprintln!("FAB L1 bounded at the median margin ε = {eps:.4}: {hits}/{n} broken");
}

#[test]
fn targeted_fab_l1_finds_the_exact_linear_margin() {
    let (d, k, n) = (20, 5, 16);
    let (m, w, b) = linear(d, k, 11);
    let x = images(n, d, 104729, 17);
    let idx: Vec<usize> = (0..n).collect();
    let (_, labels) = exact(&w, &b, &x, d, k, Norm::L1);
    // Target: the second-closest class (not the untargeted answer). The half-space
    // {z_t ≥ z_y} gives a lower bound on the targeted optimum; it is the optimum when t is the
    // argmax at the half-space solution.
    let mut targets = Vec::new();
    let mut bound = Vec::new();
    let mut tight = Vec::new();
    for (i, xi) in x.chunks(d).enumerate() {
        let y = labels[i];
        let z = logits(&w, &b, xi, k);
        let mut per: Vec<(f64, usize, Vec<f64>)> = (0..k)
            .filter(|&c| c != y)
            .filter_map(|c| {
                let a: Vec<f64> = (0..d)
                    .map(|j| (w[c * d + j] - w[y * d + j]) as f64)
                    .collect();
                l1_halfspace(&a, xi, z[y] - z[c]).map(|(v, dl)| (v, c, dl))
            })
            .collect();
        per.sort_by(|p, q| p.0.total_cmp(&q.0));
        let (v, t, dl) = per[1.min(per.len() - 1)].clone();
        let moved: Vec<f32> = xi
            .iter()
            .zip(&dl)
            .map(|(&a, &e)| (a as f64 + e) as f32)
            .collect();
        let zt = logits(&w, &b, &moved, k);
        tight.push((0..k).all(|c| c == t || c == y || zt[c] < zt[t] - 1e-6));
        targets.push(t);
        bound.push(v);
    }
    let goal = Goal {
        labels: &labels,
        targets: Some(&targets),
    };
    let p = FabParams {
        norm: Norm::L1,
        ..Default::default()
    };
    let out = MinNormAttack::run(&p, &m, BatchRef::new(&x, &idx), goal).unwrap();
    let (mut worst, mut checked): (f64, usize) = (0.0, 0);
    let mut loose_hits = 0;
    for (i, r) in out.results.iter().enumerate() {
        let z = logits(&w, &b, &out.adv[i * d..(i + 1) * d], k);
        let reached = argmax(&z.iter().map(|&v| v as f32).collect::<Vec<_>>()) == targets[i];
        assert_eq!(r.success, reached, "sample {i}");
        let got = r.l1 as f64;
        if r.success {
            assert!(
                got >= bound[i] * (1.0 - 1e-4),
                "sample {i}: {got} below {}",
                bound[i]
            );
        }
        // FAB-T linearises z_t − z_y only, so where another class beats t on the way it may
        // not reach t at all (AutoAttack's FAB-T counts any misclassification as success).
        if !tight[i] {
            loose_hits += r.success as usize;
            continue;
        }
        assert!(r.success, "sample {i} did not reach target {}", targets[i]);
        {
            checked += 1;
            worst = worst.max(got / bound[i]);
            assert!(
                got <= bound[i] * 1.01,
                "sample {i}: {got} more than 1 % above {}",
                bound[i]
            );
        }
    }
    assert!(
        checked >= n / 2,
        "only {checked} samples with a known exact value"
    );
    eprintln!(
        "FAB-L1 targeted: worst ratio to the exact value {worst:.5} on {checked}/{n} samples \
         (the others: {loose_hits}/{} reached)",
        n - checked
    );
}

#[test]
fn pgd_l1_stays_in_the_ball_and_box_and_breaks_the_easy_samples() {
    let (d, k, n) = (64, 5, 24);
    let (m, w, b) = linear(d, k, 7);
    let x = images(n, d, 7907, 29);
    let idx: Vec<usize> = (0..n).collect();
    let (want, labels) = exact(&w, &b, &x, d, k, Norm::L1);
    let goal = Goal {
        labels: &labels,
        targets: None,
    };
    let eps = {
        let mut s = want.clone();
        s.sort_by(f64::total_cmp);
        (2.0 * s[n / 2]) as f32
    };
    for loss in [AttackLoss::Ce, AttackLoss::Margin] {
        for random_start in [false, true] {
            let p = PgdParams {
                norm: Norm::L1,
                steps: 50,
                loss,
                random_start,
                ..Default::default()
            };
            let out = p.run(&m, BatchRef::new(&x, &idx), goal, eps).unwrap();
            let (mut easy, mut easy_hit, mut hits) = (0, 0, 0);
            for (i, r) in out.results.iter().enumerate() {
                assert!(r.l1 <= eps * (1.0 + 1e-5), "{} > ε = {eps}", r.l1);
                assert!(out.adv[i * d..(i + 1) * d]
                    .iter()
                    .all(|v| (0.0..=1.0).contains(v)));
                if want[i] > eps as f64 {
                    assert!(!r.success);
                }
                if want[i] <= eps as f64 / 2.0 {
                    easy += 1;
                    easy_hit += r.success as usize;
                }
                hits += r.success as usize;
            }
            eprintln!(
                "PGD-L1 {loss:?} random start {random_start}, ε = {eps:.3}: margin ≤ ε/2 broken {easy_hit}/{easy}, all {hits}/{n}"
            );
            assert_eq!(easy_hit, easy, "{loss:?}: easy samples left unbroken");
            assert!(easy >= n / 4);
        }
    }
}

#[test]
fn attacks_without_l1_say_so() {
    let (m, _, _) = linear(16, 4, 1);
    let x = vec![0.5f32; 16];
    let goal = Goal {
        labels: &[0],
        targets: None,
    };
    let batch = BatchRef::new(&x, &[0]);
    let eps = 8.0 / 255.0;
    let errs = [
        DeepFoolParams {
            norm: Norm::L1,
            ..Default::default()
        }
        .run(&m, batch, goal)
        .err(),
        ApgdParams {
            norm: Norm::L1,
            ..Default::default()
        }
        .run(&m, batch, goal, eps)
        .err(),
        SquareParams {
            norm: Norm::L1,
            ..Default::default()
        }
        .run(&m, batch, goal, eps)
        .err(),
    ];
    for e in errs {
        let msg = e.expect("L1 must be refused").to_string();
        assert!(msg.contains("does not support L1"), "{msg}");
    }
}

#[test]
fn fab_l1_on_mnist_lenet5_returns_adversarial_points() {
    let n = 10;
    let (m, x, y) = setup(
        "models/mnist/mnist-lenet5-clean.onnx",
        "data/mnist/t10k-images-idx3-ubyte.gz",
        n,
    );
    let per = x.len() / n;
    let k = m.num_classes();
    let idx: Vec<usize> = (0..n).collect();
    let goal = Goal {
        labels: &y,
        targets: None,
    };
    let z0 = m.logits(&x).unwrap();
    let correct: Vec<bool> = (0..n)
        .map(|i| argmax(&z0[i * k..(i + 1) * k]) == y[i])
        .collect();
    let t0 = Instant::now();
    let out = MinNormAttack::run(
        &FabParams {
            norm: Norm::L1,
            // One run from the clean image keeps the test short (5 restarts, the default:
            // median 5.53 over the same 10 images, 81 s on 2 cores).
            restarts: 1,
            ..Default::default()
        },
        &m,
        BatchRef::new(&x, &idx),
        goal,
    )
    .unwrap();
    let took = t0.elapsed();
    let z = m.logits(&out.adv).unwrap();
    let mut norms = Vec::new();
    for (i, r) in out.results.iter().enumerate() {
        let adv_i = &out.adv[i * per..(i + 1) * per];
        assert!(adv_i.iter().all(|v| (0.0..=1.0).contains(v)));
        let recheck = argmax(&z[i * k..(i + 1) * k]) != y[i];
        assert_eq!(r.success, recheck, "sample {i}");
        if correct[i] {
            assert!(r.success, "sample {i}: no L1 adversarial point found");
            norms.push(r.l1);
        }
    }
    norms.sort_by(f32::total_cmp);
    let med = norms[norms.len() / 2];
    let l2: Vec<f32> = out
        .results
        .iter()
        .filter(|r| r.success)
        .map(|r| r.l2)
        .collect();
    eprintln!(
        "FAB-L1 on mnist-lenet5-clean, {} clean-correct of {n}: median L1 {med:.3} (min {:.3}, max {:.3}); \
         L2 of the same points up to {:.3}; {took:.2?}",
        norms.len(),
        norms[0],
        norms[norms.len() - 1],
        l2.iter().fold(0.0f32, |a, &b| a.max(b))
    );
}
