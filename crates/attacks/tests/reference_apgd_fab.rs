//! Fidelity of APGD and FAB against AutoAttack (../shared/reference/attacks, commit a392200).
//!
//! FAB: minimum-norm FAB (restart 0: no random start, deterministic in both implementations)
//! against the reference's restart-0 distances (`_per_restart_dist.npy[:, 0]`); the median
//! ratio over the clean-correct points found by both must lie in [0.95, 1.05]. The ratio to the
//! 5-restart minimum (`_min_dist.npy`) is printed too: it sits above 1 because our run uses one
//! restart. APGD: APGD-CE then APGD-T (9 targets), each on the points still robust, at ε = 0.3
//! on mnist-lenet5-advtrained; robust accuracy after each stage is printed next to AutoAttack's
//! log (91 % after APGD-CE, 90 % after APGD-T, 89 % after Square on the first 100 images) and
//! must not exceed AutoAttack's final robust accuracy on the same images by more than 0.01.
//!
//! Time budget (about 90 s for the crate's new tests on 2 cores): our engine needs about 0.9 s
//! per LeNet-5 image for one 100-iteration FAB run (10 Jacobian rows per iteration), so the
//! default tests use the first 8 images per model and norm for FAB (plus 5 restarts on 20
//! images of the fastest model), and for APGD the 13 images described at its test.
//! The full-size versions (100 images; ~9 min for FAB, ~2 min for APGD) are the `#[ignore]`d
//! `*_full` tests: `cargo test --release -p faultline-attacks --test reference_apgd_fab --
//! --ignored`. ResNet-20 (20 CIFAR images, ~95 s) does not fit the budget: its test is
//! ignored too.

mod common;

use common::{npy, setup};

use std::time::Instant;

use faultline_attacks::{
    ApgdParams, BatchRef, BoundedAttack, FabParams, Goal, MinNormAttack, Norm,
};

const MNIST: &str = "data/mnist/t10k-images-idx3-ubyte.gz";

/// Runs FAB (restart 0) on the first `n` images; returns the median ratios to the reference's
/// restart-0 and 5-restart distances.
fn fab_case(model: &str, norm: Norm, n: usize) -> (f64, f64) {
    fab_restarts(model, norm, n, 1)
}

/// Runs FAB with `restarts` runs on the first `n` images; returns the median ratios to the
/// reference's minimum over its first `restarts` runs and over all 5.
fn fab_restarts(model: &str, norm: Norm, n: usize, restarts: usize) -> (f64, f64) {
    let (m, x, y) = if model.starts_with("cifar10") {
        setup(
            &format!("models/cifar10/{model}.onnx"),
            "data/cifar10/test_batch_first100.bin",
            n,
        )
    } else {
        setup(&format!("models/mnist/{model}.onnx"), MNIST, n)
    };
    let idx: Vec<usize> = (0..n).collect();
    let tag = if norm == Norm::L2 { "L2" } else { "Linf" };
    let t = Instant::now();
    let p = FabParams {
        norm,
        restarts,
        ..Default::default()
    };
    let goal = Goal {
        labels: &y,
        targets: None,
    };
    let out = MinNormAttack::run(&p, &m, BatchRef::new(&x, &idx), goal).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let per_restart: Vec<f64> = npy(&format!("{model}_fab_{tag}_per_restart_dist.npy"));
    let min_dist: Vec<f64> = npy(&format!("{model}_fab_{tag}_min_dist.npy"));
    let clean: Vec<bool> = npy(&format!("{model}_fab_{tag}_clean_correct.npy"));
    let r = per_restart.len() / min_dist.len();
    let got = |i: usize| {
        let s = &out.results[i];
        f64::from(if norm == Norm::L2 { s.l2 } else { s.linf })
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let theirs = |i: usize| {
        per_restart[i * r..i * r + restarts]
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
    };
    let both: Vec<usize> = (0..n)
        .filter(|&i| clean[i] && out.results[i].success && theirs(i).is_finite())
        .collect();
    let found = (0..n)
        .filter(|&i| clean[i] && out.results[i].success)
        .count();
    let want_found = (0..n)
        .filter(|&i| clean[i] && theirs(i).is_finite())
        .count();
    let r0 = median(both.iter().map(|&i| got(i) / theirs(i)).collect());
    let rmin = median(both.iter().map(|&i| got(i) / min_dist[i]).collect());
    eprintln!(
        "FAB {model} {tag} (n = {n}, {restarts} restart(s), {secs:.1} s): found {found} \
         (AutoAttack, same restarts: {want_found}); median ratio to AutoAttack with the same \
         restarts {r0:.4}, to its 5-restart minimum {rmin:.4}"
    );
    assert!(
        found + 1 >= want_found,
        "{model} {tag}: found {found} < {want_found}"
    );
    (r0, rmin)
}

/// APGD-CE then APGD-T on the images `pick` (positions among the first 100); returns the
/// images still robust after APGD-CE and after APGD-T.
fn apgd_stages(pick: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let (m, x100, y100) = setup("models/mnist/mnist-lenet5-advtrained.onnx", MNIST, 100);
    let per = x100.len() / 100;
    let x: Vec<f32> = pick
        .iter()
        .flat_map(|&i| x100[i * per..(i + 1) * per].iter().copied())
        .collect();
    let y: Vec<usize> = pick.iter().map(|&i| y100[i]).collect();
    let n = pick.len();
    let t = Instant::now();
    let ce = ApgdParams::autoattack_ce(Norm::Linf)
        .run(
            &m,
            BatchRef::new(&x, pick),
            Goal {
                labels: &y,
                targets: None,
            },
            0.3,
        )
        .unwrap();
    for r in &ce.results {
        assert!(r.linf <= 0.3 + 1e-6);
    }
    let robust: Vec<usize> = (0..n).filter(|&j| !ce.results[j].success).collect();
    let t_ce = t.elapsed().as_secs_f64();
    let xr: Vec<f32> = robust
        .iter()
        .flat_map(|&j| x[j * per..(j + 1) * per].iter().copied())
        .collect();
    let yr: Vec<usize> = robust.iter().map(|&j| y[j]).collect();
    let ir: Vec<usize> = robust.iter().map(|&j| pick[j]).collect();
    let after_t: Vec<usize> = if robust.is_empty() {
        vec![]
    } else {
        let tt = ApgdParams::autoattack_t(Norm::Linf)
            .run(
                &m,
                BatchRef::new(&xr, &ir),
                Goal {
                    labels: &yr,
                    targets: None,
                },
                0.3,
            )
            .unwrap();
        for r in &tt.results {
            assert!(r.linf <= 0.3 + 1e-6);
        }
        (0..ir.len())
            .filter(|&j| !tt.results[j].success)
            .map(|j| ir[j])
            .collect()
    };
    let aa: Vec<bool> = npy("mnist-lenet5-advtrained_autoattack_Linf_eps0.3_robust.npy");
    let aa_robust = pick.iter().filter(|&&i| aa[i]).count();
    eprintln!(
        "APGD on mnist-lenet5-advtrained, eps 0.3, {n} images ({t_ce:.1} s + {:.1} s): \
         robust after APGD-CE {}/{n}, after APGD-T {}/{n}; AutoAttack final (after Square) \
         {aa_robust}/{n} (its log on the first 100 images: 91 after APGD-CE, 90 after APGD-T, \
         90 after FAB-T, 89 after Square)",
        t.elapsed().as_secs_f64() - t_ce,
        ir.len(),
        after_t.len(),
    );
    let ours_not_aa: Vec<usize> = pick
        .iter()
        .copied()
        .filter(|i| !after_t.contains(i) && aa[*i])
        .collect();
    let aa_not_ours: Vec<usize> = after_t.iter().copied().filter(|&i| !aa[i]).collect();
    eprintln!("broken by us only: {ours_not_aa:?}; broken by AutoAttack only: {aa_not_ours:?}");
    (ir, after_t)
}

fn check_fab(n: usize) {
    for model in [
        "mnist-lenet5-clean",
        "mnist-lenet5-advtrained",
        "mnist-convexadv-robust",
    ] {
        for norm in [Norm::L2, Norm::Linf] {
            let (r0, _) = fab_case(model, norm, n);
            assert!(
                (0.95..=1.05).contains(&r0),
                "{model} {norm:?}: median ratio {r0}"
            );
        }
    }
}

#[test]
fn fab_min_norms_match_autoattack_on_mnist() {
    check_fab(8);
}

#[test]
fn fab_restarts_match_autoattack_minimum_on_convexadv() {
    // Random restarts 1–4 draw from our per-sample streams, not torch's, so only the
    // distribution can agree: the median ratio of the 5-restart minima on the first 20 images
    // of the fastest model (about 0.1 s per image and restart).
    for norm in [Norm::L2, Norm::Linf] {
        // FAB_RESTARTS_N (default 20) widens the check, up to the reference's 100 images.
        let n = std::env::var("FAB_RESTARTS_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let (r, _) = fab_restarts("mnist-convexadv-robust", norm, n, 5);
        assert!((0.95..=1.05).contains(&r), "{norm:?}: median ratio {r}");
    }
}

#[test]
#[ignore = "full reference size (100 images per model and norm): about 9 minutes"]
fn fab_min_norms_match_autoattack_on_mnist_full() {
    check_fab(100);
}

#[test]
fn apgd_matches_autoattack_stages_on_advtrained_lenet5() {
    // Fast subset: the 11 of the first 100 images that AutoAttack broke (10 by its APGD stages,
    // 1 by Square: 100 → 91 → 90 → 90 → 89) plus the first 2 it did not (robust points cost
    // the full 9 × 100 APGD-T iterations). APGD-CE + APGD-T must leave at most 3 robust: the 2,
    // plus the one AutoAttack needed Square for.
    let aa: Vec<bool> = npy("mnist-lenet5-advtrained_autoattack_Linf_eps0.3_robust.npy");
    let mut pick: Vec<usize> = (0..100).filter(|&i| !aa[i]).collect();
    assert_eq!(pick.len(), 11);
    pick.extend((0..100).filter(|&i| aa[i]).take(2));
    let (ce, t) = apgd_stages(&pick);
    assert!(t.len() <= ce.len());
    assert!(
        t.len() <= 2 + 1,
        "robust {}/13 after APGD-T; AutoAttack: 2 after Square, at most 3 after APGD-T",
        t.len()
    );
}

#[test]
#[ignore = "beyond the time budget: about 95 s for the 20 ResNet-20 images and both norms \
            (FAB_RESNET_N to change)"]
fn fab_min_norms_match_autoattack_on_resnet20() {
    let n = std::env::var("FAB_RESNET_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    for norm in [Norm::L2, Norm::Linf] {
        let (r0, _) = fab_case("cifar10-resnet20", norm, n);
        assert!(
            (0.95..=1.05).contains(&r0),
            "resnet20 {norm:?}: median ratio {r0}"
        );
    }
}

#[test]
#[ignore = "full reference size (100 images): about 2 minutes"]
fn apgd_matches_autoattack_stages_on_advtrained_lenet5_full() {
    let (ce, t) = apgd_stages(&(0..100).collect::<Vec<_>>());
    assert!(t.len() <= ce.len());
    // AutoAttack: 90 robust after APGD-T, 89 after Square; the target is ≤ 0.89 + 0.01.
    assert!(t.len() <= 90, "robust {}/100 after APGD-T", t.len());
}
