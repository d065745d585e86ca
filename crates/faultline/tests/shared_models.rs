//! Every model under ../shared/models loads and reaches the accuracy that ../shared/README.md
//! states on the shared data (exact counts on 100-image sets; the stated percentage, to its two
//! decimals, on full test sets).

use std::path::{Path, PathBuf};

use faultline::data::{self, LoadOptions};
use faultline::engine::Normalization;
use faultline::eval::evaluate;
use faultline::model::load_model;
use faultline::record::SampleRecord;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(rel)
}

/// Returns (correct, total) of `model` on `data`.
fn accuracy(model: &str, data: &str, norm: Option<(&[f32], &[f32])>) -> (usize, usize) {
    let ds = data::open(&shared(data), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{data}: {e}"));
    let i = ds.info().clone();
    let norm = norm.map(|(m, s)| Normalization {
        mean: m.to_vec(),
        std: s.to_vec(),
    });
    let m = load_model(&shared(model), [i.channels, i.height, i.width], norm)
        .unwrap_or_else(|e| panic!("{model}: {e}"));
    let mut recs: Vec<SampleRecord> = Vec::new();
    let all: Vec<usize> = (0..i.len).collect();
    evaluate(&m.model, ds.as_ref(), &all, 256, |b| {
        recs.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    (
        recs.iter().filter(|r| r.label == r.prediction).count(),
        recs.len(),
    )
}

fn assert_percent(model: &str, data: &str, norm: Option<(&[f32], &[f32])>, stated: f64) {
    let (c, n) = accuracy(model, data, norm);
    let pct = 100.0 * c as f64 / n as f64;
    assert!(
        (pct - stated).abs() < 0.005 + 1e-9,
        "{model}: {pct:.2} % ({c}/{n}), README states {stated} %"
    );
}

const CIFAR100: &str = "data/cifar10/test_batch_first100.bin";
const MNIST: &str = "data/mnist/t10k-images-idx3-ubyte.gz";

#[test]
fn cifar10_resnets_on_the_first_100_test_images() {
    assert_eq!(
        accuracy("models/cifar10/cifar10-resnet20.onnx", CIFAR100, None),
        (94, 100)
    );
    assert_eq!(
        accuracy("models/cifar10/cifar10-resnet32.onnx", CIFAR100, None),
        (92, 100)
    );
}

#[test]
fn dynamo_export_with_external_data_and_fixed_batch_runs_on_batches() {
    // Opset 20, weights in cifar10-resnet20-dynamo.onnx.data, input declared with batch 2:
    // evaluated here in batches of 256 (and a last batch of 100).
    assert_eq!(
        accuracy(
            "models/cifar10/resnet20-dynamo/cifar10-resnet20-dynamo.onnx",
            CIFAR100,
            None
        ),
        (94, 100)
    );
}

#[test]
fn mnist_models_on_the_full_test_set() {
    assert_percent("models/mnist/mnist-lenet5-clean.onnx", MNIST, None, 98.89);
    assert_percent(
        "models/mnist/mnist-lenet5-advtrained.onnx",
        MNIST,
        None,
        98.64,
    );
    assert_percent(
        "models/mnist/mnist-convexadv-robust.onnx",
        MNIST,
        None,
        98.20,
    );
}

#[test]
fn fashion_mnist_model_on_its_test_set() {
    assert_percent(
        "models/fashion-mnist/fashion-mnist-convexadv-robust.onnx",
        "data/fashion-mnist/t10k-images-idx3-ubyte.gz",
        None,
        78.27,
    );
}

#[test]
fn third_party_fixed_batch_one_models() {
    // [1, 784, 1] input: each 28x28 image is laid out as a 784-vector.
    assert_percent(
        "models/third-party-onnx/mnist-net_256x2.onnx",
        MNIST,
        None,
        98.08,
    );
    assert_percent(
        "models/third-party-onnx/Convnet_maxpool.onnx",
        MNIST,
        None,
        97.92,
    );
    // Normalization outside the graph, given to faultline as mean/std.
    let (m, s) = ([0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616]);
    assert_eq!(
        accuracy(
            "models/third-party-onnx/resnet_2b.onnx",
            CIFAR100,
            Some((&m, &s))
        ),
        (77, 100)
    );
    let (m, s) = ([0.485, 0.456, 0.406], [0.225, 0.225, 0.225]);
    assert_eq!(
        accuracy(
            "models/third-party-onnx/cifar_base_kw.onnx",
            CIFAR100,
            Some((&m, &s))
        ),
        (73, 100)
    );
}
