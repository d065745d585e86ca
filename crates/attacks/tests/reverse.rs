//! Reverse attacks (loss descent toward a label): on linear and small ReLU models of several
//! seeds, every reversible attack returns images in the ball and the box whose cross-entropy of
//! the label (recomputed here from fresh logits) is never above the clean one, and PGD lowers
//! it on nearly every sample. For a two-class linear model the best L∞ descent toward the
//! predicted class has a closed form, `Δmargin = Σ_i |a_i|·min(ε, room_i)` with `a = w_p − w_q`
//! and `room_i` the distance to the box edge in the direction of `sign(a_i)`: PGD must reach
//! it, and the prediction never changes.

mod common;

use common::{images, linear};
use faultline_attacks::registry::Settings;
use faultline_attacks::reverse::{build, reverse, REVERSIBLE};
use faultline_attacks::BatchRef;
use faultline_engine::ops::{Flatten, Gemm, Unary, UnaryKind};
use faultline_engine::{GraphBuilder, Model, Tensor};

/// `z = W2·relu(W1·x + b1) + b2` over `d` inputs, `h` hidden units and `k` classes.
fn relu_net(d: usize, h: usize, k: usize, seed: u64) -> Model {
    let mut s = seed;
    let mut r = |scale: f32| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        scale * ((s >> 40) as f32 / 16777216.0 - 0.5)
    };
    let t = |shape: Vec<usize>, v: Vec<f32>| Tensor::from_f32(shape, v).unwrap();
    let mut g = GraphBuilder::new();
    g.input("x");
    g.constant("w1", t(vec![h, d], (0..h * d).map(|_| r(2.0)).collect()));
    g.constant("b1", t(vec![h], (0..h).map(|_| r(0.5)).collect()));
    g.constant("w2", t(vec![k, h], (0..k * h).map(|_| r(2.0)).collect()));
    g.constant("b2", t(vec![k], (0..k).map(|_| r(0.2)).collect()));
    let gemm = || {
        Box::new(Gemm {
            trans_b: true,
            ..Gemm::default()
        })
    };
    g.node("flat", Box::new(Flatten { axis: 1 }), &[Some("x")], "f");
    g.node("fc1", gemm(), &[Some("f"), Some("w1"), Some("b1")], "p");
    g.node(
        "relu",
        Box::new(Unary::new(UnaryKind::Relu)),
        &[Some("p")],
        "q",
    );
    g.node("fc2", gemm(), &[Some("q"), Some("w2"), Some("b2")], "z");
    let mut m = Model::new(g.build("z").unwrap(), vec![]);
    m.prepare([1, 1, d], None).unwrap();
    m
}

fn ce(z: &[f32], y: usize) -> f64 {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = m + z.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
    lse - z[y] as f64
}

#[test]
fn reverse_attacks_toward_the_true_label_never_raise_its_loss() {
    let (d, k, n) = (12, 4, 24);
    let eps = 0.05f32;
    for seed in 1..=3u64 {
        let models = [linear(d, k, seed).0, relu_net(d, 16, k, seed + 10)];
        for (mi, m) in models.iter().enumerate() {
            // Wide spread: many samples touch the box, and labels are drawn independently of the
            // predictions, so most samples start misclassified.
            let x = images(n, d, seed * 31 + mi as u64, 0.9);
            let labels: Vec<usize> = (0..n).map(|i| (i * 7 + seed as usize) % k).collect();
            let idx: Vec<usize> = (0..n).collect();
            for &name in REVERSIBLE {
                let settings = Settings {
                    steps: (name != "fgsm").then_some(if name == "square" { 200 } else { 20 }),
                    seed,
                    ..Settings::default()
                };
                let a = build(name, &settings).unwrap();
                let (adv, out) = reverse(&a, m, BatchRef::new(&x, &idx), &labels, eps).unwrap();
                let z0 = m.logits(&x).unwrap();
                let z1 = m.logits(&adv).unwrap();
                let mut lowered = 0;
                for i in 0..n {
                    let (xa, x0) = (&adv[i * d..(i + 1) * d], &x[i * d..(i + 1) * d]);
                    for (a, b) in xa.iter().zip(x0) {
                        assert!((a - b).abs() <= eps + 1e-6 && (0.0..=1.0).contains(a));
                    }
                    let (l0, l1) = (
                        ce(&z0[i * k..(i + 1) * k], labels[i]),
                        ce(&z1[i * k..(i + 1) * k], labels[i]),
                    );
                    assert!(
                        l1 <= l0 + 1e-5,
                        "{name} seed {seed} model {mi} sample {i}: loss {l0} → {l1}"
                    );
                    assert!((out[i].loss_after as f64 - l1).abs() < 1e-3);
                    assert_eq!(out[i].result.success, out[i].result.prediction == labels[i]);
                    if l1 < l0 - 1e-6 {
                        lowered += 1;
                    }
                }
                if name == "pgd" || name == "mifgsm" {
                    assert!(
                        lowered >= n * 9 / 10,
                        "{name} seed {seed} model {mi}: loss lowered on only {lowered}/{n}"
                    );
                }
            }
        }
    }
}

#[test]
fn reverse_pgd_toward_the_prediction_of_a_binary_linear_model_is_exact() {
    let (d, n) = (30, 32);
    for seed in 1..=4u64 {
        let (m, w, b) = linear(d, 2, seed);
        let x = images(n, d, seed + 100, 0.96);
        let z0 = m.logits(&x).unwrap();
        let pred: Vec<usize> = (0..n)
            .map(|i| usize::from(z0[2 * i + 1] > z0[2 * i]))
            .collect();
        for eps in [0.01f32, 0.05] {
            let a = build("pgd", &Settings::default()).unwrap();
            let idx: Vec<usize> = (0..n).collect();
            let (adv, out) = reverse(&a, &m, BatchRef::new(&x, &idx), &pred, eps).unwrap();
            for i in 0..n {
                let (p, q) = (pred[i], 1 - pred[i]);
                let x0 = &x[i * d..(i + 1) * d];
                let margin = |v: &[f32]| -> f64 {
                    (0..d)
                        .map(|j| (w[p * d + j] - w[q * d + j]) as f64 * v[j] as f64)
                        .sum::<f64>()
                        + (b[p] - b[q]) as f64
                };
                let best: f64 = (0..d)
                    .map(|j| {
                        let a = (w[p * d + j] - w[q * d + j]) as f64;
                        let room = if a > 0.0 { 1.0 - x0[j] } else { x0[j] } as f64;
                        a.abs() * room.min(eps as f64)
                    })
                    .sum();
                let got = margin(&adv[i * d..(i + 1) * d]) - margin(x0);
                assert_eq!(out[i].result.prediction, p, "seed {seed} sample {i} moved");
                assert!(
                    (got - best).abs() <= 1e-4 * (1.0 + best),
                    "seed {seed} ε {eps} sample {i}: margin gain {got}, closed form {best}"
                );
            }
        }
    }
}

#[test]
fn reverse_refuses_attacks_without_a_descent_toward_a_label() {
    for name in ["apgd-dlr", "apgd-t", "fab-t", "deepfool", "cw"] {
        let e = build(name, &Settings::default()).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains("reverse"), "{e}");
    }
    let dlr = Settings {
        loss: Some(faultline_attacks::AttackLoss::Dlr),
        ..Settings::default()
    };
    assert!(build("pgd", &dlr).is_err());
}
