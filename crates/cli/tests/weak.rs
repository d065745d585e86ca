//! `faultline weak` and `faultline harden` from the command line on a few demo images: the
//! records, the weak set, the table and the charts; resuming a cut run; hardening's report.

mod util;
use util::*;

#[test]
fn weak_then_harden_on_demo_images() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (demo("cifar10-resnet20.onnx"), demo("cifar10-test"));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let out = tmp.path().join("weak");
    let args = [
        "weak",
        "-m",
        m,
        "-d",
        d,
        "--limit",
        "60",
        "--q",
        "4",
        "--fraction",
        "0.2",
        "--corruptions",
        "gaussian_noise,fog",
        "--severities",
        "5",
        "--attacks",
        "fgsm",
        "--attack-eps",
        "2/255",
        "--test",
        d,
        "--test-limit",
        "20",
        "-o",
        out.to_str().unwrap(),
    ];
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&out.join("run.json"));
    assert_eq!(r["status"], "complete");
    let scored = r["scored"].as_u64().unwrap() as usize;
    let recs = lines(&out.join("samples.jsonl"));
    assert_eq!(recs.len(), 60);
    assert_eq!(
        recs.iter().filter(|r| !r["score"].is_null()).count(),
        scored
    );
    let weak: Vec<usize> = std::fs::read_to_string(out.join("weak_indices.txt"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(weak.len(), r["weak_count"].as_u64().unwrap() as usize);
    // The weak set holds the highest scores of each class.
    for &w in &weak {
        let rw = recs.iter().find(|x| x["index"] == w).unwrap();
        let worse = recs
            .iter()
            .filter(|x| x["label"] == rw["label"] && !x["score"].is_null())
            .filter(|x| x["score"].as_f64() > rw["score"].as_f64())
            .filter(|x| !weak.contains(&(x["index"].as_u64().unwrap() as usize)))
            .count();
        assert_eq!(
            worse, 0,
            "sample {w}: a stronger-scored sample of its class was left out"
        );
    }
    let rows = r["weak_vs_random"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "clean + 2 corruptions + fgsm");
    assert_eq!(rows[0]["weak"], 1.0, "the weak set is clean-correct");
    assert!(rows.iter().all(|x| x["test"].is_number()));
    assert!(!r["weaknesses"].as_array().unwrap().is_empty());
    assert!(out.join("gallery.png").exists() && out.join("weak_vs_random.svg").exists());

    // A cut run resumes where it stopped and ends with the same weak set.
    let text = std::fs::read_to_string(out.join("samples.jsonl")).unwrap();
    let head: String = text.lines().take(25).map(|l| format!("{l}\n")).collect();
    std::fs::write(out.join("samples.jsonl"), head).unwrap();
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&out.join("run.json"))["resumed_from"], 25);
    assert_eq!(
        std::fs::read_to_string(out.join("weak_indices.txt"))
            .unwrap()
            .lines()
            .count(),
        weak.len()
    );
    assert_eq!(lines(&out.join("samples.jsonl")), recs);

    let h = tmp.path().join("harden");
    let o = run(
        tmp.path(),
        &[
            "harden",
            "-m",
            m,
            "-d",
            d,
            "--limit",
            "60",
            "--weak",
            out.to_str().unwrap(),
            "--test",
            d,
            "--test-limit",
            "20",
            "--corruptions",
            "gaussian_noise,fog",
            "--severities",
            "5",
            "--attacks",
            "fgsm",
            "--attack-eps",
            "2/255",
            "-o",
            h.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&h.join("run.json"));
    for key in ["before", "after"] {
        assert_eq!(r[key].as_object().unwrap().len(), 4, "{key}");
    }
    let trained = r["trained_against"].as_array().unwrap();
    assert!(!trained.is_empty() && trained.iter().all(|t| t == "gaussian_noise" || t == "fog"));
    assert!(
        r["held_out"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "fgsm"),
        "attacks are held out"
    );
    assert!(h.join("finetune/model.onnx").exists());
}

#[test]
fn weak_settings_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (demo("cifar10-resnet20.onnx"), demo("cifar10-test"));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    for (extra, needle) in [
        (vec!["--q", "0"], "--q"),
        (vec!["--fraction", "1.5"], "--fraction"),
        (vec!["--eps", "4"], "--eps"),
        (vec!["--attacks", "deepfool"], "--perturbations"),
    ] {
        let mut args = vec!["weak", "-m", m, "-d", d, "--limit", "10"];
        args.extend(extra);
        let o = run(tmp.path(), &args);
        assert_clear_error(&o, &[needle]);
    }
    let o = run(
        tmp.path(),
        &[
            "harden",
            "-m",
            m,
            "-d",
            d,
            "--weak",
            "/nonexistent",
            "--test",
            d,
        ],
    );
    assert!(!o.status.success());
}
