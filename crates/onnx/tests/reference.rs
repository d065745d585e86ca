//! Logits, input gradients and penultimate features against the float64 PyTorch reference in
//! `../shared/reference/engine` (see its README for how they were produced).
//! Logits: relative error ≤ 1e-5 of the largest |logit|; gradients: L2-relative error ≤ 5e-3
//! (ReLU kinks make elementwise comparison meaningless, see ../shared/docs/engine-benchmark.md).

use std::path::{Path, PathBuf};

use faultline_engine::{Loss, Model};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(rel)
}

fn npy_f64(rel: &str) -> (Vec<u64>, Vec<f64>) {
    let bytes = std::fs::read(shared(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f64>().unwrap())
}

fn npy_u8(rel: &str) -> (Vec<u64>, Vec<u8>) {
    let bytes = std::fs::read(shared(rel)).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<u8>().unwrap())
}

fn npy_i64(rel: &str) -> Vec<i64> {
    let bytes = std::fs::read(shared(rel)).unwrap();
    npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<i64>()
        .unwrap()
}

fn rel_l2(a: &[f32], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

struct Case {
    model: Model,
    images: Vec<f32>,
    labels: Vec<usize>,
    prefix: String,
}

fn case(onnx: &str, prefix: &str) -> Case {
    let (mut model, _) = faultline_onnx::load(&shared(onnx)).unwrap();
    let (shape, u8s) = npy_u8(&format!("reference/engine/{prefix}_inputs_u8.npy"));
    let chw = [shape[1] as usize, shape[2] as usize, shape[3] as usize];
    model.prepare(chw, None).unwrap();
    let images = u8s.iter().map(|&v| v as f32 / 255.0).collect();
    let labels = npy_i64(&format!("reference/engine/{prefix}_labels.npy"))
        .iter()
        .map(|&v| v as usize)
        .collect();
    Case {
        model,
        images,
        labels,
        prefix: prefix.to_string(),
    }
}

fn check(onnx: &str, prefix: &str, exact_grad: bool) {
    let c = case(onnx, prefix);
    let (_, want) = npy_f64(&format!("reference/engine/{}_logits_f64.npy", c.prefix));
    let got = c.model.logits(&c.images).unwrap();
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(&want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(
        worst / scale <= 1e-5,
        "{prefix}: logits off by {worst} (scale {scale})"
    );

    let f = c.model.forward(&c.images).unwrap();
    let (_, g_ce) = f
        .loss_grad(&Loss::CrossEntropy { labels: &c.labels })
        .unwrap();
    let (_, want_ce) = npy_f64(&format!(
        "reference/engine/{}_grad_ce_sum_f64.npy",
        c.prefix
    ));
    let e_ce = rel_l2(&g_ce, &want_ce);
    let (_, g_m) = f.loss_grad(&Loss::Margin { labels: &c.labels }).unwrap();
    let (_, want_m) = npy_f64(&format!(
        "reference/engine/{}_grad_margin_f64.npy",
        c.prefix
    ));
    let e_m = rel_l2(&g_m, &want_m);
    eprintln!(
        "{prefix}: logits rel err {:.2e}, grad CE L2-rel {e_ce:.2e}, grad margin L2-rel {e_m:.2e}",
        worst / scale
    );
    if exact_grad {
        assert!(
            e_ce <= 5e-3 && e_m <= 5e-3,
            "{prefix}: gradient L2-relative errors {e_ce} / {e_m}"
        );
    }

    let pen = f.tap("penultimate").unwrap();
    let (pshape, want_p) = npy_f64(&format!(
        "reference/engine/{}_penultimate_f64.npy",
        c.prefix
    ));
    assert_eq!(pen.shape()[..2], [pshape[0] as usize, pshape[1] as usize]);
    let e_p = rel_l2(pen.as_f32().unwrap(), &want_p);
    assert!(e_p <= 1e-5, "{prefix}: penultimate L2-relative error {e_p}");
}

#[test]
fn resnet20_matches_pytorch_float64() {
    check(
        "models/cifar10/cifar10-resnet20.onnx",
        "cifar10-resnet20",
        true,
    );
}

#[test]
fn convexadv_matches_pytorch_float64() {
    check(
        "models/mnist/mnist-convexadv-robust.onnx",
        "mnist-convexadv-robust",
        true,
    );
}

#[test]
fn lenet5_matches_pytorch_float64() {
    // Max-pool ties route the gradient to the first maximal element, like PyTorch's CPU kernel,
    // so even lenet5's tie-ridden gradients must agree.
    check(
        "models/mnist/mnist-lenet5-clean.onnx",
        "mnist-lenet5-clean",
        true,
    );
}
