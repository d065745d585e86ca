//! Margin consistency on a linear classifier whose weight-row differences all have the same
//! norm: the input margin is the logit margin divided by that norm, so a minimum-norm attack
//! that finds the exact margins gives Kendall τ = 1 and perfect detection.

use faultline::attacks::{Attack, BatchRef, DeepFoolParams, FabParams, Method, Norm};
use faultline::engine::ops::{Flatten, Gemm};
use faultline::engine::{GraphBuilder, Model, Tensor};
use faultline::margin::measure::{choose_subset, measure_batch, rows};
use faultline::margin::report::{report, ReportParams};
use faultline::margin::scores::RowGaps;

const D: usize = 12;
const K: usize = 4;
const C: f32 = 2.0;

/// `z_k = C·x_k + b_k` for k < K: rows `C·e_k`, so `‖w_i − w_j‖₂ = C√2` and `‖w_i − w_j‖₁ = 2C`
/// for every pair.
fn model() -> Model {
    let mut w = vec![0.0f32; K * D];
    for k in 0..K {
        w[k * D + k] = C;
    }
    linear_model(w, vec![0.0; K], D)
}

/// `z = W·x + b` on images of `d` values (W is k × d, row-major).
fn linear_model(w: Vec<f32>, b: Vec<f32>, d: usize) -> Model {
    let k = b.len();
    let mut g = GraphBuilder::new();
    g.input("x");
    g.constant("w", Tensor::from_f32(vec![k, d], w).unwrap());
    g.constant("b", Tensor::from_f32(vec![k], b).unwrap());
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
    m
}

/// Images inside (0.3, 0.7) whose top-two logits are well separated from sample to sample.
fn images(n: usize) -> Vec<f32> {
    let mut x = vec![0.5f32; n * D];
    for i in 0..n {
        let top = i % K;
        let second = (i + 1) % K;
        // Logit margin grows with i in steps of ≥ 2 % of its size.
        let gap = 0.05 + 0.01 * i as f32;
        for k in 0..K {
            x[i * D + k] = 0.45 - 0.01 * k as f32;
        }
        x[i * D + second] = 0.5;
        x[i * D + top] = 0.5 + gap / C;
        for j in K..D {
            x[i * D + j] = 0.3 + 0.02 * ((i + j) % 20) as f32;
        }
    }
    x
}

fn exact(m: &Model, x: &[f32], norm: Norm) -> Vec<f64> {
    let z = m.logits(x).unwrap();
    let gap = match norm {
        Norm::L2 => C as f64 * 2f64.sqrt(),
        Norm::Linf => 2.0 * C as f64,
        Norm::L1 => C as f64,
    };
    z.chunks(K)
        .map(|r| {
            let mut s: Vec<f64> = r.iter().map(|&v| v as f64).collect();
            s.sort_by(|a, b| b.total_cmp(a));
            (s[0] - s[1]) / gap
        })
        .collect()
}

/// A minimum-norm attack under its registry name.
fn min_norm(name: &str, a: impl faultline::attacks::MinNormAttack + 'static) -> Attack {
    Attack {
        name: name.into(),
        method: Method::MinNorm(Box::new(a)),
    }
}

fn check(norm: Norm, attack: Attack) {
    let m = model();
    let n = 40;
    let x = images(n);
    let idx: Vec<usize> = (0..n).collect();
    let labels: Vec<usize> = (0..n).map(|i| i % K).collect();
    let head = m.head().expect("a linear model has a head");
    let gaps = RowGaps::new(&head, norm);
    let (lo, hi) = gaps.range();
    assert!((hi - lo).abs() < 1e-9, "equidistant rows: {lo} .. {hi}");
    let recs = measure_batch(
        &m,
        BatchRef::new(&x, &idx),
        &labels,
        &attack,
        &vec![true; n],
        Some(&gaps),
        true,
    )
    .unwrap();
    let recs = rows(&recs);
    let want = exact(&m, &x, norm);
    for (r, w) in recs.iter().zip(&want) {
        assert_eq!(r.prediction, r.label);
        let d = r
            .input_margin
            .expect("a margin is always found on a linear model") as f64;
        // Never below the exact margin (up to float rounding), within 1 % above it.
        assert!(d >= w * (1.0 - 1e-4), "sample {}: {d} < exact {w}", r.index);
        assert!(d <= w * 1.01, "sample {}: {d} vs exact {w}", r.index);
        let fm = r.scores.feature_margin.unwrap() as f64;
        assert!(
            (fm - w).abs() <= 1e-5 * w.max(1e-3),
            "feature margin {fm} vs {w}"
        );
        assert_eq!(r.features.map(|f| f.len()), Some(D));
    }
    let eps = (0.5 * (want[n / 2] + want[n / 2 + 1])) as f32;
    let rep = report(
        &recs,
        &ReportParams {
            norm,
            eps,
            bootstrap: 50,
            ..ReportParams::default()
        },
        Some(gaps.range()),
    );
    let lm = rep.score("logit_margin").unwrap();
    assert_eq!(lm.kendall_tau.as_ref().unwrap().value, 1.0, "{norm:?}");
    assert_eq!(lm.detection.auroc, Some(1.0));
    assert_eq!(lm.detection.fpr_at_95_tpr, Some(0.0));
    let fm = rep.score("feature_margin").unwrap();
    assert_eq!(fm.kendall_tau.as_ref().unwrap().value, 1.0);
    assert_eq!(rep.found, n);
    // The robust accuracy the margins imply equals the exact count.
    let exact_robust = want.iter().filter(|&&w| w > eps as f64).count() as f64 / n as f64;
    assert_eq!(rep.robust_accuracy, Some(exact_robust));
}

#[test]
fn fab_linf_margins_are_exact_and_consistent() {
    check(
        Norm::Linf,
        min_norm(
            "fab",
            FabParams {
                norm: Norm::Linf,
                restarts: 1,
                steps: 20,
                refine_steps: 12,
                ..FabParams::default()
            },
        ),
    );
}

#[test]
fn fab_l2_margins_are_exact_and_consistent() {
    check(
        Norm::L2,
        min_norm(
            "fab",
            FabParams {
                norm: Norm::L2,
                restarts: 1,
                steps: 20,
                refine_steps: 12,
                ..FabParams::default()
            },
        ),
    );
}

#[test]
fn deepfool_l2_margins_are_exact_and_consistent() {
    check(Norm::L2, min_norm("deepfool", DeepFoolParams::default()));
}

#[test]
fn subsets_are_seeded_and_sized() {
    let a = choose_subset(1000, Some(100), 3);
    assert_eq!(a.iter().filter(|&&b| b).count(), 100);
    assert_eq!(a, choose_subset(1000, Some(100), 3));
    assert_ne!(a, choose_subset(1000, Some(100), 4));
    assert!(choose_subset(10, Some(20), 0).iter().all(|&b| b));
    assert!(choose_subset(10, None, 0).iter().all(|&b| b));
}

/// The final affine layer read from real ONNX files reproduces their logits from their
/// penultimate features (`z = W·h + b`), so feature-space margins use the right rows.
#[test]
fn heads_of_shared_models_reproduce_their_logits() {
    use faultline::data::{self, LoadOptions};
    use faultline::model::load_model;
    let shared = |rel: &str| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared")
            .join(rel)
    };
    for (model, data) in [
        ("models/mnist/mnist-lenet5-clean.onnx", "data/mnist"),
        ("models/mnist/mnist-convexadv-robust.onnx", "data/mnist"),
        (
            "models/cifar10/cifar10-resnet20.onnx",
            "data/cifar10/test_batch_first100.bin",
        ),
        (
            "models/cifar10/resnet20-dynamo/cifar10-resnet20-dynamo.onnx",
            "data/cifar10/test_batch_first100.bin",
        ),
    ] {
        let path = shared(model);
        if !path.exists() {
            panic!("{model} is missing");
        }
        let ds = data::open(&shared(data), &LoadOptions::default()).unwrap();
        let i = ds.info().clone();
        let m = load_model(&path, [i.channels, i.height, i.width], None).unwrap();
        let b = ds.batches(8, 0..8).unwrap().next().unwrap().unwrap();
        let (z, f) = m.model.features(&b.images, &["penultimate"]).unwrap();
        let h = f[0].clone().into_f32().unwrap();
        let head = m.model.head().unwrap_or_else(|| panic!("{model}: no head"));
        let (k, d) = (head.classes, head.dim);
        assert_eq!(h.len(), 8 * d, "{model}");
        let zmax = z.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        for n in 0..8 {
            for c in 0..k {
                let want: f32 = head.bias[c]
                    + (0..d)
                        .map(|j| head.weight[c * d + j] * h[n * d + j])
                        .sum::<f32>();
                let got = z[n * k + c];
                assert!(
                    (want - got).abs() <= 1e-4 * zmax,
                    "{model}: {want} vs {got}"
                );
            }
        }
    }
}

/// A linear classifier whose weight-row differences have very different norms is weakly margin
/// consistent: its input margin is `min_j (z_i − z_j)/‖w_i − w_j‖₂`, which the logit margin
/// alone cannot rank. A pseudo-margin learned from the logits (which reveal which pair of
/// classes is involved) must rank held-out samples better than the logit margin does.
#[test]
fn pseudo_margin_raises_tau_on_a_weakly_consistent_linear_model() {
    use faultline::margin::pseudo::{
        judge, pseudo_margin, PseudoInput, PseudoMargin, PseudoParams,
    };
    let (d, k) = (16usize, 4usize);
    // Rows of norms 1, 4, 16 and 64 along pseudo-random directions, centred on the middle of the
    // box (b = −W·0.5) so every class wins somewhere.
    let mut s = 11u64;
    let mut r = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / 16777216.0) - 0.5
    };
    let mut w = vec![0.0f32; k * d];
    for c in 0..k {
        let row: Vec<f32> = (0..d).map(|_| r()).collect();
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        let scale = 4f32.powi(c as i32);
        for j in 0..d {
            w[c * d + j] = scale * row[j] / n;
        }
    }
    let b: Vec<f32> = (0..k)
        .map(|c| -0.5 * w[c * d..(c + 1) * d].iter().sum::<f32>())
        .collect();
    let m = linear_model(w, b, d);
    // Points in the middle of the box (within ±0.2), where the box never binds at these margins.
    let n = 600;
    let x: Vec<f32> = (0..n * d).map(|_| 0.5 + 0.4 * r()).collect();
    let z = m.logits(&x).unwrap();
    let labels: Vec<usize> = z
        .chunks(k)
        .map(|row| (0..k).fold(0, |b, c| if row[c] > row[b] { c } else { b }))
        .collect();
    let idx: Vec<usize> = (0..n).collect();
    let recs = measure_batch(
        &m,
        BatchRef::new(&x, &idx),
        &labels,
        &min_norm("deepfool", DeepFoolParams::default()),
        &vec![true; n],
        None,
        false,
    )
    .unwrap();
    let recs = rows(&recs);
    assert!(recs.iter().all(|r| r.input_margin.is_some()));
    let rp = ReportParams {
        norm: Norm::L2,
        eps: {
            let mut v: Vec<f32> = recs.iter().map(|r| r.input_margin.unwrap()).collect();
            v.sort_by(f32::total_cmp);
            v[n / 2]
        },
        bootstrap: 20,
        ..ReportParams::default()
    };
    let p = PseudoParams {
        input: PseudoInput::Logits,
        epochs: 400,
        lr: 3e-3,
        width: 64,
        ..PseudoParams::default()
    };
    let (rep, pm) = pseudo_margin(&recs, &p, &rp).unwrap();
    let before = rep.before.kendall_tau.as_ref().unwrap().value;
    let after = rep.after.kendall_tau.as_ref().unwrap().value;
    eprintln!(
        "weakly consistent linear model, held-out τ: logit margin {before:.3} → pseudo-margin {after:.3}; AUROC {:.3} → {:.3}",
        rep.before.detection.auroc.unwrap(),
        rep.after.detection.auroc.unwrap()
    );
    assert!(
        before < 0.7,
        "the model should be weakly consistent: τ = {before}"
    );
    assert!(after > before + 0.1, "τ {before} → {after}");
    assert_eq!(rep.fit_samples + rep.eval_samples, n);
    // The threshold was chosen on the fit part for 95 % recall of the non-robust samples.
    assert!(rep.flag_below.is_some());
    // Same seed, same network.
    let (again, pm2) = pseudo_margin(&recs, &p, &rp).unwrap();
    assert_eq!(again.after, rep.after);
    assert!(
        pm.net.parameters() == pm2.net.parameters(),
        "weights differ between runs"
    );
    // Save → load gives the same network, standardisation, threshold and scores.
    let dir = std::env::temp_dir().join(format!("faultline-pseudo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    pm.save(&dir).unwrap();
    let back = PseudoMargin::load(&dir).unwrap();
    assert_eq!(back.meta, pm.meta);
    let all: Vec<_> = recs.iter().collect();
    assert_eq!(back.scores(&all).unwrap(), pm.scores(&all).unwrap());
    let judged = judge(&back, "loaded", None, &all, &p, &rp).unwrap();
    assert_eq!(judged.eval_samples, n);
    // Missing files are a clear error, not a panic.
    std::fs::remove_file(dir.join("pseudo_margin.json")).unwrap();
    let e = PseudoMargin::load(&dir).unwrap_err().to_string();
    assert!(e.contains("pseudo_margin.json"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
