//! `metrics` end to end on a few demo images with tiny budgets: every key of the suite is
//! written, a model used as its own baseline has mCE = 1 and mFR = 1, and reading the white-box
//! images of an `attack --save-adv` run gives the attack's robust accuracy as aaw; a partial
//! `--suite` computes the same numbers for the keys it keeps.

use std::path::{Path, PathBuf};

use faultline::attacks::registry::Settings;
use faultline::corruption::CorruptionKind;
use faultline::data::LoadOptions;
use faultline::metrics::boundary::BoundaryParams;
use faultline::metrics::flip::FlipParams;
use faultline::metrics::{Suite, SUITE};
use faultline::run::attack::{self, AttackConfig};
use faultline::run::metrics::{self, MetricsConfig};
use faultline::run::{load, Output, Silent, Source};
use faultline::subset::Selection;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn config(limit: usize) -> MetricsConfig {
    let model = repo().join("demo/cifar10-resnet20.onnx");
    MetricsConfig {
        settings: Settings {
            steps: Some(3),
            ..Settings::default()
        },
        black_box_queries: 5,
        defended: Some(model.clone()),
        baseline: Some(model),
        boundary: BoundaryParams {
            directions: 2,
            ebd2_max_steps: 30,
            ..BoundaryParams::default()
        },
        boundary_limit: 2,
        flip: FlipParams { frames: 3, seed: 1 },
        corruptions: vec![CorruptionKind::ALL[0]],
        severities: vec![5],
        selection: Selection::first(Some(limit)),
        batch_size: 3,
        ..MetricsConfig::default()
    }
}

#[test]
fn every_key_is_written_and_self_comparisons_are_one() {
    let loaded = load(&Source {
        model: repo().join("demo/cifar10-resnet20.onnx"),
        data: repo().join("demo/cifar10-test"),
        normalization: None,
        load: LoadOptions::default(),
    })
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = |name: &str| Output {
        dir: tmp.path().join(name),
        overwrite: false,
        scratch: false,
    };
    let r = metrics::run(&config(5), &loaded, &out("m"), &Silent).unwrap();
    for m in SUITE {
        assert!(r.metrics.contains_key(m.key), "{} missing", m.key);
    }
    assert_eq!(r.metrics.len(), SUITE.len());
    // The model against itself: nothing rectified or sacrificed, identical outputs.
    assert_eq!(r.metrics["cav"], 0.0);
    assert_eq!(r.metrics["crr"], 0.0);
    assert_eq!(r.metrics["ccv"], 0.0);
    // Its own baseline: every corruption error ratio is 1 (or undefined).
    if let Some(m) = r.metrics["mce"].as_f64() {
        assert!((m - 1.0).abs() < 1e-12);
    }
    if let Some(m) = r.metrics["mfr"].as_f64() {
        assert!((m - 1.0).abs() < 1e-12);
    }
    let (aaw, asr) = (
        r.metrics["aaw"].as_f64().unwrap(),
        r.metrics["asr"].as_f64().unwrap(),
    );
    assert!((aaw + asr - 1.0).abs() < 1e-12);
    let nc = r.metrics["nc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&nc));
    assert!(r.metrics["neuron_sensitivity"]["mean"].as_f64().unwrap() >= 0.0);
    for (k, v) in &r.metrics {
        assert!(
            !v.is_null() || r.notes.contains_key(k),
            "{k} is null without a note"
        );
    }

    // The same white-box images read from an attack run.
    let a = AttackConfig {
        settings: Settings {
            steps: Some(3),
            ..Settings::default()
        },
        selection: Selection::first(Some(5)),
        sanity: false,
        save_adv: true,
        batch_size: 3,
        ..AttackConfig::default()
    };
    let ar = attack::run(&a, &loaded, &out("a"), &Silent).unwrap();
    let cfg = MetricsConfig {
        from: Some(tmp.path().join("a")),
        ..config(5)
    };
    let r2 = metrics::run(&cfg, &loaded, &out("m2"), &Silent).unwrap();
    let robust = ar.robust_accuracy.as_f64().unwrap();
    assert!((r2.metrics["aaw"].as_f64().unwrap() - robust).abs() < 1e-12);
    assert_eq!(r2.metrics["ca"], r.metrics["ca"]);

    // A partial suite: the keys it selects equal the full run's, the others are null with a
    // note, and a defended model it would not use is refused.
    let partial = MetricsConfig {
        suite: Suite::parse("behaviour,ebd").unwrap(),
        defended: None,
        baseline: None,
        ..config(5)
    };
    let r3 = metrics::run(&partial, &loaded, &out("m3"), &Silent).unwrap();
    for m in SUITE.iter().filter(|m| m.module != "defended") {
        let selected = m.module == "behaviour" || m.key == "ebd";
        if selected {
            assert_eq!(r3.metrics[m.key], r.metrics[m.key], "{}", m.key);
        } else {
            assert!(r3.metrics[m.key].is_null(), "{} computed", m.key);
            assert!(r3.notes[m.key].contains("--suite"), "{}", m.key);
        }
    }
    assert!(
        r3.layers.is_empty(),
        "no layer is tapped without coverage or neuron keys"
    );
    let refused = MetricsConfig {
        suite: Suite::parse("coverage").unwrap(),
        ..config(5)
    };
    let e = metrics::run(&refused, &loaded, &out("m4"), &Silent).unwrap_err();
    assert!(e.to_string().contains("--defended"), "{e}");
}

#[test]
fn suites_parse_keys_modules_and_the_paper_list() {
    let paper = Suite::parse("paper").unwrap();
    assert!(paper.has("kmnc") && paper.has("mfr") && !paper.has("nc") && !paper.has("wbd"));
    let all = Suite::parse("all").unwrap();
    assert!(SUITE.iter().all(|m| all.has(m.key)));
    let s = Suite::parse("boundary, aaw").unwrap();
    assert!(s.has("ebd") && s.has("ebd2") && s.has("wbd") && s.has("eni") && s.has("aaw"));
    assert!(!s.has("ca") && s.module("behaviour") && !s.module("coverage"));
    let e = Suite::parse("aaw,coverge").unwrap_err();
    assert!(e.contains("coverge") && e.contains("coverage"), "{e}");
}
