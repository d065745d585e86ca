//! Optimisers and learning-rate schedules: first steps against hand-computed closed forms on
//! f(θ) = ½θ² (gradient θ), convergence on a convex quadratic, schedule values against the
//! PyTorch formulas, checkpoint round trips that resume bit for bit, and errors (never panics)
//! on bad input.

use faultline_train::{Adam, AdamParams, Optimizer, OptimizerParams, Schedule};

const EPS: f32 = 1e-8;

fn sgd(momentum: f32, nesterov: bool, weight_decay: f32) -> OptimizerParams {
    OptimizerParams::Sgd {
        momentum,
        nesterov,
        weight_decay,
    }
}

fn adam(weight_decay: f32) -> OptimizerParams {
    OptimizerParams::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: EPS,
        weight_decay,
    }
}

fn adamw(weight_decay: f32) -> OptimizerParams {
    OptimizerParams::AdamW {
        beta1: 0.9,
        beta2: 0.999,
        eps: EPS,
        weight_decay,
    }
}

/// Runs `n` steps of `opt` on f(θ) = ½θ² (gradient θ) for one scalar tensor, returning θ
/// after each step.
fn quadratic_run(params: OptimizerParams, lr: f32, theta0: f32, n: usize, decay: bool) -> Vec<f64> {
    let mut opt = Optimizer::new(params, &[1]).unwrap();
    let mut theta = [theta0];
    (0..n)
        .map(|_| {
            let g = [theta[0]];
            opt.step(lr, &mut [&mut theta], &[&g], &[decay]).unwrap();
            theta[0] as f64
        })
        .collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "step {}: got {g}, want {w}", k + 1);
    }
}

fn rel_close(got: f32, want: f64, what: &str) {
    let err = (got as f64 - want).abs() / want.abs().max(1e-30);
    assert!(err < 1e-6, "{what}: got {got}, want {want}");
}

#[test]
fn plain_sgd_is_geometric_decay_on_half_theta_squared() {
    // θ_{k+1} = θ_k − lr·θ_k = (1 − lr)^{k+1} θ0.
    let got = quadratic_run(sgd(0.0, false, 0.0), 0.1, 2.0, 5, true);
    let want: Vec<f64> = (1..=5).map(|k| 2.0 * 0.9f64.powi(k)).collect();
    assert_close(&got, &want, 1e-6);
}

#[test]
fn sgd_momentum_first_steps() {
    // μ = 0.9, lr = 0.1, θ0 = 1, d = θ:
    // 1: buf = d = 1 (PyTorch clones d on the first step), θ1 = 1 − 0.1 = 0.9
    // 2: buf = 0.9·1 + 0.9 = 1.8, θ2 = 0.9 − 0.18 = 0.72
    // 3: buf = 0.9·1.8 + 0.72 = 2.34, θ3 = 0.72 − 0.234 = 0.486
    let got = quadratic_run(sgd(0.9, false, 0.0), 0.1, 1.0, 3, true);
    assert_close(&got, &[0.9, 0.72, 0.486], 1e-6);
    // Longer: against the recursion buf ← μ·buf + θ, θ ← θ − lr·buf in f64.
    let got = quadratic_run(sgd(0.9, false, 0.0), 0.05, 1.5, 40, true);
    let (mut theta, mut buf) = (1.5f64, 0.0f64);
    let want: Vec<f64> = (0..40)
        .map(|_| {
            buf = 0.9 * buf + theta;
            theta -= 0.05 * buf;
            theta
        })
        .collect();
    assert_close(&got, &want, 1e-5);
}

#[test]
fn sgd_nesterov_first_steps() {
    // μ = 0.9, lr = 0.1, θ0 = 1, step = d + μ·buf:
    // 1: buf = 1, step = 1 + 0.9 = 1.9, θ1 = 1 − 0.19 = 0.81
    // 2: buf = 0.9 + 0.81 = 1.71, step = 0.81 + 1.539 = 2.349, θ2 = 0.81 − 0.2349 = 0.5751
    // 3: buf = 1.539 + 0.5751 = 2.1141, step = 0.5751 + 1.90269 = 2.47779,
    //    θ3 = 0.5751 − 0.247779 = 0.327321
    let got = quadratic_run(sgd(0.9, true, 0.0), 0.1, 1.0, 3, true);
    assert_close(&got, &[0.81, 0.5751, 0.327321], 1e-6);
}

#[test]
fn sgd_weight_decay_is_added_to_the_gradient_only_where_flagged() {
    // λ = 0.5: d = θ + 0.5θ = 1.5θ. μ = 0.9, lr = 0.1, θ0 = 1:
    // 1: buf = 1.5, θ1 = 1 − 0.15 = 0.85
    // 2: d = 1.275, buf = 1.35 + 1.275 = 2.625, θ2 = 0.85 − 0.2625 = 0.5875
    let got = quadratic_run(sgd(0.9, false, 0.5), 0.1, 1.0, 2, true);
    assert_close(&got, &[0.85, 0.5875], 1e-6);
    // Without the flag the decay is ignored: the momentum run's 0.9, 0.72.
    let got = quadratic_run(sgd(0.9, false, 0.5), 0.1, 1.0, 2, false);
    assert_close(&got, &[0.9, 0.72], 1e-6);
}

#[test]
fn adam_first_steps() {
    // β = (0.9, 0.999), lr = 0.1, θ0 = 1, g = θ:
    // 1: m = 0.1, v = 0.001, m̂ = 1, v̂ = 1 → θ1 = 1 − 0.1·1/(1 + ε)
    // 2: g = θ1, m = 0.09 + 0.1·θ1, v = 0.000999 + 0.001·θ1², m̂ = m/0.19, v̂ = v/0.001999,
    //    θ2 = θ1 − 0.1·m̂/(√v̂ + ε)
    let eps = EPS as f64;
    let t1 = 1.0 - 0.1 / (1.0 + eps);
    let (m, v) = (0.09 + 0.1 * t1, 0.000999 + 0.001 * t1 * t1);
    let t2 = t1 - 0.1 * (m / 0.19) / ((v / (1.0 - 0.999f64.powi(2))).sqrt() + eps);
    assert!((t1 - 0.9).abs() < 1e-7 && (t2 - 0.8).abs() < 0.01);
    let got = quadratic_run(adam(0.0), 0.1, 1.0, 2, true);
    assert_close(&got, &[t1, t2], 1e-6);
}

#[test]
fn adam_l2_weight_decay_first_steps() {
    // λ = 0.5, g_eff = θ + 0.5θ = 1.5θ; lr = 0.1, θ0 = 1:
    // 1: m̂ = 1.5, v̂ = 2.25 → θ1 = 1 − 0.1·1.5/(1.5 + ε)
    // 2: g = 1.5·θ1, m = 0.9·0.15 + 0.1·g, v = 0.999·0.00225 + 0.001·g², then as Adam.
    let eps = EPS as f64;
    let t1 = 1.0 - 0.1 * 1.5 / (1.5 + eps);
    let g = 1.5 * t1;
    let (m, v) = (0.9 * 0.15 + 0.1 * g, 0.999 * 0.00225 + 0.001 * g * g);
    let t2 = t1 - 0.1 * (m / 0.19) / ((v / (1.0 - 0.999f64.powi(2))).sqrt() + eps);
    let got = quadratic_run(adam(0.5), 0.1, 1.0, 2, true);
    assert_close(&got, &[t1, t2], 1e-6);
}

#[test]
fn adamw_decoupled_weight_decay_first_steps() {
    // λ = 0.1, lr = 0.1, θ0 = 1, g = θ taken before the shrink θ ← θ(1 − lr·λ) = 0.99θ:
    // 1: g = 1, θ = 0.99, m̂ = 1, v̂ = 1 → θ1 = 0.99 − 0.1/(1 + ε)
    // 2: g = θ1, θ = 0.99·θ1, m = 0.09 + 0.1·g, v = 0.000999 + 0.001·g²,
    //    θ2 = 0.99·θ1 − 0.1·m̂/(√v̂ + ε)
    let eps = EPS as f64;
    let t1 = 0.99 - 0.1 / (1.0 + eps);
    let (m, v) = (0.09 + 0.1 * t1, 0.000999 + 0.001 * t1 * t1);
    let t2 = 0.99 * t1 - 0.1 * (m / 0.19) / ((v / (1.0 - 0.999f64.powi(2))).sqrt() + eps);
    assert!((t1 - 0.89).abs() < 1e-7);
    let got = quadratic_run(adamw(0.1), 0.1, 1.0, 2, true);
    assert_close(&got, &[t1, t2], 1e-6);
}

#[test]
fn weight_decay_on_zero_gradient_for_each_optimiser_and_flag() {
    // θ0 = 2, g = 0, lr = 0.01, λ = 0.5, one step:
    // SGD: θ − lr·λθ = 2 − 0.01 = 1.99; Adam (L2): g_eff = 1 → moves by lr: 1.99;
    // AdamW: θ(1 − lr·λ) = 2·0.995 = 1.99 and no Adam move (m = 0);
    // SGD λ = 2: 2 − 0.01·4 = 1.96 (tells SGD's λθ from Adam's normalised step).
    let cases = [
        (sgd(0.9, false, 0.5), 1.99),
        (sgd(0.0, false, 2.0), 1.96),
        (adam(0.5), 2.0 - 0.01 / (1.0 + EPS as f64)),
        (adamw(0.5), 1.99),
        (adamw(2.0), 1.96),
    ];
    for (p, want) in cases {
        for flag in [true, false] {
            let mut opt = Optimizer::new(p, &[1, 1]).unwrap();
            let (mut a, mut b) = ([2.0f32], [2.0f32]);
            opt.step(
                0.01,
                &mut [&mut a, &mut b],
                &[&[0.0], &[0.0]],
                &[flag, true],
            )
            .unwrap();
            let want_a = if flag { want } else { 2.0 };
            assert!(
                (a[0] as f64 - want_a).abs() < 1e-6,
                "{p:?} flag {flag}: {}",
                a[0]
            );
            assert!((b[0] as f64 - want).abs() < 1e-6, "{p:?}: {}", b[0]);
        }
    }
}

/// Minimises f(θ) = ½ Σ aᵢ(θᵢ − cᵢ)² (condition number 100) for `n` steps; returns the
/// largest |θᵢ − cᵢ|.
fn quadratic_bowl(params: OptimizerParams, lr: f32, n: usize) -> f32 {
    let a = [1.0f32, 10.0, 100.0];
    let c = [1.0f32, -2.0, 3.0];
    let mut opt = Optimizer::new(params, &[3]).unwrap();
    let mut theta = [0.0f32; 3];
    for _ in 0..n {
        let g: Vec<f32> = (0..3).map(|i| a[i] * (theta[i] - c[i])).collect();
        opt.step(lr, &mut [&mut theta], &[&g], &[false]).unwrap();
    }
    (0..3).map(|i| (theta[i] - c[i]).abs()).fold(0.0, f32::max)
}

#[test]
fn sgd_with_momentum_converges_on_a_convex_quadratic() {
    // Slowest mode a = 1: momentum 0.9 contracts by √0.9 ≈ 0.949 a step (500 steps: e^−26),
    // plain SGD by 0.99 (500 steps: e^−5 ≈ 7e−3).
    let momentum = quadratic_bowl(sgd(0.9, false, 0.0), 0.01, 500);
    let nesterov = quadratic_bowl(sgd(0.9, true, 0.0), 0.01, 500);
    let plain = quadratic_bowl(sgd(0.0, false, 0.0), 0.01, 500);
    println!(
        "distance to the optimum: momentum {momentum:e}, nesterov {nesterov:e}, plain {plain:e}"
    );
    assert!(momentum < 1e-5, "momentum {momentum}");
    assert!(nesterov < 1e-5, "nesterov {nesterov}");
    assert!(plain > 1e-3, "plain {plain}");
}

#[test]
fn adam_wrapper_is_the_optimizer_with_a_fixed_rate() {
    for decoupled in [false, true] {
        let ap = AdamParams {
            lr: 0.01,
            weight_decay: 0.1,
            decoupled_weight_decay: decoupled,
            ..AdamParams::default()
        };
        let mut a = Adam::new(ap, &[3, 2]).unwrap();
        let mut o = Optimizer::new(ap.optimizer(), &[3, 2]).unwrap();
        assert_eq!(*o.params(), if decoupled { adamw(0.1) } else { adam(0.1) });
        let (mut p1, mut q1) = ([0.5f32, -1.0, 2.0], [0.3f32, 0.7]);
        let (mut p2, mut q2) = (p1, q1);
        for k in 0..20 {
            let g1: Vec<f32> = p1.iter().map(|x| x * x - 0.1 * k as f32).collect();
            let g2: Vec<f32> = q1.iter().map(|x| x.sin()).collect();
            a.step(&mut [&mut p1, &mut q1], &[&g1, &g2]).unwrap();
            o.step(0.01, &mut [&mut p2, &mut q2], &[&g1, &g2], &[true, true])
                .unwrap();
        }
        assert_eq!(p1.map(f32::to_bits), p2.map(f32::to_bits));
        assert_eq!(q1.map(f32::to_bits), q2.map(f32::to_bits));
        assert_eq!(a.steps(), 20);
        assert_eq!(o.steps(), 20);
    }
}

#[test]
fn constructors_are_the_documented_defaults_and_valid() {
    assert_eq!(OptimizerParams::sgd(), sgd(0.9, false, 5e-4));
    assert_eq!(OptimizerParams::adam(), adam(0.0));
    assert_eq!(OptimizerParams::adamw(), adamw(0.01));
    for p in [
        OptimizerParams::sgd(),
        OptimizerParams::adam(),
        OptimizerParams::adamw(),
    ] {
        p.validate().unwrap();
        let o = Optimizer::new(p, &[4, 0, 2]).unwrap();
        assert_eq!(o.sizes(), &[4, 0, 2]);
        assert_eq!(o.steps(), 0);
    }
}

/// A few steps of a two-tensor problem with a non-linear gradient and a schedule.
fn run_steps(opt: &mut Optimizer, w: &mut [f32], b: &mut [f32], from: usize, to: usize) {
    let schedule = Schedule::OneCycle {
        pct_start: 0.3,
        div_factor: 25.0,
        final_div_factor: 1e4,
    };
    for step in from..to {
        let gw: Vec<f32> = w
            .iter()
            .enumerate()
            .map(|(i, x)| x * x * x - 0.3 * x + 0.01 * (i + step) as f32)
            .collect();
        let gb: Vec<f32> = b.iter().map(|x| x.cos() - 0.5).collect();
        let lr = schedule.lr(0.05, step, 20);
        opt.step(lr, &mut [&mut *w, &mut *b], &[&gw, &gb], &[true, false])
            .unwrap();
    }
}

#[test]
fn checkpoint_round_trip_mid_run_continues_bit_identically() {
    for p in [
        OptimizerParams::sgd(),
        sgd(0.9, true, 1e-3),
        sgd(0.0, false, 1e-2),
        adam(1e-3),
        OptimizerParams::adamw(),
    ] {
        let mut w = vec![0.5f32, -1.25, 0.75, 2.0];
        let mut b = vec![0.1f32, -0.2];
        let mut opt = Optimizer::new(p, &[4, 2]).unwrap();
        run_steps(&mut opt, &mut w, &mut b, 0, 9);

        let json = serde_json::to_string(&opt).unwrap();
        let mut resumed: Optimizer = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&resumed).unwrap(), json);
        assert_eq!(resumed.steps(), 9);
        assert_eq!(resumed.params(), &p);
        let (mut w2, mut b2) = (w.clone(), b.clone());

        run_steps(&mut opt, &mut w, &mut b, 9, 20);
        run_steps(&mut resumed, &mut w2, &mut b2, 9, 20);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&w), bits(&w2), "{p:?}");
        assert_eq!(bits(&b), bits(&b2), "{p:?}");
        assert_eq!(
            serde_json::to_string(&opt).unwrap(),
            serde_json::to_string(&resumed).unwrap()
        );
    }
}

#[test]
fn checkpoint_keeps_non_finite_state_exactly() {
    // g = 1e30: v = 0.001·g² overflows to +∞ (θ does not move: m/∞ = 0). A float-text
    // checkpoint would turn ∞ into null; the bit patterns keep it.
    let mut opt = Optimizer::new(OptimizerParams::adam(), &[1]).unwrap();
    let mut theta = [1.0f32];
    opt.step(0.1, &mut [&mut theta], &[&[1e30]], &[true])
        .unwrap();
    let json = serde_json::to_string(&opt).unwrap();
    let mut resumed: Optimizer = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string(&resumed).unwrap(), json);
    let mut theta2 = theta;
    opt.step(0.1, &mut [&mut theta], &[&[0.5]], &[true])
        .unwrap();
    resumed
        .step(0.1, &mut [&mut theta2], &[&[0.5]], &[true])
        .unwrap();
    assert_eq!(theta[0].to_bits(), theta2[0].to_bits());
}

#[test]
fn damaged_checkpoints_are_errors() {
    let mut opt = Optimizer::new(OptimizerParams::adam(), &[2, 1]).unwrap();
    let (mut a, mut b) = ([1.0f32, 2.0], [3.0f32]);
    opt.step(
        0.1,
        &mut [&mut a, &mut b],
        &[&[1.0, 1.0], &[1.0]],
        &[true, true],
    )
    .unwrap();
    let good: serde_json::Value = serde_json::to_value(&opt).unwrap();
    assert!(serde_json::from_value::<Optimizer>(good.clone()).is_ok());
    let damaged = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        serde_json::from_value::<Optimizer>(v)
    };
    // A buffer of the wrong length, a missing buffer, buffers for the wrong sizes.
    assert!(damaged(&|v| v["first"][0] = serde_json::json!([0])).is_err());
    assert!(damaged(&|v| v["second"] = serde_json::json!([])).is_err());
    assert!(damaged(&|v| v["sizes"] = serde_json::json!([2, 2])).is_err());
    // SGD without momentum keeps no buffers: Adam's are refused.
    assert!(damaged(
        &|v| v["params"] = serde_json::json!({"kind": "sgd", "momentum": 0.0,
        "nesterov": false, "weight_decay": 0.0})
    )
    .is_err());
    // Out-of-range hyper-parameters, unknown fields.
    assert!(damaged(&|v| v["params"]["beta1"] = serde_json::json!(1.5)).is_err());
    assert!(damaged(&|v| v["extra"] = serde_json::json!(1)).is_err());
}

#[test]
fn bad_params_are_errors() {
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    let bad = [
        sgd(-0.1, false, 0.0),
        sgd(1.0, false, 0.0),
        sgd(nan, false, 0.0),
        sgd(0.0, true, 0.0), // Nesterov needs momentum > 0 (PyTorch)
        sgd(0.9, false, -1e-4),
        sgd(0.9, false, nan),
        sgd(0.9, false, inf),
        OptimizerParams::Adam {
            beta1: 1.0,
            beta2: 0.999,
            eps: EPS,
            weight_decay: 0.0,
        },
        OptimizerParams::Adam {
            beta1: -0.1,
            beta2: 0.999,
            eps: EPS,
            weight_decay: 0.0,
        },
        OptimizerParams::Adam {
            beta1: 0.9,
            beta2: 1.0,
            eps: EPS,
            weight_decay: 0.0,
        },
        OptimizerParams::Adam {
            beta1: 0.9,
            beta2: nan,
            eps: EPS,
            weight_decay: 0.0,
        },
        OptimizerParams::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 0.0,
            weight_decay: 0.0,
        },
        OptimizerParams::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: inf,
            weight_decay: 0.0,
        },
        adam(-0.01),
        adamw(nan),
    ];
    for p in bad {
        assert!(p.validate().is_err(), "{p:?}");
        assert!(Optimizer::new(p, &[1]).is_err(), "{p:?}");
    }
    assert!(sgd(0.5, true, 0.0).validate().is_ok());
    assert!(sgd(0.0, false, 0.0).validate().is_ok());
}

#[test]
fn mismatched_lengths_and_bad_rates_are_errors_that_change_nothing() {
    for p in [
        OptimizerParams::sgd(),
        OptimizerParams::adam(),
        OptimizerParams::adamw(),
    ] {
        let mut opt = Optimizer::new(p, &[2, 1]).unwrap();
        let before = serde_json::to_string(&opt).unwrap();
        let (mut a, mut b, mut c) = ([1.0f32, 2.0], [3.0f32], [4.0f32]);
        let mut long = [1.0f32; 3];
        let g2 = [0.5f32, 0.5];
        let g1 = [0.5f32];
        // Too few / too many tensors.
        assert!(opt.step(0.1, &mut [&mut a], &[&g2], &[true]).is_err());
        assert!(opt
            .step(
                0.1,
                &mut [&mut a, &mut b, &mut c],
                &[&g2, &g1, &g1],
                &[true; 3]
            )
            .is_err());
        // Gradient or flag lists of the wrong length.
        assert!(opt
            .step(0.1, &mut [&mut a, &mut b], &[&g2], &[true; 2])
            .is_err());
        assert!(opt
            .step(0.1, &mut [&mut a, &mut b], &[&g2, &g1], &[true])
            .is_err());
        assert!(opt
            .step(0.1, &mut [&mut a, &mut b], &[&g2, &g1], &[true; 3])
            .is_err());
        // A tensor or a gradient of the wrong size.
        assert!(opt
            .step(0.1, &mut [&mut long, &mut b], &[&g2, &g1], &[true; 2])
            .is_err());
        assert!(opt
            .step(0.1, &mut [&mut a, &mut b], &[&g1, &g1], &[true; 2])
            .is_err());
        // Learning rates that are negative or not finite.
        for lr in [-0.1, f32::NAN, f32::INFINITY] {
            assert!(opt
                .step(lr, &mut [&mut a, &mut b], &[&g2, &g1], &[true; 2])
                .is_err());
        }
        assert_eq!(opt.steps(), 0);
        assert_eq!((a, b, long), ([1.0, 2.0], [3.0], [1.0; 3]));
        assert_eq!(serde_json::to_string(&opt).unwrap(), before);
        // The right lists work.
        opt.step(0.1, &mut [&mut a, &mut b], &[&g2, &g1], &[true, false])
            .unwrap();
        assert_eq!(opt.steps(), 1);
    }
}

#[test]
fn constant_and_step_schedules() {
    for s in [0, 1, 57, 1000] {
        assert_eq!(Schedule::Constant.lr(0.1, s, 100), 0.1);
    }
    // lr = base·γ^⌊s/every⌋ (StepLR).
    let st = Schedule::Step {
        every: 30,
        gamma: 0.1,
    };
    for (s, k) in [(0, 0), (29, 0), (30, 1), (59, 1), (60, 2), (89, 2), (90, 3)] {
        rel_close(
            st.lr(0.1, s, 90),
            0.1 * 0.1f64.powi(k),
            &format!("step {s}"),
        );
    }
}

#[test]
fn cosine_schedule_matches_cosine_annealing_lr() {
    // η_min + (base − η_min)(1 + cos(π s/T))/2 with η_min = 0.1·base, T = 100.
    let c = Schedule::Cosine { min_factor: 0.1 };
    let (base, eta_min) = (0.2f64, 0.02f64);
    let want = |s: f64| {
        eta_min + (base - eta_min) * (1.0 + (std::f64::consts::PI * s / 100.0).cos()) / 2.0
    };
    rel_close(c.lr(0.2, 0, 100), base, "start");
    rel_close(c.lr(0.2, 25, 100), want(25.0), "quarter");
    rel_close(c.lr(0.2, 50, 100), (base + eta_min) / 2.0, "middle");
    rel_close(c.lr(0.2, 73, 100), want(73.0), "73");
    rel_close(c.lr(0.2, 100, 100), eta_min, "end");
    rel_close(c.lr(0.2, 150, 100), eta_min, "past the end");
    let zero_min = Schedule::Cosine { min_factor: 0.0 };
    assert_eq!(zero_min.lr(0.2, 100, 100), 0.0);
    let lrs: Vec<f32> = (0..=100).map(|s| c.lr(0.2, s, 100)).collect();
    assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
}

#[test]
fn one_cycle_schedule_matches_one_cycle_lr() {
    // max_lr = base = 0.1, total = 200, pct_start 0.25, div 25, final_div 1e4:
    // initial = 0.004, min = 4e-7, phase 1 ends at s₁ = 0.25·200 − 1 = 49, phase 2 at 199;
    // each phase: end + (start − end)/2·(cos(π·pct) + 1).
    let oc = Schedule::OneCycle {
        pct_start: 0.25,
        div_factor: 25.0,
        final_div_factor: 1e4,
    };
    let (base, initial, min) = (0.1f64, 0.004f64, 4e-7f64);
    let anneal = |from: f64, to: f64, pct: f64| {
        to + (from - to) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
    };
    rel_close(oc.lr(0.1, 0, 200), initial, "start = base/div_factor");
    rel_close(
        oc.lr(0.1, 20, 200),
        anneal(initial, base, 20.0 / 49.0),
        "warm-up",
    );
    rel_close(oc.lr(0.1, 49, 200), base, "peak at pct_start·total − 1");
    rel_close(
        oc.lr(0.1, 50, 200),
        anneal(base, min, 1.0 / 150.0),
        "just after the peak",
    );
    rel_close(
        oc.lr(0.1, 124, 200),
        (base + min) / 2.0,
        "middle of the decay",
    );
    rel_close(oc.lr(0.1, 199, 200), min, "end = base/(div·final_div)");
    rel_close(oc.lr(0.1, 250, 200), min, "past the end");
    let lrs: Vec<f32> = (0..200).map(|s| oc.lr(0.1, s, 200)).collect();
    assert!(lrs[..50].windows(2).all(|w| w[1] > w[0]));
    assert!(lrs[49..].windows(2).all(|w| w[1] < w[0]));

    // PyTorch defaults (0.3, 25, 1e4) over 100 steps: peak at 0.3·100 − 1 ≈ 29.
    let d = Schedule::parse("one-cycle").unwrap();
    rel_close(d.lr(1.0, 0, 100), 1.0 / 25.0, "default start");
    assert!((d.lr(1.0, 29, 100) - 1.0).abs() < 1e-6);
    rel_close(d.lr(1.0, 99, 100), 1.0 / 25.0 / 1e4, "default end");
}

#[test]
fn schedules_never_panic_on_edge_cases() {
    let all = [
        Schedule::Constant,
        Schedule::Step {
            every: 1,
            gamma: 0.5,
        },
        Schedule::Cosine { min_factor: 0.0 },
        Schedule::parse("one-cycle").unwrap(),
        Schedule::OneCycle {
            pct_start: 0.0,
            div_factor: 25.0,
            final_div_factor: 1e4,
        },
        Schedule::OneCycle {
            pct_start: 1.0,
            div_factor: 25.0,
            final_div_factor: 1e4,
        },
        // Warm-up of length zero (pct_start·total = 1 at total 10): PyTorch divides by zero.
        Schedule::OneCycle {
            pct_start: 0.1,
            div_factor: 25.0,
            final_div_factor: 1e4,
        },
    ];
    for s in all {
        s.validate().unwrap();
        for total in [0, 1, 2, 10] {
            for step in [0, 1, 5, 9, 10, 11, usize::MAX] {
                let lr = s.lr(0.1, step, total);
                assert!(
                    lr.is_finite() && (0.0..=0.1).contains(&lr),
                    "{s:?} {step}/{total}: {lr}"
                );
            }
        }
    }
    // An invalid schedule (every = 0) gives a number, not a panic.
    let bad = Schedule::Step {
        every: 0,
        gamma: 0.1,
    };
    assert!(bad.validate().is_err());
    let _ = bad.lr(0.1, 5, 10);
}

#[test]
fn bad_schedules_are_errors() {
    let bad = [
        Schedule::Step {
            every: 0,
            gamma: 0.1,
        },
        Schedule::Step {
            every: 10,
            gamma: 0.0,
        },
        Schedule::Step {
            every: 10,
            gamma: f32::NAN,
        },
        Schedule::Cosine { min_factor: -0.1 },
        Schedule::Cosine { min_factor: 1.5 },
        Schedule::Cosine {
            min_factor: f32::NAN,
        },
        Schedule::OneCycle {
            pct_start: -0.1,
            div_factor: 25.0,
            final_div_factor: 1e4,
        },
        Schedule::OneCycle {
            pct_start: 1.1,
            div_factor: 25.0,
            final_div_factor: 1e4,
        },
        Schedule::OneCycle {
            pct_start: 0.3,
            div_factor: 0.0,
            final_div_factor: 1e4,
        },
        Schedule::OneCycle {
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: f32::INFINITY,
        },
    ];
    for s in bad {
        assert!(s.validate().is_err(), "{s:?}");
    }
}

#[test]
fn parse_reads_the_cli_forms_with_documented_defaults() {
    let cases = [
        ("constant", Schedule::Constant),
        (
            "step:30",
            Schedule::Step {
                every: 30,
                gamma: 0.1,
            },
        ),
        (
            "step:30:0.5",
            Schedule::Step {
                every: 30,
                gamma: 0.5,
            },
        ),
        ("cosine", Schedule::Cosine { min_factor: 0.0 }),
        ("cosine:0.01", Schedule::Cosine { min_factor: 0.01 }),
        (
            "one-cycle",
            Schedule::OneCycle {
                pct_start: 0.3,
                div_factor: 25.0,
                final_div_factor: 1e4,
            },
        ),
        (
            "one-cycle:0.25",
            Schedule::OneCycle {
                pct_start: 0.25,
                div_factor: 25.0,
                final_div_factor: 1e4,
            },
        ),
        (
            "one-cycle:0.25:10:1e3",
            Schedule::OneCycle {
                pct_start: 0.25,
                div_factor: 10.0,
                final_div_factor: 1e3,
            },
        ),
    ];
    for (text, want) in cases {
        let got = Schedule::parse(text).unwrap();
        assert_eq!(got, want, "{text}");
        // Display writes the full form, which parses back to the same value.
        assert_eq!(Schedule::parse(&got.to_string()).unwrap(), got, "{got}");
    }
    for text in [
        "",
        "linear",
        "Cosine",
        "step",
        "step:0",
        "step:-1",
        "step:x",
        "step:3:0",
        "step:3:0.1:9",
        "cosine:2",
        "cosine:a",
        "constant:1",
        "one-cycle:1.5",
        "one-cycle:0.3:25:1e4:7",
    ] {
        assert!(Schedule::parse(text).is_err(), "{text:?}");
    }
}

#[test]
fn serde_names_of_params_and_schedules() {
    let p: OptimizerParams = serde_json::from_str(
        r#"{"kind": "sgd", "momentum": 0.9, "nesterov": true, "weight_decay": 0.0005}"#,
    )
    .unwrap();
    assert_eq!(p, sgd(0.9, true, 5e-4));
    let p: OptimizerParams = serde_json::from_str(
        r#"{"kind": "adamw", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01}"#,
    )
    .unwrap();
    assert_eq!(p, OptimizerParams::adamw());
    for p in [
        OptimizerParams::sgd(),
        OptimizerParams::adam(),
        OptimizerParams::adamw(),
    ] {
        let back: OptimizerParams =
            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
    assert!(serde_json::from_str::<OptimizerParams>(
        r#"{"kind": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0, "lr": 1}"#
    )
    .is_err());

    let s: Schedule = serde_json::from_str(
        r#"{"kind": "one-cycle", "pct_start": 0.3, "div_factor": 25, "final_div_factor": 1e4}"#,
    )
    .unwrap();
    assert_eq!(s, Schedule::parse("one-cycle").unwrap());
    let s: Schedule =
        serde_json::from_str(r#"{"kind": "step", "every": 10, "gamma": 0.5}"#).unwrap();
    assert_eq!(s, Schedule::parse("step:10:0.5").unwrap());
    assert_eq!(
        serde_json::to_string(&Schedule::Constant).unwrap(),
        r#"{"kind":"constant"}"#
    );
    assert!(serde_json::from_str::<Schedule>(r#"{"kind": "cosine", "min": 0}"#).is_err());
}
