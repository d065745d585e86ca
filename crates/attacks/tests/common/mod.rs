//! Helpers shared by the attack tests: a linear classifier with an exact minimal perturbation,
//! and access to the shared models, data and reference outputs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use faultline_attacks::Norm;
use faultline_data::{open, LoadOptions};
use faultline_engine::ops::{Flatten, Gemm};
use faultline_engine::{GraphBuilder, Model, Tensor};

/// `z = Wx + b` over `d` inputs and `k` classes with pseudo-random weights; returns the model, W
/// (k × d, row-major) and b.
pub fn linear(d: usize, k: usize, seed: u64) -> (Model, Vec<f32>, Vec<f32>) {
    linear_image([1, 1, d], k, seed)
}

/// [`linear`] over images of shape C·H·W (`d = C·H·W`), for attacks that use the image layout.
pub fn linear_image(shape: [usize; 3], k: usize, seed: u64) -> (Model, Vec<f32>, Vec<f32>) {
    let d: usize = shape.iter().product();
    let mut s = seed;
    let mut r = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / 16777216.0) - 0.5
    };
    let w: Vec<f32> = (0..d * k).map(|_| r()).collect();
    let b: Vec<f32> = (0..k).map(|_| 0.1 * r()).collect();
    let mut g = GraphBuilder::new();
    g.input("x");
    g.constant("w", Tensor::from_f32(vec![k, d], w.clone()).unwrap());
    g.constant("b", Tensor::from_f32(vec![k], b.clone()).unwrap());
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
    m.prepare(shape, None).unwrap();
    (m, w, b)
}

/// `n` images of `d` values in `0.5 ± spread/2` (pseudo-random, fixed by `seed`).
pub fn images(n: usize, d: usize, seed: u64, spread: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n * d)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            0.5 + spread * ((s >> 40) as f32 / 16777216.0 - 0.5)
        })
        .collect()
}

/// The exact minimal distance for each sample, and the predicted labels.
pub fn exact(
    w: &[f32],
    b: &[f32],
    x: &[f32],
    d: usize,
    k: usize,
    norm: Norm,
) -> (Vec<f64>, Vec<usize>) {
    let mut dist = Vec::new();
    let mut labels = Vec::new();
    for xi in x.chunks(d) {
        let z: Vec<f64> = (0..k)
            .map(|c| {
                b[c] as f64
                    + (0..d)
                        .map(|j| w[c * d + j] as f64 * xi[j] as f64)
                        .sum::<f64>()
            })
            .collect();
        let y = (0..k).fold(0, |m, c| if z[c] > z[m] { c } else { m });
        let best = (0..k)
            .filter(|&c| c != y)
            .map(|c| {
                let diff = (0..d).map(|j| (w[y * d + j] - w[c * d + j]) as f64);
                let dn = match norm {
                    Norm::L2 => diff.map(|v| v * v).sum::<f64>().sqrt(),
                    Norm::Linf => diff.map(f64::abs).sum::<f64>(),
                    // Exact with the box: the greedy fill below.
                    Norm::L1 => {
                        let a: Vec<f64> = diff.map(|v| -v).collect();
                        return l1_halfspace(&a, xi, z[y] - z[c]).map_or(f64::INFINITY, |r| r.0);
                    }
                };
                (z[y] - z[c]) / dn
            })
            .fold(f64::INFINITY, f64::min);
        dist.push(best);
        labels.push(y);
    }
    (dist, labels)
}

/// The smallest L1 move `δ` with `⟨a, δ⟩ ≥ need` and `x + δ ∈ [0, 1]^d`, and its norm (`None`
/// when the box cannot reach the half-space): a linear programme solved by filling the
/// coordinates in decreasing `|a_i|` (most gain per unit of L1), each up to its box edge.
pub fn l1_halfspace(a: &[f64], x: &[f32], need: f64) -> Option<(f64, Vec<f64>)> {
    let mut delta = vec![0.0; a.len()];
    if need <= 0.0 {
        return Some((0.0, delta));
    }
    let mut order: Vec<usize> = (0..a.len()).filter(|&i| a[i] != 0.0).collect();
    order.sort_by(|&i, &j| a[j].abs().total_cmp(&a[i].abs()));
    let (mut left, mut norm) = (need, 0.0);
    for i in order {
        let room = if a[i] > 0.0 {
            1.0 - x[i] as f64
        } else {
            x[i] as f64
        };
        let m = (left / a[i].abs()).min(room);
        delta[i] = m * a[i].signum();
        norm += m;
        left -= m * a[i].abs();
        if left <= 1e-15 * need {
            return Some((norm, delta));
        }
    }
    None
}

pub fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(rel)
}

pub fn npy<T: npyz::Deserialize>(rel: &str) -> Vec<T> {
    let bytes = std::fs::read(shared(&format!("reference/attacks/{rel}"))).unwrap();
    npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<T>()
        .unwrap()
}

pub fn setup(model: &str, data: &str, n: usize) -> (Model, Vec<f32>, Vec<usize>) {
    let ds = open(&shared(data), &LoadOptions::default()).unwrap();
    let i = ds.info().clone();
    let (mut m, _) = faultline_onnx::load(&shared(model)).unwrap();
    m.prepare([i.channels, i.height, i.width], None).unwrap();
    let b = ds.batches(n, 0..n).unwrap().next().unwrap().unwrap();
    (m, b.images, b.labels)
}
