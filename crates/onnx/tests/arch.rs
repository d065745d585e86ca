//! Every architecture fixture made by `scripts/gen_arch_fixtures.py` (small random-initialised
//! torchvision and timm models, each exported by both PyTorch exporters) and
//! `scripts/gen_keras_fixtures.py` (Keras applications converted by tf2onnx at opsets 13 and
//! 18, NHWC input): faultline's logits within 1e-4 of ONNX Runtime's (relative to the largest
//! |logit|), and its input gradient of `Σ w·logits` within 5e-3 L2-relative of PyTorch's or
//! TensorFlow's float64 gradient. Run with `--nocapture` for the table.

use std::path::{Path, PathBuf};

use faultline_engine::Loss;

const LOGIT_TOL: f64 = 1e-4;
const GRAD_TOL: f64 = 5e-3;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch")
}

fn npy_f32(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f32>().unwrap())
}

/// (max |a − b| / max |b|, ‖a − b‖ / ‖b‖).
fn errors(a: &[f32], b: &[f32]) -> (f64, f64) {
    let scale = b.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let worst = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (worst / scale.max(1e-30), (num / den.max(1e-60)).sqrt())
}

/// Logit and gradient errors of one fixture (no gradient error when PyTorch's is zero), or
/// the error faultline gave.
fn check(e: &serde_json::Value) -> Result<(f64, Option<f64>), String> {
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    let (mut model, _) = faultline_onnx::load(&dir().join(s("onnx"))).map_err(|e| e.to_string())?;
    let (xs, x) = npy_f32(&s("input"));
    model
        .prepare([xs[1], xs[2], xs[3]], None)
        .map_err(|e| e.to_string())?;
    let (_, want) = npy_f32(&s("logits"));
    let (ws, w) = npy_f32("weights.npy");
    let k = model.num_classes();
    if k != ws[1] {
        return Err(format!("{k} classes, expected {}", ws[1]));
    }
    let lg = model
        .loss_grad(&x, &Loss::Weights(&w[..xs[0] * k]))
        .map_err(|e| e.to_string())?;
    let (_, grad_ref) = npy_f32(&s("grad"));
    let (logit_err, _) = errors(&lg.logits, &want);
    // The small random SqueezeNet's logits do not depend on its input (its features die
    // before the classifier): PyTorch's gradient is exactly zero, and so must ours be.
    if grad_ref.iter().all(|&g| g == 0.0) {
        return match lg.grad.iter().all(|&g| g == 0.0) {
            true => Ok((logit_err, None)),
            false => Err("PyTorch's gradient is zero, faultline's is not".into()),
        };
    }
    let (_, grad_err) = errors(&lg.grad, &grad_ref);
    Ok((logit_err, Some(grad_err)))
}

#[test]
fn every_architecture_matches_onnx_runtime_and_pytorch() {
    let text = std::fs::read_to_string(dir().join("manifest.json")).unwrap();
    let man: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut failures = Vec::new();
    println!(
        "{:<28} {:>8} {:>12} {:>12}",
        "fixture", "opset", "logit err", "grad err"
    );
    for (key, e) in &man {
        if e["status"] != "ok" {
            println!("{key:<28} not exported: {}", e["status"]);
            continue;
        }
        match check(e) {
            Ok((l, g)) => {
                let gs = g.map_or("zero, both".to_string(), |g| format!("{g:.2e}"));
                println!("{key:<28} {:>8} {l:>12.2e} {gs:>12}", e["opset"]);
                if !(l <= LOGIT_TOL && g.unwrap_or(0.0) <= GRAD_TOL) {
                    failures.push(format!("{key}: logit error {l:.2e}, gradient error {gs}"));
                }
            }
            Err(msg) => {
                println!("{key:<28} refused: {msg}");
                failures.push(format!("{key}: {msg}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The ViT and DeiT fixtures' attention chains (both exporters) become one fused Attention
/// node per layer at load, so the test above checks the fused path against ONNX Runtime.
#[test]
fn vit_attention_is_fused() {
    for arch in ["tv_vit", "timm_vit", "timm_deit"] {
        for ex in ["ts", "dyn"] {
            let path = dir().join(format!("{arch}.{ex}.onnx"));
            let (mut model, _) = faultline_onnx::load(&path).unwrap();
            model.prepare([3, 32, 32], None).unwrap();
            let fused = model
                .graph()
                .nodes()
                .iter()
                .filter(|n| n.op.name() == "Attention")
                .count();
            assert_eq!(
                fused, 2,
                "{arch}.{ex}: {fused} fused attention nodes, 2 layers"
            );
        }
    }
}
