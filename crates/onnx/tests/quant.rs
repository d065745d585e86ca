//! Quantized models made by ONNX Runtime's own tool (`tests/fixtures/quant/make.py`:
//! `quantize_static` in the QDQ and QOperator formats, per tensor and per channel, int8 and
//! uint8, QDQ with int4 weights and int8 or int4 activations, and a hand-built
//! ConvInteger/MatMulInteger graph) give ONNX Runtime's outputs, which
//! the script saved beside each model. The QOperator and integer graphs compute exactly what
//! ORT's integer kernels compute; in QDQ graphs ORT fuses DQ → Conv → Q into its integer
//! QLinearConv while faultline runs the float Conv on the dequantized values, so a value may
//! land one quantization step away. Straight-through gradients flow through all of them.

use std::path::{Path, PathBuf};

use faultline_engine::{Loss, Model};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/quant")
        .join(name)
}

fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = f.shape().iter().map(|&d| d as usize).collect();
    (shape, f.into_vec::<f32>().unwrap())
}

fn load(name: &str) -> Model {
    let (mut m, _) = faultline_onnx::load(&fixture(&format!("{name}.onnx")))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    m.prepare([2, 6, 6], None).unwrap();
    m
}

/// faultline's outputs and ORT's for fixture `name`.
fn outputs(name: &str) -> (Vec<f32>, Vec<f32>) {
    let (_, x) = npy("input.npy");
    let (_, want) = npy(&format!("{name}.out.npy"));
    (load(name).logits(&x).unwrap(), want)
}

#[test]
fn qoperator_and_integer_models_give_onnx_runtimes_outputs_exactly() {
    for name in ["qop_tensor", "qop_channel", "integer"] {
        let (got, want) = outputs(name);
        assert_eq!(got.len(), want.len(), "{name}");
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn qdq_models_give_onnx_runtimes_outputs_within_one_quantization_step() {
    for name in [
        "qdq_tensor",
        "qdq_channel",
        "qdq_u8",
        "qdq_w4a8",
        "qdq_int4",
    ] {
        let (got, want) = outputs(name);
        // The output's quantization step: the smallest gap between ORT's distinct values
        // bounds it from above.
        let mut v = want.clone();
        v.sort_by(f32::total_cmp);
        v.dedup();
        let step = v
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(f32::INFINITY, f32::min);
        let exact = got.iter().zip(&want).filter(|(a, b)| a == b).count();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= step * 1.001,
                "{name} output {i}: faultline {a}, ORT {b} (step {step})"
            );
        }
        assert!(
            exact * 10 >= want.len() * 9,
            "{name}: only {exact}/{} exact",
            want.len()
        );
        let (_, f) = outputs("float");
        let far = got
            .iter()
            .zip(&f)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            far > 0.0,
            "{name}: identical to the float model, so nothing was quantized"
        );
    }
}

#[test]
fn straight_through_gradients_flow_through_quantized_models() {
    let (_, x) = npy("input.npy");
    // (Not the integer graph: its second QuantizeLinear saturates nearly every value by design,
    // which rightly stops the straight-through gradient.)
    for name in ["qdq_tensor", "qdq_channel", "qop_channel"] {
        let m = load(name);
        let k = m.num_classes();
        let labels: Vec<usize> = (0..x.len() / 72).map(|i| i % k).collect();
        let r = m
            .loss_grad(&x, &Loss::CrossEntropy { labels: &labels })
            .unwrap();
        assert!(r.grad.iter().all(|g| g.is_finite()), "{name}");
        let nonzero = r.grad.iter().filter(|g| **g != 0.0).count();
        assert!(
            nonzero * 2 > r.grad.len(),
            "{name}: {nonzero}/{} non-zero",
            r.grad.len()
        );
    }
}
