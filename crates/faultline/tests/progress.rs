//! Progress inside a batch: an ensemble reports samples as done when a stage breaks them, and a
//! single attack as its samples break and its iterations pass, not only when the whole batch
//! ends (a 20-image ensemble showed `0/20` for 107 s; issue 24).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use faultline::data::LoadOptions;
use faultline::run::attack::{run, AttackConfig};
use faultline::run::Loaded;
use faultline::run::{load, Output, Progress, Source};
use faultline::subset::{Selection, Subset};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(rel)
}

#[derive(Default)]
struct Record(Mutex<Vec<String>>);

impl Progress for Record {
    fn advance(&self, done: usize) {
        self.0.lock().unwrap().push(format!("advance {done}"));
    }
    fn message(&self, msg: &str) {
        if msg.contains(" after ") {
            self.0.lock().unwrap().push("stage".into());
        }
    }
}

fn lenet() -> Loaded {
    load(&Source {
        model: shared("models/mnist/mnist-lenet5-clean.onnx"),
        data: shared("data/mnist/t10k-images-idx3-ubyte.gz"),
        normalization: None,
        load: LoadOptions::default(),
    })
    .unwrap()
}

/// The progress events of `cfg` on one batch of the first 8 LeNet-5 images.
fn events(loaded: &Loaded, cfg: AttackConfig) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = AttackConfig {
        selection: Selection {
            limit: Some(8),
            subset: Subset::First,
            ..Selection::default()
        },
        batch_size: 8,
        sanity: false,
        ..cfg
    };
    let out = Output {
        dir: tmp.path().join("a"),
        overwrite: false,
        scratch: false,
    };
    let p = Record::default();
    run(&cfg, loaded, &out, &p).unwrap();
    p.0.into_inner().unwrap()
}

#[test]
fn an_ensemble_advances_per_sample_within_its_batch() {
    let cfg = AttackConfig {
        preset: Some("standard".into()),
        eps: vec![0.3],
        ..AttackConfig::default()
    };
    let events = events(&lenet(), cfg);
    // One batch of 8: at ε = 0.3 the clean LeNet-5 breaks at APGD-CE, so the first stage
    // already reports all 8 done, before its message (the batch's end reports only after every
    // stage's message).
    let first_stage = events.iter().position(|e| e == "stage").unwrap();
    assert!(first_stage > 0, "{events:?}");
    assert_eq!(events[first_stage - 1], "advance 8", "{events:?}");
}

/// The `advance` counts of a single attack `name` (with `steps` iterations) on one batch of 8
/// LeNet-5 images at radius `eps` (the attack's default norm).
fn advances(loaded: &Loaded, name: &str, steps: Option<usize>, eps: Vec<f32>) -> Vec<usize> {
    let mut cfg = AttackConfig {
        attack: name.into(),
        eps,
        ..AttackConfig::default()
    };
    cfg.settings.steps = steps;
    events(loaded, cfg)
        .iter()
        .filter_map(|e| e.strip_prefix("advance ")?.parse().ok())
        .collect()
}

#[test]
fn a_single_attack_advances_within_its_batch() {
    let loaded = lenet();
    // At ε = 0.1 the clean LeNet-5's samples break at different iterations and some hold: the
    // bar moves through intermediate counts before the batch's end reports all 8.
    for (name, steps, eps) in [
        ("apgd-t", Some(20), vec![0.1]),
        ("pgd", Some(20), vec![0.1]),
        ("square", Some(200), vec![0.1]),
        ("fab-t", Some(20), vec![0.1]),
        ("deepfool", None, vec![]),
        ("cw", Some(20), vec![]),
    ] {
        let a = advances(&loaded, name, steps, eps);
        let mut within: Vec<usize> = a.iter().copied().filter(|&d| d < 8).collect();
        assert!(within.windows(2).all(|w| w[0] < w[1]), "{name}: {a:?}");
        within.dedup();
        assert!(within.len() >= 2, "{name}: {a:?}");
        assert_eq!(a.last(), Some(&8), "{name}: {a:?}");
    }
}

#[test]
fn margins_advance_within_their_batch() {
    use faultline::run::margins::{self, MarginsConfig};
    let loaded = lenet();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = MarginsConfig {
        selection: Selection {
            limit: Some(8),
            subset: Subset::First,
            ..Selection::default()
        },
        batch_size: 8,
        bootstrap: 10,
        ..MarginsConfig::default()
    };
    cfg.settings.steps = Some(20);
    cfg.settings.restarts = Some(2);
    let out = Output {
        dir: tmp.path().join("m"),
        overwrite: false,
        scratch: false,
    };
    let p = Record::default();
    margins::run(&cfg, &loaded, &out, &p).unwrap();
    let a: Vec<usize> =
        p.0.into_inner()
            .unwrap()
            .iter()
            .filter_map(|e| e.strip_prefix("advance ")?.parse().ok())
            .collect();
    // FAB's iterations move the bar before the batch of 8 ends (before: only 8, at its end).
    let within: Vec<usize> = a.iter().copied().filter(|&d| d < 8).collect();
    assert!(
        within.len() >= 2 && within.windows(2).all(|w| w[0] < w[1]),
        "{a:?}"
    );
    assert_eq!(a.last(), Some(&8), "{a:?}");
}
