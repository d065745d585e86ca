//! `weak` scoring: a sample's score does not depend on the batch it is scored in or on the
//! thread count, and the misprediction score is the mean wrong-class confidence of neighbours.

use std::path::{Path, PathBuf};

use faultline::data::LoadOptions;
use faultline::run::weak::{score_batch, Noise, ScoreKind, WeakConfig};
use faultline::run::{load, Source};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn records(
    cfg: &WeakConfig,
    batch: usize,
    threads: usize,
) -> Vec<faultline::run::weak::WeakRecord> {
    let loaded = load(&Source {
        model: repo().join("demo/cifar10-resnet20.onnx"),
        data: repo().join("demo/cifar10-test"),
        normalization: None,
        load: LoadOptions::default(),
    })
    .unwrap();
    let idx: Vec<usize> = (0..10)
        .map(|c| c * 1000 + 3)
        .chain((0..10).map(|c| c * 1000 + 7))
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut out = Vec::new();
        for chunk in idx.chunks(batch) {
            let b = loaded.data.read(chunk).unwrap();
            out.extend(
                score_batch(&loaded.model.model, cfg, &b.images, &b.labels, &b.indices).unwrap(),
            );
        }
        out
    })
}

#[test]
fn scores_do_not_depend_on_batch_size_or_threads() {
    for noise in [Noise::Uniform, Noise::Gaussian] {
        let cfg = WeakConfig {
            q: 6,
            noise,
            ..WeakConfig::default()
        };
        let a = records(&cfg, 20, 2);
        assert_eq!(a, records(&cfg, 3, 2), "batch size changed a score");
        assert_eq!(a, records(&cfg, 7, 1), "thread count changed a score");
        let scored: Vec<_> = a.iter().filter(|r| r.score.is_some()).collect();
        assert!(scored.len() >= 10, "most demo samples are classified right");
        for r in &scored {
            let (s, f) = (r.score.unwrap(), r.flipped.unwrap());
            // Each flipped neighbour contributes a wrong-class probability in (0, 1]: the mean is
            // at most the flipped fraction, and positive exactly when something flipped.
            assert!(s <= f + 1e-12 && (s > 0.0) == (f > 0.0), "{r:?}");
            assert_eq!(r.first_flip_eps.is_some(), f > 0.0);
        }
        // Another seed draws other neighbours.
        let other = records(
            &WeakConfig {
                seed: 1,
                ..cfg.clone()
            },
            20,
            2,
        );
        assert_ne!(a, other);
    }
    // The logit score is the negated clean logit margin.
    let cfg = WeakConfig {
        score: ScoreKind::Logit,
        ..WeakConfig::default()
    };
    for r in records(&cfg, 20, 2) {
        if let Some(s) = r.score {
            assert_eq!(s, -(r.logit_margin as f64));
        }
    }
}
