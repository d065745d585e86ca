//! Central finite-difference checks of every weight, bias and input gradient, for both losses.
//!
//! The analytic gradients come from the f32 backward pass; the finite differences come from an
//! independent f64 re-implementation of the forward pass and of the losses (plain loops over
//! the model's weights), so they are exact to ~1e-9 and the comparison measures the f32
//! backward pass alone. Each tensor is compared by relative L2 error
//! `‖g − g_fd‖ / ‖g_fd‖`, with the bar at 1e-3.

use faultline_train::loss::{flip_pairs, mse, ranking};
use faultline_train::{Activation, Mlp, MlpSpec, Standardizer, Trace};

const BAR: f64 = 1e-3;
const H: f64 = 1e-6;

/// f64 forward of the network with `params` replacing its parameters (`W0, b0, …` order),
/// and with the raw input `x`; standardisation included.
fn forward64(m: &Mlp, params: &[Vec<f64>], x: &[f64], n: usize) -> Vec<f64> {
    let mut a: Vec<f64> = x.to_vec();
    if let Some(s) = m.standardizer() {
        for row in a.chunks_mut(m.input()) {
            for ((v, &mean), &std) in row.iter_mut().zip(s.mean()).zip(s.std()) {
                *v = (*v - mean as f64) / std as f64;
            }
        }
    }
    for (l, layer) in m.layers().iter().enumerate() {
        let (i, o) = (layer.input(), layer.output());
        let (w, b) = (&params[2 * l], &params[2 * l + 1]);
        let mut out = vec![0.0; n * o];
        for r in 0..n {
            for j in 0..o {
                let mut z = b[j];
                for p in 0..i {
                    z += a[r * i + p] * w[j * i + p];
                }
                out[r * o + j] = match layer.activation() {
                    Activation::Identity => z,
                    Activation::Relu => z.max(0.0),
                    Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
                    Activation::Tanh => z.tanh(),
                };
            }
        }
        a = out;
    }
    a
}

#[derive(Clone, Copy, PartialEq)]
enum Which {
    Mse,
    Ranking,
}

fn loss64(which: Which, out: &[f64], t: &[f32], pairs: &[(usize, usize)]) -> f64 {
    match which {
        Which::Mse => {
            out.iter()
                .zip(t)
                .map(|(o, &t)| (o - t as f64).powi(2))
                .sum::<f64>()
                / out.len() as f64
        }
        Which::Ranking => {
            let used: Vec<_> = pairs.iter().filter(|&&(a, b)| t[a] != t[b]).collect();
            used.iter()
                .map(|&&(a, b)| {
                    let y = if t[a] > t[b] { 1.0 } else { 0.0 };
                    let d = out[a] - out[b];
                    d.max(0.0) - d * y + (-d.abs()).exp().ln_1p()
                })
                .sum::<f64>()
                / used.len() as f64
        }
    }
}

/// Relative L2 error of `g` against `fd`; where the reference gradient is zero (the ranking
/// loss does not depend on the last bias: it only compares outputs), the absolute L2 error.
fn rel_l2(g: &[f32], fd: &[f64]) -> f64 {
    let num: f64 = g.iter().zip(fd).map(|(&a, b)| (a as f64 - b).powi(2)).sum();
    let den: f64 = fd.iter().map(|b| b * b).sum();
    if den < 1e-20 {
        return num.sqrt();
    }
    (num / den).sqrt()
}

fn data(n: usize, d: usize, seed: u32) -> Vec<f32> {
    // A fixed, irregular pattern in about [−2, 2].
    (0..n * d)
        .map(|i| {
            let v = (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(40_503));
            (v >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

/// Checks every gradient of `m` on (x, t) for `which`; returns the worst relative L2 error
/// and prints them all.
fn check(name: &str, m: &Mlp, x: &[f32], t: &[f32], n: usize, which: Which) -> f64 {
    let pairs = flip_pairs(n);
    let mut trace = Trace::new();
    m.forward_trace(x, n, &mut trace).unwrap();
    let mut g_out = vec![0.0; trace.output().len()];
    match which {
        Which::Mse => {
            mse(trace.output(), t, &mut g_out).unwrap();
        }
        Which::Ranking => {
            let (_, used) = ranking(trace.output(), t, &pairs, &mut g_out).unwrap();
            assert!(used > 0);
        }
    }
    let grads = m.backward(&trace, &g_out, true).unwrap();

    let params: Vec<Vec<f64>> = m
        .parameters()
        .iter()
        .map(|p| p.iter().map(|&v| v as f64).collect())
        .collect();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    // The f64 forward agrees with the f32 one.
    let y64 = forward64(m, &params, &x64, n);
    let fwd_err = rel_l2(trace.output(), &y64);
    assert!(
        fwd_err < 1e-5,
        "{name}: forward differs from the f64 reference by {fwd_err:e}"
    );

    let eval = |p: &[Vec<f64>], x: &[f64]| loss64(which, &forward64(m, p, x, n), t, &pairs);
    let mut worst = 0f64;
    let mut report = Vec::new();
    for (k, g) in grads.slices().iter().enumerate() {
        let mut fd = vec![0.0; g.len()];
        let mut p = params.clone();
        for e in 0..g.len() {
            let v = p[k][e];
            p[k][e] = v + H;
            let lp = eval(&p, &x64);
            p[k][e] = v - H;
            let lm = eval(&p, &x64);
            p[k][e] = v;
            fd[e] = (lp - lm) / (2.0 * H);
        }
        let err = rel_l2(g, &fd);
        report.push(format!(
            "{}{}={err:.1e}",
            if k % 2 == 0 { "W" } else { "b" },
            k / 2
        ));
        worst = worst.max(err);
    }
    let mut fd = vec![0.0; x.len()];
    let mut xp = x64.clone();
    for e in 0..x.len() {
        let v = xp[e];
        xp[e] = v + H;
        let lp = eval(&params, &xp);
        xp[e] = v - H;
        let lm = eval(&params, &xp);
        xp[e] = v;
        fd[e] = (lp - lm) / (2.0 * H);
    }
    let err = rel_l2(&grads.input, &fd);
    report.push(format!("x={err:.1e}"));
    worst = worst.max(err);
    println!("{name}: {}", report.join(" "));
    worst
}

/// 4 → 7 (identity) → 6 (ReLU) → 5 (tanh) → out, with a standardiser: every activation
/// and the input chain rule are on the path.
fn net(output: usize, output_activation: Activation, seed: u64) -> Mlp {
    let spec = MlpSpec {
        input: 4,
        hidden: vec![7, 6, 5],
        hidden_activations: vec![Activation::Identity, Activation::Relu, Activation::Tanh],
        output,
        output_activation,
    };
    let mut m = Mlp::new(spec, seed).unwrap();
    m.set_standardizer(Some(
        Standardizer::new(vec![0.1, -0.2, 0.3, 0.0], vec![1.5, 0.7, 2.0, 1.0]).unwrap(),
    ))
    .unwrap();
    m
}

#[test]
fn mse_gradients_match_finite_differences() {
    let n = 9;
    for (seed, act) in [(1, Activation::Identity), (2, Activation::Sigmoid)] {
        let m = net(3, act, seed);
        let x = data(n, 4, seed as u32);
        let t = data(n, 3, 100 + seed as u32);
        let worst = check(&format!("mse/{act:?}"), &m, &x, &t, n, Which::Mse);
        assert!(worst <= BAR, "worst relative L2 error {worst:e}");
    }
}

#[test]
fn ranking_gradients_match_finite_differences() {
    let n = 10;
    for (seed, act) in [(3, Activation::Sigmoid), (4, Activation::Identity)] {
        let m = net(1, act, seed);
        let x = data(n, 4, seed as u32);
        let mut t = data(n, 1, 200 + seed as u32);
        t[7] = t[2]; // the pair (2, 7) is a tie and must be skipped
        let worst = check(&format!("ranking/{act:?}"), &m, &x, &t, n, Which::Ranking);
        assert!(worst <= BAR, "worst relative L2 error {worst:e}");
    }
}

#[test]
fn pseudo_margin_net_gradients_match_finite_differences_on_a_sample() {
    // The notebook's architecture at reduced width (16 instead of 512) so that every
    // element can be differenced: Linear → Linear → ReLU → Linear → ReLU → Linear → sigmoid.
    let spec = MlpSpec {
        hidden: vec![16, 16, 16],
        ..MlpSpec::pseudo_margin(10)
    };
    let m = Mlp::new(spec, 0).unwrap();
    let n = 6;
    let x = data(n, 10, 9);
    let t = data(n, 1, 10)
        .iter()
        .map(|v| v.abs().sqrt())
        .collect::<Vec<_>>();
    let worst = check("pseudo-margin/mse", &m, &x, &t, n, Which::Mse);
    assert!(worst <= BAR, "worst relative L2 error {worst:e}");
    let worst = check("pseudo-margin/ranking", &m, &x, &t, n, Which::Ranking);
    assert!(worst <= BAR, "worst relative L2 error {worst:e}");
}
