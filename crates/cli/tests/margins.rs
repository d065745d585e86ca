//! `faultline margins` end to end on the MNIST LeNet-5: headline keys, plots, per-sample records
//! whose margins re-check, the pseudo-margin, resuming after a kill, and clear errors.

mod util;

use util::{assert_clear_error, json, lines, run, shared, stderr, stdout};

#[test]
fn deepfool_margins_report_consistency_detection_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist");
    let args = [
        "margins",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "80",
        "--attack",
        "deepfool",
        "--norm",
        "l2",
        "--eps",
        "1.0",
        "--batch-size",
        "30",
        "--bootstrap",
        "50",
        "--pseudo-margin",
        "features",
        "--epochs",
        "30",
        "--lr",
        "1e-3",
        "--threads",
        "2",
        "--out",
        "m",
    ];
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in ["logit_margin", "feature_margin", "pseudo_margin", "Kendall"] {
        assert!(out.contains(needle), "{out}");
    }
    let r = json(&tmp.path().join("m/run.json"));
    let tau = r["kendall_tau"].as_f64().unwrap();
    assert!(tau > 0.3 && tau <= 1.0, "τ = {tau}");
    let auroc = r["auroc"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&auroc), "AUROC {auroc}");
    assert!(r["aupr"].is_number() && r["fpr_at_95_tpr"].is_number());
    assert_eq!(r["pseudo_margin"]["input"], "features");
    assert_eq!(
        r["pseudo_margin"]["fit_samples"].as_u64().unwrap()
            + r["pseudo_margin"]["eval_samples"].as_u64().unwrap(),
        80
    );
    for svg in ["margins_scatter.svg", "roc.svg"] {
        let s = std::fs::read_to_string(tmp.path().join("m").join(svg)).unwrap();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    }
    assert!(tmp.path().join("m/pseudo_margin.safetensors").exists());
    let recs = lines(&tmp.path().join("m/samples.jsonl"));
    assert_eq!(recs.len(), 80);
    for rec in &recs {
        assert!(rec["attacked"].as_bool().unwrap());
        // A margin is reported only with a changed prediction; the features were kept.
        if rec["input_margin"].is_number() {
            assert_ne!(rec["adv_prediction"], rec["prediction"], "{rec}");
        }
        let dim = recs[0]["features"].as_array().unwrap().len();
        assert!(dim > 10);
        assert_eq!(rec["features"].as_array().unwrap().len(), dim);
        assert_eq!(rec["logits"].as_array().unwrap().len(), 10);
    }
    // Kill after two batches (records are appended a batch at a time) and half a line: the
    // rerun drops the torn line, resumes and ends with identical records.
    let full = std::fs::read_to_string(tmp.path().join("m/samples.jsonl")).unwrap();
    let mut cut: String = full.lines().take(60).map(|l| format!("{l}\n")).collect();
    cut.push_str(&full.lines().nth(60).unwrap()[..50]);
    std::fs::write(tmp.path().join("m/samples.jsonl"), cut).unwrap();
    let o = run(tmp.path(), &args);
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    assert!(
        std::fs::read_to_string(tmp.path().join("m/samples.jsonl")).unwrap() == full,
        "resumed records differ"
    );
    assert_eq!(
        json(&tmp.path().join("m/run.json"))["kendall_tau"],
        r["kendall_tau"]
    );
}

#[test]
fn fab_on_a_subset_estimates_the_robust_accuracy_of_all() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist");
    let o = run(
        tmp.path(),
        &[
            "margins",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--limit",
            "200",
            "--subset",
            "24",
            "--estimate-size",
            "12",
            "--restarts",
            "1",
            "--steps",
            "20",
            "--eps",
            "0.1",
            "--bootstrap",
            "20",
            "--out",
            "m",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&tmp.path().join("m/run.json"));
    assert_eq!(r["report"]["attacked"], 24);
    assert_eq!(r["report"]["n"], 200);
    let e = &r["report"]["estimate"];
    assert_eq!(e["population"], 200);
    let (lo, est, hi) = (
        e["low"].as_f64().unwrap(),
        e["estimate"].as_f64().unwrap(),
        e["high"].as_f64().unwrap(),
    );
    assert!(lo <= est && est <= hi && (0.0..=1.0).contains(&est), "{e}");
    let recs = lines(&tmp.path().join("m/samples.jsonl"));
    assert_eq!(recs.iter().filter(|r| r["attacked"] == true).count(), 24);
    // FAB's margins are L∞ norms of re-checked flips.
    for rec in recs.iter().filter(|r| r["input_margin"].is_number()) {
        let d = rec["input_margin"].as_f64().unwrap();
        assert!(d > 0.0 && d <= 1.0, "{rec}");
    }
}

#[test]
fn margins_misuse_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist");
    let base = [
        "margins",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "12",
        "--attack",
        "deepfool",
        "--out",
        "m",
    ];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        run(tmp.path(), &v)
    };
    assert_clear_error(&with(&["--fit-fraction", "1.5"]), &["--fit-fraction"]);
    assert_clear_error(&with(&["--eps", "8/0"]), &["8/0"]);
    // Too few samples to fit and evaluate a pseudo-margin.
    assert_clear_error(
        &with(&["--pseudo-margin", "--overwrite"]),
        &["pseudo-margin", "10"],
    );
}
