//! `faultline classwise`: the whole report on a small set, reuse of earlier runs, and the CFPS
//! identity Σ_c CFPS_c = 1.

mod util;

use util::*;

#[test]
fn classwise_report_with_attack_corruption_targets_and_latent() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    let args = [
        "classwise",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "60",
        "--eps",
        "0.1,0.2",
        "--corruptions",
        "fog",
        "--severities",
        "2",
        "--targeted",
        "--out",
        "cw",
    ];
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&tmp.path().join("cw/run.json"));
    // Written through the run-directory machinery.
    assert_eq!(r["schema_version"], 2);
    assert_eq!(r["status"], "complete");
    assert_eq!(r["command"], "classwise");
    assert!(
        r["settings"].is_object() && r["settings_hash"].is_string(),
        "{r}"
    );
    assert_eq!(r["settings"]["limit"], 60);
    let cfps = r["cfps"].as_object().unwrap();
    assert_eq!(cfps.len(), 5, "{:?}", cfps.keys());
    for cond in ["clean", "pgd linf 0.1", "pgd linf 0.2", "fog s2", "fog"] {
        let v = cfps
            .get(cond)
            .unwrap_or_else(|| panic!("no CFPS for {cond}: {:?}", cfps.keys()));
        let vals: Vec<f64> = v
            .as_object()
            .unwrap()
            .values()
            .filter_map(|x| x.as_f64())
            .collect();
        if !vals.is_empty() {
            assert!(
                (vals.iter().sum::<f64>() - 1.0).abs() < 1e-9,
                "{cond}: Σ CFPS = {}",
                vals.iter().sum::<f64>()
            );
        }
    }
    assert_eq!(r["targeted"].as_array().unwrap().len(), 10);
    // Counters against the target: "accuracy" toward class t is the rate of reaching t.
    let tc = &r["targeted_counters"][3];
    assert!(
        (tc["accuracy"].as_f64().unwrap() - r["targeted"][3]["success_rate"].as_f64().unwrap())
            .abs()
            < 1e-12
    );
    assert_eq!(
        r["latent"]["centroid_distance"].as_array().unwrap().len(),
        10
    );
    let ranking = r["ranking"].as_array().unwrap();
    assert_eq!(ranking.len(), 10);
    let mut classes: Vec<u64> = ranking
        .iter()
        .map(|c| c["class"].as_u64().unwrap())
        .collect();
    classes.sort_unstable();
    assert_eq!(classes, (0..10).collect::<Vec<u64>>());
    for c in ranking {
        for key in [
            "name",
            "clean_accuracy",
            "attack",
            "attack_accuracy",
            "attack_cfps",
            "corruption_accuracy",
            "targeted_success_rate",
        ] {
            assert!(c.get(key).is_some(), "ranking entry lacks {key}: {c}");
        }
        // The ranking uses the attack at the first (smallest) ε.
        assert_eq!(c["attack"], "pgd linf 0.1", "{c}");
        let t = c["class"].as_u64().unwrap() as usize;
        assert_eq!(c["targeted_success_rate"], r["targeted"][t]["success_rate"]);
    }
    // Classes from most to least vulnerable: accuracy under the attack does not fall.
    let accs: Vec<f64> = ranking
        .iter()
        .map(|c| c["attack_accuracy"].as_f64().unwrap_or(1.0))
        .collect();
    assert!(accs.windows(2).all(|w| w[0] <= w[1]), "{accs:?}");
    // The sub-runs: the attack with PGD's own default steps (20), every radius, no target; the
    // targeted runs at the first radius toward their class.
    let a = json(&tmp.path().join("cw/attack/run.json"));
    assert_eq!(a["status"], "complete");
    assert_eq!(a["settings"]["attack"]["name"], "pgd");
    assert_eq!(a["settings"]["attack"]["params"]["steps"], 20);
    assert_eq!(a["settings"]["eps"].as_array().unwrap().len(), 2);
    assert!(a["settings"]["target"].is_null());
    assert_eq!(
        lines(&tmp.path().join("cw/attack/samples.jsonl")).len(),
        120
    );
    let e = json(&tmp.path().join("cw/eval/run.json"));
    assert_eq!(e["status"], "complete");
    // 60 clean and 60 fog s2 records.
    let evals = lines(&tmp.path().join("cw/eval/samples.jsonl"));
    assert_eq!(evals.len(), 120);
    assert_eq!(
        evals.iter().filter(|r| r["condition"] == "clean").count(),
        60
    );
    assert_eq!(
        evals
            .iter()
            .filter(|r| r["condition"]["corruption"]
                == serde_json::json!({"name": "fog", "severity": 2}))
            .count(),
        60
    );
    for t in [0, 9] {
        let tr = json(&tmp.path().join(format!("cw/targeted-{t}/run.json")));
        assert_eq!(tr["settings"]["target"], t);
        assert_eq!(tr["settings"]["eps"].as_array().unwrap().len(), 1);
        assert!((tr["settings"]["eps"][0].as_f64().unwrap() - 0.1).abs() < 1e-7);
    }
    for f in [
        "cfps.svg",
        "class_accuracy.svg",
        "confusion_clean.svg",
        "latent_pca.svg",
        "targeted.svg",
        "centroid_distance.svg",
    ] {
        let svg = std::fs::read_to_string(tmp.path().join("cw").join(f)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{f}");
    }
    // Each CFPS row says what it is and how many errors it rests on: the fog family pooled
    // over its severities is told apart from fog at severity 2.
    let cfps = std::fs::read_to_string(tmp.path().join("cw/cfps.svg")).unwrap();
    assert_eq!(
        cfps.matches(r#"text-anchor="end">fog, all severities ("#)
            .count(),
        1,
        "{cfps}"
    );
    assert_eq!(
        cfps.matches(r#"text-anchor="end">fog s2 ("#).count(),
        1,
        "{cfps}"
    );
    assert!(cfps.contains(" errors)</text>") || cfps.contains(" error)</text>"));
    assert!(stdout(&o).contains("most to least vulnerable"));
    // A second run reuses every sub-run: the records are unchanged.
    let before = std::fs::read_to_string(tmp.path().join("cw/attack/samples.jsonl")).unwrap();
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("already"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("cw/attack/samples.jsonl")).unwrap(),
        before
    );
}

/// Any registered attack drives `classwise`; its settings are checked before anything runs.
#[test]
fn classwise_takes_any_registered_attack() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    let base = [
        "classwise",
        "-m",
        model.to_str().unwrap(),
        "-d",
        data.to_str().unwrap(),
        "--limit",
        "30",
        "-o",
        "f",
    ];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        run(tmp.path(), &v)
    };
    assert_clear_error(
        &with(&["-a", "fgsm", "--steps", "3"]),
        &["fgsm does not support --steps"],
    );
    assert!(
        !tmp.path().join("f").exists(),
        "a refused run wrote its directory"
    );
    let o = with(&["-a", "fgsm", "--eps", "0.1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&tmp.path().join("f/run.json"));
    let cfps = r["cfps"].as_object().unwrap();
    let mut keys: Vec<&str> = cfps.keys().map(|k| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["clean", "fgsm linf 0.1"]);
    assert_eq!(r["ranking"][0]["attack"], "fgsm linf 0.1");
    assert!(r["targeted"].as_array().unwrap().is_empty());
    let a = json(&tmp.path().join("f/attack/run.json"));
    assert_eq!(a["settings"]["attack"]["name"], "fgsm");
    for rec in lines(&tmp.path().join("f/attack/samples.jsonl")) {
        assert_eq!(rec["condition"]["attack"]["name"], "fgsm", "{rec}");
        assert!(rec["linf"].as_f64().unwrap() <= 0.1 + 1e-6, "{rec}");
    }
    assert!(stdout(&o).contains("under fgsm linf 0.1"), "{}", stdout(&o));
}

/// `--indices FILE` reaches every step of `classwise`: the evaluation, the attack and the
/// targeted runs cover exactly the listed samples.
#[test]
fn classwise_steps_cover_the_listed_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    std::fs::write(tmp.path().join("idx.txt"), "5000\n3\n2\n# x\n9999\n1234\n").unwrap();
    let o = run(
        tmp.path(),
        &[
            "classwise",
            "-m",
            model.to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "--indices",
            "idx.txt",
            "-a",
            "fgsm",
            "--eps",
            "0.1",
            "--targeted",
            "-o",
            "c",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for sub in ["eval", "attack", "targeted-0", "targeted-9"] {
        let idx: Vec<u64> = lines(&tmp.path().join("c").join(sub).join("samples.jsonl"))
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect();
        assert_eq!(idx, [2, 3, 1234, 5000, 9999], "{sub}");
    }
    let r = json(&tmp.path().join("c/run.json"));
    assert_eq!(r["settings"]["samples"], 5);
    assert_eq!(r["classwise"][0]["n"], 5, "{}", r["classwise"][0]);
}

/// Without `--eps` the radius fits the images as in `attack` (MNIST's 0.3, not CIFAR's 8/255)
/// and the run says so.
#[test]
fn classwise_default_radius_fits_the_data_set() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    let o = run(
        tmp.path(),
        &[
            "classwise",
            "-m",
            model.to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "--limit",
            "20",
            "-a",
            "fgsm",
            "-o",
            "f",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ε defaults to 0.3 (linf) for 1×28×28 images"),
        "{}",
        stderr(&o)
    );
    let r = json(&tmp.path().join("f/run.json"));
    assert!(r["cfps"].get("fgsm linf 0.3").is_some(), "{}", r["cfps"]);
}
