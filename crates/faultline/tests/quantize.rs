//! `quantize` end to end on the demo ResNet-20: int8 per-channel keeps the accuracy of the
//! float model on demo images and agrees with it on nearly all, 4 bits still runs, one record
//! per sample is written and a killed run resumes to the same records, and ONNX Runtime loads
//! the written QDQ models (8 and 4 bits) and predicts what faultline predicts on them
//! (reference check: `$FAULTLINE_PYTHON` with onnxruntime; skipped without it unless
//! `FAULTLINE_REFERENCE_CHECKS=required`).

use std::path::{Path, PathBuf};

use faultline::data::LoadOptions;
use faultline::run::quantize::{self, QuantizeConfig};
use faultline::run::{load, Loaded, Output, Silent, Source};
use faultline::subset::{read_batches, Selection};

#[path = "../../onnx/tests/ort/mod.rs"]
mod ort;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn demo() -> Loaded {
    load(&Source {
        model: repo().join("demo/cifar10-resnet20.onnx"),
        data: repo().join("demo/cifar10-test"),
        normalization: None,
        load: LoadOptions::default(),
    })
    .unwrap()
}

fn argmax(z: &[f32]) -> usize {
    (0..z.len()).fold(0, |b, j| if z[j] > z[b] { j } else { b })
}

#[test]
fn int8_per_channel_keeps_accuracy_and_onnx_runtime_agrees() {
    let loaded = demo();
    let tmp = tempfile::tempdir().unwrap();
    let n = 60;
    for (bits, per_channel) in [(8u8, true), (4, true)] {
        let cfg = QuantizeConfig {
            bits,
            per_channel,
            calibration: Selection {
                limit: Some(40),
                ..Selection::default()
            },
            test: Selection {
                limit: Some(n),
                ..Selection::default()
            },
            batch_size: 20,
            ..QuantizeConfig::default()
        };
        let out = Output {
            dir: tmp.path().join(format!("q{bits}")),
            overwrite: false,
            scratch: false,
        };
        std::fs::create_dir_all(&out.dir).unwrap();
        let r = quantize::run(&cfg, &loaded, Some(&loaded), &out, &Silent).unwrap();
        assert_eq!(
            r.weights_quantized, 20,
            "19 convolutions and the final Gemm"
        );
        assert_eq!(r.test_samples, n);
        if bits == 8 {
            assert!(r.agreement >= 0.95, "int8 agrees on {}", r.agreement);
            assert!(r.accuracy_change.abs() <= 0.05, "{}", r.accuracy_change);
        } else {
            // 4 bits lose more, but the model is still far above chance.
            assert!(r.quantized_accuracy > 0.3, "{}", r.quantized_accuracy);
        }
        // One record per sample: the quantized prediction, the float one as clean_prediction.
        let path = out.dir.join("samples.jsonl");
        let full = std::fs::read_to_string(&path).unwrap();
        let recs: Vec<serde_json::Value> = full
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(recs.len(), n);
        let share = |f: &dyn Fn(&serde_json::Value) -> bool| {
            recs.iter().filter(|r| f(r)).count() as f64 / n as f64
        };
        assert_eq!(
            share(&|r| r["prediction"] == r["label"]),
            r.quantized_accuracy
        );
        assert_eq!(
            share(&|r| r["clean_prediction"] == r["label"]),
            r.float_accuracy
        );
        assert_eq!(
            share(&|r| r["prediction"] == r["clean_prediction"]),
            r.agreement
        );
        assert_eq!(recs[0]["condition"]["quantized"]["bits"], bits);
        // Killed mid-write after 37 records: the rerun keeps them and ends with the same file.
        let mut cut: String = full.lines().take(37).map(|l| format!("{l}\n")).collect();
        cut.push_str(&full.lines().nth(37).unwrap()[..10]);
        std::fs::write(&path, &cut).unwrap();
        let again = quantize::run(&cfg, &loaded, Some(&loaded), &out, &Silent).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), full);
        assert_eq!(
            (again.agreement, again.quantized_accuracy),
            (r.agreement, r.quantized_accuracy)
        );
        // ONNX Runtime on the written model: the same predictions as faultline's (for 4 bits
        // too, since the biases are written int32: left float, ORT quantized them itself and
        // moved ~15 % of the 4-bit predictions).
        let q = faultline::model::load_model(&r.model_out, [3, 32, 32], None).unwrap();
        let idx: Vec<usize> = loaded.select(&cfg.test).unwrap();
        let b = read_batches(loaded.data.as_ref(), &idx, n)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let ours = q.model.logits(&b.images).unwrap();
        let Some(theirs) = ort::outputs(&r.model_out, &b.images, &[n, 3, 32, 32]) else {
            return;
        };
        let same = (0..n)
            .filter(|&i| {
                argmax(&ours[i * 10..(i + 1) * 10]) == argmax(&theirs[i * 10..(i + 1) * 10])
            })
            .count();
        assert!(
            same * 100 >= n * 95,
            "{bits} bits: ORT agrees on {same}/{n}"
        );
    }
}
