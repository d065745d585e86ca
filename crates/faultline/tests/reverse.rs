//! `reverse` end to end on demo images: run.json has accuracy before and after per condition
//! (clean and a corruption), the true-label descent never lowers accuracy and corrects some
//! samples, the predicted-label one never changes a prediction, and a finished run resumes to
//! the same report.

use std::path::{Path, PathBuf};

use faultline::attacks::registry::Settings;
use faultline::corruption::CorruptionPlan;
use faultline::data::LoadOptions;
use faultline::run::reverse::{self, ReverseConfig, Toward};
use faultline::run::{load, Output, Silent, Source};
use faultline::subset::Selection;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn reverse_reports_before_and_after_per_condition() {
    let loaded = load(&Source {
        model: repo().join("demo/cifar10-resnet20.onnx"),
        data: repo().join("demo/cifar10-test"),
        normalization: None,
        load: LoadOptions::default(),
    })
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plan = CorruptionPlan::parse("gaussian_noise", "5", None, 0, (32, 32)).unwrap();
    for label in [Toward::True, Toward::Predicted] {
        let cfg = ReverseConfig {
            settings: Settings {
                steps: Some(5),
                ..Settings::default()
            },
            label,
            corruptions: Some(plan.clone()),
            selection: Selection {
                limit: Some(20),
                ..Selection::default()
            },
            batch_size: 10,
            ..ReverseConfig::default()
        };
        let out = Output {
            dir: tmp.path().join(label.name()),
            overwrite: false,
            scratch: false,
        };
        let r = reverse::run(&cfg, &loaded, &out, &Silent).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.dir.join("run.json")).unwrap())
                .unwrap();
        for key in ["clean", "gaussian_noise s5"] {
            assert!(v["accuracy_before"][key].is_number(), "{key}: {v}");
            assert!(v["accuracy_after"][key].is_number(), "{key}");
        }
        let lines = std::fs::read_to_string(out.dir.join("samples.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 20 * 4);
        for c in &r.conditions {
            assert_eq!(c.n, 20);
            match label {
                Toward::True => {
                    assert_eq!(c.broken, 0, "{}", c.condition);
                    assert!(c.accuracy_after >= c.accuracy_before);
                    assert!(c.mean_margin_after > c.mean_margin_before);
                }
                Toward::Predicted => {
                    assert_eq!((c.broken, c.corrected), (0, 0), "{}", c.condition);
                }
            }
        }
        // Under heavy noise the demo model errs, and the true-label descent fixes some of it.
        if label == Toward::True {
            assert!(r.conditions.iter().any(|c| c.corrected > 0));
        }
        let again = reverse::run(&cfg, &loaded, &out, &Silent).unwrap();
        assert_eq!(again.accuracy_after, r.accuracy_after);
        assert_eq!(again.runtime.resumed_from, 20);
    }
}
