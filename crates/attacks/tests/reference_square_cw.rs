//! Smoke checks of Square and C&W on the CIFAR-10 ResNet-20 (../shared): Square L∞ at 8/255 with
//! a short query budget must break most of the correctly classified images, and C&W-L2's
//! minimal norms must be of the order of FAB's (AutoAttack's `FABAttack_PT`, 5 restarts, the
//! reference outputs in ../shared/reference/attacks).

mod common;

use std::time::Instant;

use common::{npy, setup};

use faultline_attacks::{
    BatchRef, BoundedAttack, CwParams, Goal, MinNormAttack, Norm, SquareParams,
};

#[test]
fn square_linf_breaks_resnet20() {
    let n = 20;
    let (m, x, y) = setup(
        "models/cifar10/cifar10-resnet20.onnx",
        "data/cifar10/test_batch_first100.bin",
        n,
    );
    let idx: Vec<usize> = (0..n).collect();
    let goal = Goal {
        labels: &y,
        targets: None,
    };
    let eps = 8.0 / 255.0;
    let p = SquareParams {
        norm: Norm::Linf,
        queries: 300,
        ..Default::default()
    };
    let t0 = Instant::now();
    let out = p.run(&m, BatchRef::new(&x, &idx), goal, eps).unwrap();
    let took = t0.elapsed();
    // The first 20 images are all classified correctly (the FAB reference's clean accuracy).
    let clean = out.results.iter().filter(|r| r.forward == 2).count();
    let robust = out.results.iter().filter(|r| !r.success).count();
    let mut q: Vec<u32> = out
        .results
        .iter()
        .filter(|r| r.success && r.forward > 2)
        .map(|r| r.forward - 3)
        .collect();
    q.sort();
    for r in &out.results {
        assert!(r.linf <= eps * (1.0 + 1e-5) + 1e-7);
        assert_eq!(r.backward, 0);
    }
    assert!(out.adv.iter().all(|v| (0.0..=1.0).contains(v)));
    eprintln!(
        "Square L∞ 8/255, 300 queries: {clean} clean-misclassified, robust {robust}/{n}, median queries to success {} ({took:.2?})",
        q[q.len() / 2]
    );
    assert_eq!(clean, 0);
    // Measured: robust 1/20, median 38 queries.
    assert!(
        robust <= 4,
        "robust accuracy {robust}/{n} after 300 queries"
    );
}

#[test]
fn cw_norms_match_fab_on_resnet20() {
    let n = 10;
    let (m, x, y) = setup(
        "models/cifar10/cifar10-resnet20.onnx",
        "data/cifar10/test_batch_first100.bin",
        n,
    );
    let idx: Vec<usize> = (0..n).collect();
    let goal = Goal {
        labels: &y,
        targets: None,
    };
    let fab: Vec<f64> = npy("cifar10-resnet20_fab_L2_min_dist.npy");
    let t0 = Instant::now();
    let out = CwParams::default()
        .run(&m, BatchRef::new(&x, &idx), goal)
        .unwrap();
    let took = t0.elapsed();
    let ok = out.results.iter().filter(|r| r.success).count();
    let ratios: Vec<f64> = (0..n).map(|i| out.results[i].l2 as f64 / fab[i]).collect();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        0.5 * (v[(v.len() - 1) / 2] + v[v.len() / 2])
    };
    let ours: Vec<f64> = out.results.iter().map(|r| r.l2 as f64).collect();
    let (mo, mf) = (median(&ours), median(&fab[..n]));
    let passes: u32 = out.results.iter().map(|r| r.forward).sum();
    eprintln!(
        "C&W-L2 (defaults) on {n} images: {ok}/{n} broken, median L2 {mo:.4} vs FAB {mf:.4} (ratio {:.3}); per-sample ratios {:.3?}; {passes} forward passes ({took:.2?})",
        mo / mf,
        ratios
    );
    assert_eq!(ok, n);
    assert!((0.9..=1.3).contains(&(mo / mf)), "median ratio {}", mo / mf);
    assert!(ratios.iter().all(|r| (0.9..=1.5).contains(r)), "{ratios:?}");
}
