//! `finetune` end to end on the demo ResNet-20 and a few demo images: the exported model is
//! the trained one, runs are reproducible, a killed run resumes to the same model, and bad
//! settings are refused before anything runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use faultline::data::LoadOptions;
use faultline::run::finetune::{self, Adversarial, FinetuneConfig, Validation};
use faultline::run::{load, DataCard, Output, Progress, Silent, Source};
use faultline::subset::Selection;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn source() -> Source {
    Source {
        model: repo().join("demo/cifar10-resnet20.onnx"),
        data: repo().join("demo/cifar10-test"),
        normalization: None,
        load: LoadOptions::default(),
    }
}

fn small() -> FinetuneConfig {
    FinetuneConfig {
        epochs: 2,
        batch_size: 16,
        lr: 1e-3,
        selection: Selection::limit(40),
        val_limit: Some(20),
        ..FinetuneConfig::default()
    }
}

fn out(dir: &Path) -> Output {
    Output {
        dir: dir.to_path_buf(),
        overwrite: false,
        scratch: false,
    }
}

#[test]
fn exported_model_is_the_trained_one_and_runs_are_reproducible() {
    let loaded = load(&source()).unwrap();
    let val_data =
        faultline::data::open(&repo().join("demo/cifar10-test"), &LoadOptions::default()).unwrap();
    let val = Validation {
        data: val_data.as_ref(),
        card: DataCard::of(val_data.as_ref(), &repo().join("demo/cifar10-test")),
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let cfg = small();
    let ra = finetune::run(&cfg, &loaded, Some(&val), &out(&a), &Silent).unwrap();
    let rb = finetune::run(&cfg, &loaded, Some(&val), &out(&b), &Silent).unwrap();
    let (ma, mb) = (
        std::fs::read(a.join("model.onnx")).unwrap(),
        std::fs::read(b.join("model.onnx")).unwrap(),
    );
    assert_eq!(ma, mb, "the same seed gives the same model");
    assert_ne!(
        ma,
        std::fs::read(repo().join("demo/cifar10-resnet20.onnx")).unwrap(),
        "training changed the weights"
    );
    assert_eq!(ra.epochs.len(), 2);
    assert!(ra
        .epochs
        .iter()
        .all(|e| e.loss.is_finite() && e.images_per_second > 0.0));
    // The exported file, loaded afresh, scores what the run reported for its trained model.
    let reloaded = load(&Source {
        model: a.join("model.onnx"),
        ..source()
    })
    .unwrap();
    let idx = faultline::subset::select(
        val_data.as_ref(),
        Some(20),
        faultline::subset::Subset::Stratified,
        0,
    )
    .unwrap();
    let batch = val_data.read(&idx).unwrap();
    let z = reloaded.model.model.logits(&batch.images).unwrap();
    let k = reloaded.model.card.num_classes;
    let right = z
        .chunks(k)
        .zip(&batch.labels)
        .filter(|(row, &y)| row.iter().enumerate().all(|(j, v)| j == y || *v < row[y]))
        .count();
    assert_eq!(Some(right as f64 / 20.0), ra.clean_accuracy);
    assert_eq!(ra.clean_accuracy, rb.clean_accuracy);
    assert!(ra.before.is_some());
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["status"], "complete");
    assert!(run["clean_accuracy"].is_number());
    assert!(a.join("loss.svg").exists());
}

/// Panics (like a kill) when the first epoch's note arrives, after its checkpoint and record
/// are written.
struct KillAfterFirstEpoch(AtomicBool);
impl Progress for KillAfterFirstEpoch {
    fn note(&self, line: &str) {
        if line.starts_with("epoch 1:") && !self.0.swap(true, Ordering::SeqCst) {
            panic!("killed");
        }
    }
}

#[test]
fn a_killed_run_resumes_from_its_last_epoch_to_the_same_model() {
    let loaded = load(&source()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));
    let cfg = FinetuneConfig {
        adversarial: Some(Adversarial {
            attack: "pgd".into(),
            eps: 2.0 / 255.0,
            steps: 2,
            fraction: 0.5,
            warmup: 0.5,
        }),
        val_limit: None,
        ..small()
    };
    finetune::run(&cfg, &loaded, None, &out(&whole), &Silent).unwrap();
    let kill = KillAfterFirstEpoch(AtomicBool::new(false));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        finetune::run(&cfg, &loaded, None, &out(&cut), &kill)
    }));
    assert!(r.is_err(), "the first attempt was killed");
    assert!(!cut.join("model.onnx").exists());
    let resumed = finetune::run(&cfg, &loaded, None, &out(&cut), &Silent).unwrap();
    assert_eq!(resumed.resumed_from, 1);
    assert_eq!(
        std::fs::read(whole.join("model.onnx")).unwrap(),
        std::fs::read(cut.join("model.onnx")).unwrap(),
        "resuming gives the model of the uninterrupted run"
    );
    // Another configuration in the same folder is refused rather than mixed in.
    let other = FinetuneConfig { lr: 2e-3, ..cfg };
    assert!(finetune::run(&other, &loaded, None, &out(&cut), &Silent).is_err());
}

#[test]
fn bad_settings_are_refused_with_the_flag_named() {
    let cases: Vec<(FinetuneConfig, &str)> = vec![
        (
            FinetuneConfig {
                epochs: 0,
                ..small()
            },
            "--epochs",
        ),
        (
            FinetuneConfig {
                lr: f32::NAN,
                ..small()
            },
            "--lr",
        ),
        (
            FinetuneConfig {
                batch_size: 1,
                ..small()
            },
            "--batch-size",
        ),
        (
            FinetuneConfig {
                trades: Some(6.0),
                ..small()
            },
            "--trades",
        ),
        (
            FinetuneConfig {
                train_last: Some(0),
                ..small()
            },
            "--train-last",
        ),
        (
            FinetuneConfig {
                clip_grad_norm: Some(0.0),
                ..small()
            },
            "--clip-grad-norm",
        ),
        (
            FinetuneConfig {
                adversarial: Some(Adversarial {
                    attack: "deepfool".into(),
                    eps: 0.01,
                    steps: 3,
                    fraction: 1.0,
                    warmup: 0.0,
                }),
                ..small()
            },
            "--adversarial",
        ),
        (
            FinetuneConfig {
                adversarial: Some(Adversarial {
                    attack: "pgd".into(),
                    eps: 8.0,
                    steps: 3,
                    fraction: 1.0,
                    warmup: 0.0,
                }),
                ..small()
            },
            "--eps",
        ),
    ];
    for (cfg, flag) in cases {
        let e = cfg.check().expect_err(flag).to_string();
        assert!(e.contains(flag), "{flag}: {e}");
    }
    let loaded = load(&source()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = FinetuneConfig {
        class_weights: Some(vec![1.0; 3]),
        ..small()
    };
    let e = finetune::run(&cfg, &loaded, None, &out(tmp.path()), &Silent)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--class-weights"), "{e}");
}
