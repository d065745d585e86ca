//! `calibrate` on a synthetic shift: MNIST digits brightened by a fixed offset break the shared
//! LeNet-5, and a calibrator trained on brightened training digits learns to undo the shift on
//! held-out ones. The written `combined.onnx` is `calibrator.onnx` followed by the model (same
//! logits as running the two in turn), ONNX Runtime agrees with faultline on both files
//! (reference check: `$FAULTLINE_PYTHON` with onnxruntime; skipped without it unless
//! `FAULTLINE_REFERENCE_CHECKS=required`), and a finished run resumes to the same report.

use std::path::{Path, PathBuf};

use faultline::data::{Dataset, LoadOptions, MemoryDataset};
use faultline::model::load_model;
use faultline::run::calibrate::{self, CalibrateConfig};
use faultline::run::finetune::Validation;
use faultline::run::{DataCard, Loaded, Output, Silent};
use faultline::subset::Selection;

#[path = "../../onnx/tests/ort/mod.rs"]
mod ort;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

const SHIFT: f32 = 0.5;

/// MNIST test digits `range`, brightened by [`SHIFT`] (clipped at 1).
fn shifted(range: std::ops::Range<usize>, name: &str) -> MemoryDataset {
    let mnist = faultline::data::open(
        &shared().join("data/mnist/t10k-images-idx3-ubyte.gz"),
        &LoadOptions::default(),
    )
    .unwrap();
    let idx: Vec<usize> = range.collect();
    let b = mnist.read(&idx).unwrap();
    let images = b.images.iter().map(|v| (v + SHIFT).min(1.0)).collect();
    MemoryDataset::new(
        images,
        b.labels,
        [1, 28, 28],
        mnist.info().class_names.clone(),
        PathBuf::from(name),
    )
    .unwrap()
}

fn model_path() -> PathBuf {
    shared().join("models/mnist/mnist-lenet5-clean.onnx")
}

fn loaded(data: MemoryDataset) -> Loaded {
    let model = load_model(&model_path(), [1, 28, 28], None).unwrap();
    Loaded::bind(
        model,
        Box::new(data),
        &model_path(),
        Path::new("<brightened train digits>"),
        &LoadOptions::default(),
    )
    .unwrap()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs() / scale))
}

#[test]
fn a_calibrator_learns_to_undo_a_brightness_shift() {
    let test_data = shifted(1000..1400, "<brightened test digits>");
    let test = Validation {
        card: DataCard::of(&test_data, Path::new("<brightened test digits>")),
        data: &test_data,
    };
    let cfg = CalibrateConfig {
        seen: vec!["gaussian_blur".into()],
        unseen: vec!["contrast".into()],
        severities: vec![1],
        // Train on the shift alone.
        corrupt_prob: 0.0,
        eps: 0.6,
        width: 4,
        blocks: 1,
        epochs: 4,
        batch_size: 50,
        lr: 0.01,
        selection: Selection::default(),
        test_limit: None,
        quantized: None,
        seed: 1,
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = Output {
        dir: tmp.path().join("cal"),
        overwrite: false,
        scratch: false,
    };
    let r = calibrate::run(
        &cfg,
        loaded(shifted(0..1000, "train")),
        &test,
        &out,
        &Silent,
    )
    .unwrap();
    let m = &r.models[0];
    eprintln!(
        "shifted digits: {:.3} without, {:.3} with the calibrator",
        m.clean.without, m.clean.with
    );
    // The shift breaks the model; the calibrator restores most of it on held-out digits.
    // (Measured: 72.75 % without, 95.5 % with.)
    assert!(m.clean.without < 0.8, "{:?}", m.clean);
    assert!(m.clean.with > 0.93, "{:?}", m.clean);
    assert!(m.clean.gain() > 0.15, "{:?}", m.clean);

    // combined.onnx is calibrator.onnx then the model.
    let x: Vec<f32> = test_data.read(&(0..8).collect::<Vec<_>>()).unwrap().images;
    let combined = load_model(&m.combined, [1, 28, 28], None).unwrap();
    let mut g = faultline::onnx::load(&m.calibrator).unwrap().0;
    g.prepare([1, 28, 28], None).unwrap();
    let calibrated = g.logits(&x).unwrap();
    assert_eq!(calibrated.len(), x.len());
    let frozen = load_model(&model_path(), [1, 28, 28], None).unwrap();
    let z = combined.model.logits(&x).unwrap();
    let z2 = frozen.model.logits(&calibrated).unwrap();
    assert!(max_rel(&z, &z2) < 1e-5, "{}", max_rel(&z, &z2));
    // The calibrator moves each pixel by at most ε and stays in [0, 1].
    for (a, b) in calibrated.iter().zip(&x) {
        assert!((a - b).abs() <= cfg.eps + 1e-6 && (0.0..=1.0).contains(a));
    }
    // ONNX Runtime reads both files (after the onnx checker) and computes the same.
    if let Some(o) = ort::outputs(&m.combined, &x, &[8, 1, 28, 28]) {
        assert!(max_rel(&o, &z) < 1e-4, "combined: {}", max_rel(&o, &z));
    }
    if let Some(o) = ort::outputs(&m.calibrator, &x, &[8, 1, 28, 28]) {
        assert!(
            max_rel(&o, &calibrated) < 1e-5,
            "calibrator: {}",
            max_rel(&o, &calibrated)
        );
    }

    // A finished run resumes: nothing is trained or tested again, same figures.
    let again = calibrate::run(
        &cfg,
        loaded(shifted(0..1000, "train")),
        &test,
        &out,
        &Silent,
    )
    .unwrap();
    assert_eq!(again.models[0].clean, m.clean);
    assert_eq!(again.models[0].families[0].accuracy, m.families[0].accuracy);
}

#[test]
fn bad_settings_are_refused() {
    let base = CalibrateConfig::default();
    for (cfg, needle) in [
        (
            CalibrateConfig {
                seen: vec!["fog".into()],
                unseen: vec!["fog".into(), "snow".into()],
                ..base.clone()
            },
            "fog is also a seen family",
        ),
        (
            CalibrateConfig {
                eps: 8.0,
                ..base.clone()
            },
            "--eps",
        ),
        (
            CalibrateConfig {
                seen: vec!["fgo".into()],
                ..base.clone()
            },
            "--seen: unknown corruption 'fgo'",
        ),
        (
            CalibrateConfig {
                width: 0,
                ..base.clone()
            },
            "--width",
        ),
    ] {
        let e = cfg.check().unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
}

#[test]
fn a_quantized_copy_gets_its_own_calibrator_and_the_float_ones_transfer() {
    // The "quantized" model is the float model itself: its calibrator trains exactly as the
    // float one (same seed, same frozen model), and the float calibrator in front of it is the
    // float combined model, so every figure of the second entry must equal the first's.
    let test_data = shifted(1000..1200, "<brightened test digits>");
    let test = Validation {
        card: DataCard::of(&test_data, Path::new("<brightened test digits>")),
        data: &test_data,
    };
    let cfg = CalibrateConfig {
        seen: vec!["gaussian_blur".into()],
        unseen: vec!["contrast".into()],
        severities: vec![1],
        corrupt_prob: 0.0,
        eps: 0.6,
        width: 4,
        blocks: 1,
        epochs: 1,
        batch_size: 50,
        lr: 0.01,
        selection: Selection::default(),
        test_limit: None,
        quantized: Some(model_path()),
        seed: 1,
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = Output {
        dir: tmp.path().join("cal"),
        overwrite: false,
        scratch: false,
    };
    let r = calibrate::run(&cfg, loaded(shifted(0..300, "train")), &test, &out, &Silent).unwrap();
    let (f, q) = (&r.models[0], &r.models[1]);
    assert_eq!(q.name, "quantized");
    assert_ne!(
        f.clean.with, f.clean.without,
        "the calibrator changed predictions"
    );
    assert_eq!(q.clean, f.clean);
    assert_eq!(q.unseen_mean, f.unseen_mean);
    let t = q.float_calibrator.as_ref().unwrap();
    assert_eq!((t.clean, t.unseen_mean), (f.clean.with, f.unseen_mean.with));
    assert_eq!(
        std::fs::read(&q.calibrator).unwrap(),
        std::fs::read(&f.calibrator).unwrap()
    );
    assert!(q.calibrator.starts_with(out.dir.join("quantized")));
}
