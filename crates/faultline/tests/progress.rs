//! Progress inside a batch: an ensemble reports samples as done when a stage breaks them, not
//! only when the whole batch ends (a 20-image ensemble showed `0/20` for 107 s; issue 24).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use faultline::data::LoadOptions;
use faultline::run::attack::{run, AttackConfig};
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

#[test]
fn an_ensemble_advances_per_sample_within_its_batch() {
    let loaded = load(&Source {
        model: shared("models/mnist/mnist-lenet5-clean.onnx"),
        data: shared("data/mnist/t10k-images-idx3-ubyte.gz"),
        normalization: None,
        load: LoadOptions::default(),
    })
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = AttackConfig {
        preset: Some("standard".into()),
        eps: vec![0.3],
        selection: Selection {
            limit: Some(8),
            subset: Subset::First,
            ..Selection::default()
        },
        batch_size: 8,
        sanity: false,
        ..AttackConfig::default()
    };
    let out = Output {
        dir: tmp.path().join("a"),
        overwrite: false,
        scratch: false,
    };
    let p = Record::default();
    run(&cfg, &loaded, &out, &p).unwrap();
    let events = p.0.into_inner().unwrap();
    // One batch of 8: at ε = 0.3 the clean LeNet-5 breaks at APGD-CE, so the first stage
    // already reports all 8 done, before its message (the batch's end reports only after every
    // stage's message).
    let first_stage = events.iter().position(|e| e == "stage").unwrap();
    assert!(first_stage > 0, "{events:?}");
    assert_eq!(events[first_stage - 1], "advance 8", "{events:?}");
}
