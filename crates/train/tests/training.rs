//! Training behaviour: fitting known functions, determinism, validation split, weights files
//! and errors on bad input.

use faultline_train::{
    evaluate, fit, Activation, Error, Loss, Mlp, MlpSpec, Standardizer, TrainParams,
};

/// `n` rows of `d` features spread over about [−2, 2] from a fixed integer hash.
fn inputs(n: usize, d: usize, salt: u32) -> Vec<f32> {
    (0..n * d)
        .map(|i| {
            let v = (i as u32 ^ salt.wrapping_mul(0x9e37_79b9)).wrapping_mul(2_654_435_761);
            (v >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Targets `σ(w·x + b)` with a fixed w, b: a function the network can represent closely.
fn sigmoid_of_linear(x: &[f32], d: usize) -> Vec<f32> {
    let w = [1.5f32, -2.0, 0.7, 0.0, 1.1];
    x.chunks(d)
        .map(|r| sigmoid(r.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() - 0.3))
        .collect()
}

#[test]
fn mse_fit_of_sigmoid_of_linear_map_drops_loss_by_a_large_factor() {
    let (n, d) = (1000, 5);
    let x = inputs(n, d, 1);
    let t = sigmoid_of_linear(&x, d);
    let spec = MlpSpec::uniform(d, vec![32], Activation::Relu, 1, Activation::Sigmoid);
    let mut m = Mlp::new(spec, 0).unwrap();
    let params = TrainParams {
        epochs: 200,
        batch_size: 100,
        lr: 1e-2,
        validation_fraction: 0.2,
        ..TrainParams::default()
    };
    let r = fit(&mut m, &x, &t, n, &params).unwrap();
    let (first, last) = (r.train_loss[0], *r.train_loss.last().unwrap());
    let (v_first, v_last) = (r.validation_loss[0], *r.validation_loss.last().unwrap());
    println!(
        "sigmoid-of-linear: train {first:.3e} → {last:.3e} ({:.0}×), validation {v_first:.3e} → {v_last:.3e} ({:.0}×), {} steps",
        first / last,
        v_first / v_last,
        r.steps
    );
    assert_eq!(r.train_loss.len(), 200);
    assert_eq!(r.steps, 200 * 8); // 800 training rows in batches of 100
    assert!(first / last > 100.0, "train loss {first} → {last}");
    assert!(
        v_first / v_last > 50.0,
        "validation loss {v_first} → {v_last}"
    );
}

#[test]
fn one_d_regression_with_tanh_net() {
    // y = sin(2x) on [−2, 2]: needs the non-linearity; full batch, as the notebook trains.
    let n = 256;
    let x: Vec<f32> = (0..n)
        .map(|i| -2.0 + 4.0 * i as f32 / (n - 1) as f32)
        .collect();
    let t: Vec<f32> = x.iter().map(|v| (2.0 * v).sin()).collect();
    let spec = MlpSpec::uniform(1, vec![32, 32], Activation::Tanh, 1, Activation::Identity);
    let mut m = Mlp::new(spec, 3).unwrap();
    let params = TrainParams {
        epochs: 1500,
        lr: 3e-3,
        ..TrainParams::default()
    };
    let r = fit(&mut m, &x, &t, n, &params).unwrap();
    let (first, last) = (r.train_loss[0], *r.train_loss.last().unwrap());
    println!(
        "sin(2x): loss {first:.3e} → {last:.3e} ({:.0}×)",
        first / last
    );
    assert_eq!(r.batch_size, n);
    assert!(first / last > 100.0, "loss {first} → {last}");
}

/// Fraction of pairs with distinct targets that the scores order the same way.
fn concordance(s: &[f32], t: &[f32]) -> f64 {
    let (mut agree, mut total) = (0usize, 0usize);
    for a in 0..s.len() {
        for b in a + 1..s.len() {
            if t[a] != t[b] {
                total += 1;
                if (s[a] > s[b]) == (t[a] > t[b]) {
                    agree += 1;
                }
            }
        }
    }
    agree as f64 / total as f64
}

#[test]
fn ranking_fit_learns_the_order_of_a_nonlinear_target() {
    // t = x0² + x1 (only the order matters for the ranking loss).
    let (n, d) = (600, 3);
    let x = inputs(n, d, 2);
    let t: Vec<f32> = x.chunks(d).map(|r| r[0] * r[0] + r[1]).collect();
    let spec = MlpSpec::uniform(d, vec![32, 32], Activation::Relu, 1, Activation::Identity);
    let mut m = Mlp::new(spec, 1).unwrap();
    let before = concordance(&m.forward(&x, n).unwrap(), &t);
    let l0 = evaluate(&m, &x, &t, n, Loss::Ranking, 0).unwrap();
    let params = TrainParams {
        epochs: 300,
        batch_size: 64,
        lr: 3e-3,
        loss: Loss::Ranking,
        ..TrainParams::default()
    };
    let r = fit(&mut m, &x, &t, n, &params).unwrap();
    let after = concordance(&m.forward(&x, n).unwrap(), &t);
    let l1 = evaluate(&m, &x, &t, n, Loss::Ranking, 0).unwrap();
    println!(
        "ranking: loss {l0:.3} → {l1:.3}, pair concordance {before:.3} → {after:.3}, train loss {:.3} → {:.3}",
        r.train_loss[0],
        r.train_loss.last().unwrap()
    );
    assert!(after > 0.95, "concordance {after}");
    assert!(l1 < l0 / 5.0, "ranking loss {l0} → {l1}");
}

fn params_of(m: &Mlp) -> Vec<Vec<f32>> {
    m.parameters().iter().map(|p| p.to_vec()).collect()
}

#[test]
fn same_seed_gives_identical_weights_and_history() {
    let (n, d) = (300, 5);
    let x = inputs(n, d, 3);
    let t = sigmoid_of_linear(&x, d);
    let run = |init_seed: u64, seed: u64, threads: usize, loss: Loss| {
        let spec = MlpSpec::uniform(d, vec![128, 128], Activation::Relu, 1, Activation::Sigmoid);
        let mut m = Mlp::new(spec, init_seed).unwrap();
        let params = TrainParams {
            epochs: 5,
            batch_size: 128,
            lr: 1e-3,
            seed,
            threads,
            loss,
            validation_fraction: 0.1,
            standardize: true,
            ..TrainParams::default()
        };
        let r = fit(&mut m, &x, &t, n, &params).unwrap();
        (
            params_of(&m),
            r.train_loss,
            r.validation_loss,
            r.validation_indices,
        )
    };
    for loss in [Loss::Mse, Loss::Ranking] {
        let a = run(0, 0, 1, loss);
        assert_eq!(a, run(0, 0, 1, loss), "same seeds, same thread count");
        // The products never split a sum across threads, so the thread count does not matter
        // either (the 128×128×128 products are above the parallel threshold).
        assert_eq!(a, run(0, 0, 2, loss), "1 vs 2 threads");
        assert_ne!(a.0, run(1, 0, 1, loss).0, "other init seed");
        let b = run(0, 1, 1, loss);
        assert_ne!(a.0, b.0, "other shuffle seed");
        assert_ne!(a.3, b.3, "other validation split");
    }
}

#[test]
fn ranking_batches_of_ties_take_no_step() {
    // Batches of 2 rows pair row k with its neighbour; every pair here is a tie.
    let x = inputs(8, 2, 7);
    let t = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0];
    let spec = MlpSpec::uniform(2, vec![4], Activation::Relu, 1, Activation::Identity);
    let mut m = Mlp::new(spec, 0).unwrap();
    let before = m.clone();
    let params = TrainParams {
        epochs: 3,
        batch_size: 2,
        shuffle: false,
        loss: Loss::Ranking,
        ..TrainParams::default()
    };
    let r = fit(&mut m, &x, &t, 8, &params).unwrap();
    assert_eq!((r.steps, r.train_loss.clone()), (0, vec![0.0; 3]));
    assert_eq!(m, before);
}

#[test]
fn validation_split_is_disjoint_and_complete() {
    let (n, d) = (101, 5);
    let x = inputs(n, d, 4);
    let t = sigmoid_of_linear(&x, d);
    let mut m = Mlp::new(
        MlpSpec::uniform(d, vec![8], Activation::Relu, 1, Activation::Sigmoid),
        0,
    )
    .unwrap();
    let params = TrainParams {
        epochs: 3,
        validation_fraction: 0.2,
        ..TrainParams::default()
    };
    let r = fit(&mut m, &x, &t, n, &params).unwrap();
    assert_eq!(r.validation_indices.len(), 20);
    assert_eq!(r.validation_loss.len(), 3);
    let mut all: Vec<usize> = r
        .train_indices
        .iter()
        .chain(&r.validation_indices)
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
    assert_eq!(r.batch_size, 81);
    assert_eq!(r.steps, 3);
}

#[test]
fn standardize_stores_training_statistics_in_the_model() {
    let (n, d) = (50, 5);
    let mut x = inputs(n, d, 5);
    for row in x.chunks_mut(d) {
        row[2] = row[2] * 100.0 + 1000.0; // a feature on a very different scale
    }
    let t = vec![0.5; n];
    let mut m = Mlp::new(
        MlpSpec::uniform(d, vec![8], Activation::Relu, 1, Activation::Sigmoid),
        0,
    )
    .unwrap();
    let params = TrainParams {
        epochs: 1,
        standardize: true,
        ..TrainParams::default()
    };
    fit(&mut m, &x, &t, n, &params).unwrap();
    let want = Standardizer::fit(&x, n, d).unwrap();
    assert_eq!(m.standardizer(), Some(&want));
}

#[test]
fn save_then_load_gives_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pm.safetensors");
    let mut m = Mlp::new(MlpSpec::pseudo_margin(10), 42).unwrap();
    let x = inputs(64, 10, 6);
    m.set_standardizer(Some(Standardizer::fit(&x, 64, 10).unwrap()))
        .unwrap();
    m.save(&path).unwrap();
    let back = Mlp::load(&path).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.forward(&x, 64).unwrap(), m.forward(&x, 64).unwrap());
    // Without a standardiser too.
    m.set_standardizer(None).unwrap();
    let back = Mlp::from_safetensors(&m.to_safetensors().unwrap()).unwrap();
    assert_eq!(back, m);
    assert!(back.standardizer().is_none());
    // A missing file names its path.
    let err = Mlp::load(dir.path().join("nope.safetensors")).unwrap_err();
    assert!(err.to_string().contains("nope.safetensors"), "{err}");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let spec = MlpSpec::uniform(3, vec![4], Activation::Relu, 2, Activation::Identity);
    let mut m = Mlp::new(spec, 0).unwrap();
    let p = TrainParams {
        epochs: 1,
        ..TrainParams::default()
    };
    let x = vec![0.5; 12];
    let t = vec![0.5; 8];
    assert!(matches!(
        fit(&mut m, &x[..11], &t, 4, &p),
        Err(Error::Shape { what: "input", .. })
    ));
    assert!(matches!(
        fit(&mut m, &x, &t[..6], 4, &p),
        Err(Error::Shape { what: "target", .. })
    ));
    let ranking = TrainParams {
        loss: Loss::Ranking,
        ..p.clone()
    };
    assert!(matches!(
        fit(&mut m, &x, &t, 4, &ranking),
        Err(Error::RankingOutput { output: 2 })
    ));
    let mut xn = x.clone();
    xn[5] = f32::NAN;
    let e = fit(&mut m, &xn, &t, 4, &p).unwrap_err();
    assert!(matches!(e, Error::NonFinite { index: 5, .. }), "{e}");
    for bad in [
        TrainParams {
            batch_size: 0,
            ..p.clone()
        },
        TrainParams {
            lr: -1.0,
            ..p.clone()
        },
        TrainParams {
            validation_fraction: 1.0,
            ..p.clone()
        },
    ] {
        assert!(matches!(
            fit(&mut m, &x, &t, 4, &bad),
            Err(Error::Param { .. })
        ));
    }
    assert!(fit(&mut m, &[], &[], 0, &p).is_err());
    let diverge = TrainParams {
        lr: 1e30,
        epochs: 20,
        ..p.clone()
    };
    let xb = vec![1e3; 12];
    let tb = vec![1e3; 8];
    match fit(&mut m, &xb, &tb, 4, &diverge) {
        Err(Error::Diverged { .. }) => {}
        other => panic!("expected divergence, got {other:?}"),
    }
}

#[test]
fn params_roundtrip_through_json_with_defaults() {
    let p: TrainParams = serde_json::from_str(r#"{"epochs": 7, "loss": "ranking"}"#).unwrap();
    assert_eq!(p.epochs, 7);
    assert_eq!(p.loss, Loss::Ranking);
    assert_eq!(p.lr, 1e-4);
    assert_eq!(p.batch_size, 5000);
    assert!(serde_json::from_str::<TrainParams>(r#"{"epoch": 7}"#).is_err());
}
