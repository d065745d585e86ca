//! Helpers shared by the gradient tests: a deterministic random stream, constants and windows.
#![allow(dead_code)]

use faultline_engine::ops::conv::{AutoPad, Window};
use faultline_engine::ops::{Binary, BinaryKind, Flatten};
use faultline_engine::{GraphBuilder, Loss, Model, Tensor};

/// Deterministic pseudo-random numbers in [-1, 1) (64-bit LCG, high bits).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// Adds constant `name` and returns its name.
pub fn konst(b: &mut GraphBuilder, name: &str, t: Tensor) -> String {
    b.constant(name, t);
    name.to_string()
}

/// A window without auto-padding or ceil mode.
pub fn win(k: [usize; 2], s: [usize; 2], d: [usize; 2], p: [usize; 4]) -> Window {
    Window {
        kernel: k,
        strides: s,
        dilations: d,
        pads: p,
        auto_pad: AutoPad::NotSet,
        ceil_mode: false,
    }
}

/// The convolution geometries every gradient test covers: (name, output channels, groups,
/// window) over a 4-channel input.
pub fn conv_cases() -> Vec<(&'static str, usize, usize, Window)> {
    vec![
        ("conv3x3", 4, 1, win([3, 3], [1, 1], [1, 1], [1, 1, 1, 1])),
        (
            "conv_stride2_asym_pad",
            3,
            1,
            win([3, 2], [2, 2], [1, 1], [0, 1, 2, 0]),
        ),
        (
            "conv_dilated",
            2,
            1,
            win([2, 3], [1, 1], [2, 2], [1, 1, 1, 1]),
        ),
        (
            "conv_grouped",
            4,
            2,
            win([3, 3], [1, 2], [1, 1], [1, 1, 1, 1]),
        ),
        (
            "conv_depthwise",
            4,
            4,
            win([3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        ),
        ("conv_1x1", 5, 1, win([1, 1], [1, 1], [1, 1], [0, 0, 0, 0])),
        (
            "conv_same_upper",
            3,
            1,
            Window {
                auto_pad: AutoPad::SameUpper,
                ..win([3, 3], [2, 2], [1, 1], [0; 4])
            },
        ),
    ]
}

/// `x → Sub(0.5) → body → Flatten` as an unprepared model; `body` draws its constants from a
/// stream seeded by `seed` and the name.
pub fn shifted_model(
    name: &str,
    seed: u64,
    body: &dyn Fn(&mut GraphBuilder, &mut Lcg, &str) -> String,
) -> Model {
    let mut rng = Lcg(seed ^ name.len() as u64);
    let mut b = GraphBuilder::new();
    b.input("x");
    b.constant("half", Tensor::scalar(0.5));
    b.node(
        "shift",
        Box::new(Binary::new(BinaryKind::Sub)),
        &[Some("x"), Some("half")],
        "xs",
    );
    let y = body(&mut b, &mut rng, "xs");
    b.node("flat", Box::new(Flatten { axis: 1 }), &[Some(&y)], "out");
    Model::new(
        b.build("out").unwrap_or_else(|e| panic!("{name}: {e}")),
        vec![],
    )
}

/// `|fd − ⟨g, d⟩| / (‖g‖·‖d‖)`: how far a central finite difference `fd` along `d` is from the
/// analytic directional derivative, relative to the largest it could be.
pub fn directional_error(fd: f64, g: &[f32], d: &[f32]) -> (f64, f64) {
    let an: f64 = g
        .iter()
        .zip(d)
        .map(|(a, b)| (*a as f64) * (*b as f64))
        .sum();
    let gnorm: f64 = g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    let dnorm: f64 = d.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    ((fd - an).abs() / (gnorm * dnorm).max(1e-6), an)
}

/// Builds `x → Sub(0.5) → body → Flatten`, then compares gradients with finite differences.
pub fn check(
    name: &str,
    chw: [usize; 3],
    body: impl Fn(&mut GraphBuilder, &mut Lcg, &str) -> String,
) {
    let mut model = shifted_model(name, 0x5eed, &body);
    let mut rng = Lcg(0x5eed ^ name.len() as u64);
    model
        .prepare(chw, None)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let n = 2;
    let per: usize = chw.iter().product();
    // Inputs stay at least 0.05 away from the shift, so that piecewise-linear operators (ReLU,
    // Clip, Abs) sit away from their kinks; max-pool windows get distinct values.
    let x: Vec<f32> = rng
        .vec(n * per)
        .iter()
        .map(|v| 0.5 + v.signum() * (0.05 + 0.4 * v.abs()))
        .collect();
    let k = model.num_classes();
    let w = rng.vec(n * k);
    let g = model.loss_grad(&x, &Loss::Weights(&w)).unwrap().grad;
    let f = |x: &[f32]| -> f64 {
        let z = model.logits(x).unwrap();
        z.iter()
            .zip(&w)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum()
    };
    for trial in 0..3 {
        let d = rng.vec(n * per);
        let h = 1e-4f32;
        let xp: Vec<f32> = x.iter().zip(&d).map(|(a, b)| a + h * b).collect();
        let xm: Vec<f32> = x.iter().zip(&d).map(|(a, b)| a - h * b).collect();
        let fd = (f(&xp) - f(&xm)) / (2.0 * h as f64);
        let (err, an) = directional_error(fd, &g, &d);
        assert!(
            err < 2e-3,
            "{name} trial {trial}: finite difference {fd} vs analytic {an} (relative {err:.2e})"
        );
    }
}
