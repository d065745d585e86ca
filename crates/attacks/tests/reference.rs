//! Fidelity against torchattacks 3.5.1 (../shared/reference/attacks): FGSM and PGD without
//! random start are deterministic, so per-sample success must agree on at least 98 % of the
//! samples of each model's configurations taken together (and 95 % in every single one);
//! DeepFool's minimal L2 norms must have a median ratio to the reference in [0.95, 1.05]
//! (refinement off, to mirror torchattacks).
//!
//! One exception, a finding about the peer: torchattacks' FGSM on ResNet-20 breaks 52/67/78/82
//! images at ε = 1/2/4/8 (of 255), while the sign step of the float64 PyTorch gradient stored in
//! ../shared/reference/engine breaks 56/77/86/90 (evaluated with ONNX Runtime as well as here).
//! Our FGSM equals that float64 sign step exactly, so it is checked against it instead; PGD,
//! whose first step is the same computation, agrees with torchattacks on 99–100 % of samples.

mod common;

use common::{npy, setup, shared};

use faultline_attacks::{
    BatchRef, BoundedAttack, DeepFoolParams, Goal, MinNormAttack, Norm, PgdParams,
};
use faultline_engine::Model;

/// Per-sample success of `p` at radius `eps`, and the number of samples agreeing with
/// torchattacks.
fn agreement(
    m: &Model,
    x: &[f32],
    y: &[usize],
    p: &PgdParams,
    eps: f32,
    key: &str,
    prefix: &str,
) -> (usize, usize) {
    let (agree, n, _) = run_and_compare(m, x, y, p, eps, key, prefix);
    assert!(
        agree as f64 >= 0.95 * n as f64,
        "{prefix} {key}: {agree}/{n}"
    );
    (agree, n)
}

fn run_and_compare(
    m: &Model,
    x: &[f32],
    y: &[usize],
    p: &PgdParams,
    eps: f32,
    key: &str,
    prefix: &str,
) -> (usize, usize, Vec<f32>) {
    let idx: Vec<usize> = (0..y.len()).collect();
    let mut got = Vec::new();
    let mut adv = Vec::new();
    for c in (0..y.len()).step_by(250) {
        let e = (c + 250).min(y.len());
        let per = x.len() / y.len();
        let out = p
            .run(
                m,
                BatchRef::new(&x[c * per..e * per], &idx[c..e]),
                Goal {
                    labels: &y[c..e],
                    targets: None,
                },
                eps,
            )
            .unwrap();
        for r in &out.results {
            assert!(if p.norm == Norm::Linf { r.linf } else { r.l2 } <= eps * (1.0 + 1e-5) + 1e-7);
        }
        got.extend(out.results.iter().map(|r| r.success));
        adv.extend(out.adv);
    }
    let want: Vec<bool> = npy(&format!("{prefix}_torchattacks_{key}_success.npy"));
    let agree = got.iter().zip(&want).filter(|(a, b)| a == b).count();
    let (ours, theirs) = (
        got.iter().filter(|&&s| s).count(),
        want[..got.len()].iter().filter(|&&s| s).count(),
    );
    eprintln!(
        "{prefix} {key}: agreement {agree}/{}, successes ours {ours} / torchattacks {theirs}",
        got.len()
    );
    (agree, got.len(), adv)
}

fn check_total(results: &[(usize, usize)], what: &str) {
    let (a, n) = results.iter().fold((0, 0), |(a, n), (x, y)| (a + x, n + y));
    eprintln!("{what}: {a}/{n} per-sample agreement");
    assert!(a as f64 >= 0.98 * n as f64, "{what}: {a}/{n}");
}

#[test]
fn fgsm_and_pgd_agree_with_torchattacks_on_resnet20() {
    let (m, x, y) = setup(
        "models/cifar10/cifar10-resnet20.onnx",
        "data/cifar10/test_batch_first100.bin",
        100,
    );
    let mut all = Vec::new();
    let bytes = std::fs::read(shared(
        "reference/engine/cifar10-resnet20_grad_ce_sum_f64.npy",
    ))
    .unwrap();
    let g: Vec<f64> = npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap();
    for e in [1, 2, 4, 8] {
        let eps = e as f32 / 255.0;
        // FGSM: exactly the sign step of the float64 reference gradient (see the module docs).
        let (_, _, adv) = run_and_compare(
            &m,
            &x,
            &y,
            &PgdParams::fgsm(Norm::Linf),
            eps,
            &format!("FGSM_eps{e}_255"),
            "cifar10-resnet20",
        );
        let want: Vec<f32> = x
            .iter()
            .zip(&g)
            .map(|(&v, &d)| (v + d.signum() as f32 * eps).clamp(0.0, 1.0))
            .collect();
        // Pixel steps agree except on very confident samples, whose gradients are so small that
        // float32 rounding decides their signs; success is compared through the same model.
        let same = adv
            .iter()
            .zip(&want)
            .filter(|(a, b)| (*a - *b).abs() <= 1e-6)
            .count();
        let z = m.logits(&want).unwrap();
        let k = m.num_classes();
        let f64_success: Vec<bool> = (0..100)
            .map(|i| faultline_attacks::attack::argmax(&z[i * k..(i + 1) * k]) != y[i])
            .collect();
        let z2 = m.logits(&adv).unwrap();
        let our_success: Vec<bool> = (0..100)
            .map(|i| faultline_attacks::attack::argmax(&z2[i * k..(i + 1) * k]) != y[i])
            .collect();
        let agree = f64_success
            .iter()
            .zip(&our_success)
            .filter(|(a, b)| a == b)
            .count();
        eprintln!("FGSM {e}/255: {same}/{} pixel values as the float64 sign step, success agreement {agree}/100", adv.len());
        assert!(same as f64 >= 0.99 * adv.len() as f64 && agree >= 99);
        let p = PgdParams {
            steps: 20,
            rel_step: 0.25,
            early_stop: false,
            ..Default::default()
        };
        all.push(agreement(
            &m,
            &x,
            &y,
            &p,
            eps,
            &format!("PGD_eps{e}_255"),
            "cifar10-resnet20",
        ));
    }
    for (eps, key) in [(0.25f32, "PGDL2_eps0.25"), (0.5, "PGDL2_eps0.5")] {
        let p = PgdParams {
            norm: Norm::L2,
            steps: 20,
            rel_step: 0.25,
            early_stop: false,
            ..Default::default()
        };
        all.push(agreement(&m, &x, &y, &p, eps, key, "cifar10-resnet20"));
    }
    check_total(&all, "cifar10-resnet20 PGD");
}

#[test]
fn fgsm_and_pgd_agree_with_torchattacks_on_advtrained_lenet5() {
    // The first 500 of the 1,000 reference images keep the test under a minute on 2 cores.
    let (m, x, y) = setup(
        "models/mnist/mnist-lenet5-advtrained.onnx",
        "data/mnist/t10k-images-idx3-ubyte.gz",
        500,
    );
    let mut all = Vec::new();
    for (eps, tag) in [(0.1f32, "0.1"), (0.2, "0.2"), (0.3, "0.3")] {
        let f = PgdParams::fgsm(Norm::Linf);
        all.push(agreement(
            &m,
            &x,
            &y,
            &f,
            eps,
            &format!("FGSM_eps{tag}"),
            "mnist-lenet5-advtrained",
        ));
        let p = PgdParams {
            steps: 20,
            rel_step: 0.25,
            early_stop: false,
            ..Default::default()
        };
        all.push(agreement(
            &m,
            &x,
            &y,
            &p,
            eps,
            &format!("PGD_eps{tag}"),
            "mnist-lenet5-advtrained",
        ));
    }
    for (eps, key) in [(1.0f32, "PGDL2_eps1"), (2.0, "PGDL2_eps2")] {
        let p = PgdParams {
            norm: Norm::L2,
            steps: 20,
            rel_step: 0.25,
            early_stop: false,
            ..Default::default()
        };
        all.push(agreement(
            &m,
            &x,
            &y,
            &p,
            eps,
            key,
            "mnist-lenet5-advtrained",
        ));
    }
    check_total(&all, "mnist-lenet5-advtrained");
}

#[test]
fn deepfool_norms_match_torchattacks_on_resnet20() {
    let (m, x, y) = setup(
        "models/cifar10/cifar10-resnet20.onnx",
        "data/cifar10/test_batch_first100.bin",
        100,
    );
    let idx: Vec<usize> = (0..y.len()).collect();
    let out = DeepFoolParams {
        refine_steps: 0,
        ..Default::default()
    }
    .run(
        &m,
        BatchRef::new(&x, &idx),
        Goal {
            labels: &y,
            targets: None,
        },
    )
    .unwrap();
    let want_l2: Vec<f64> = npy("cifar10-resnet20_torchattacks_DeepFool_pert_l2.npy");
    let want_ok: Vec<bool> = npy("cifar10-resnet20_torchattacks_DeepFool_success.npy");
    let clean: Vec<bool> = npy("cifar10-resnet20_torchattacks_clean_correct.npy");
    let mut ratios: Vec<f64> = (0..100)
        .filter(|&i| clean[i] && want_ok[i] && out.results[i].success && want_l2[i] > 0.0)
        .map(|i| out.results[i].l2 as f64 / want_l2[i])
        .collect();
    ratios.sort_by(f64::total_cmp);
    let med = ratios[ratios.len() / 2];
    // torchattacks' DeepFool often stops a hair past the boundary, where a re-check can fall
    // back on the label; ours extends such perturbations until the verdict is decisive (see
    // deepfool.rs), so it breaks every sample torchattacks breaks and a few more.
    let missed = (0..100)
        .filter(|&i| want_ok[i] && !out.results[i].success)
        .count();
    let extra = (0..100)
        .filter(|&i| !want_ok[i] && out.results[i].success)
        .count();
    eprintln!("DeepFool: {} comparable samples, median L2 ratio {med:.4}; torchattacks successes we miss: {missed}, extra successes: {extra}", ratios.len());
    assert!((0.95..=1.05).contains(&med), "median ratio {med}");
    assert!(
        missed <= 2,
        "{missed} samples broken by torchattacks but not by us"
    );
    // With refinement the norms only shrink, and every reported success is still re-checked.
    let refined = DeepFoolParams::default()
        .run(
            &m,
            BatchRef::new(&x, &idx),
            Goal {
                labels: &y,
                targets: None,
            },
        )
        .unwrap();
    for (a, b) in refined.results.iter().zip(&out.results) {
        assert_eq!(a.success, b.success);
        assert!(a.l2 <= b.l2 * (1.0 + 1e-5));
    }
}
