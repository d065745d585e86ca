//! `faultline attack`: robust-accuracy curves, re-checked success flags, saved adversarial
//! images inside the ε-ball, minimum-norm runs and resuming after a kill.

mod util;

use util::*;

#[test]
fn pgd_curve_is_monotone_and_records_agree_with_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/cifar10/cifar10-resnet20.onnx");
    let data = shared("data/cifar10/test_batch_first100.bin");
    let args = [
        "attack",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "40",
        "--attack",
        "pgd",
        "--eps",
        "1/255,0.5/255,2/255",
        "--steps",
        "10",
        "--out",
        "r",
        "--save-adv",
        "--batch-size",
        "16",
    ];
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&tmp.path().join("r/run.json"));
    let curve = r["results"]["curve"].as_array().unwrap();
    let accs: Vec<f64> = curve
        .iter()
        .map(|p| p["robust_accuracy"].as_f64().unwrap())
        .collect();
    assert_eq!(accs.len(), 3);
    assert!(
        accs.windows(2).all(|w| w[1] <= w[0]),
        "robust accuracy rises with ε: {accs:?}"
    );
    assert!(accs[0] <= r["clean_accuracy"].as_f64().unwrap());
    assert!(r["robust_accuracy"]["1/255"].is_number());
    let recs = lines(&tmp.path().join("r/samples.jsonl"));
    assert_eq!(recs.len(), 120);
    for rec in &recs {
        assert_eq!(
            rec["success"].as_bool().unwrap(),
            rec["prediction"] != rec["label"],
            "{rec}"
        );
        assert!(rec["linf"].as_f64().unwrap() <= rec["eps"].as_f64().unwrap() + 1e-6);
    }
    // Saved images: the ε files are in the order given, each inside its ball and the box.
    let bytes = std::fs::read(tmp.path().join("r/adv_2.npy")).unwrap();
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(f.shape(), &[40, 3, 32, 32]);
    let adv: Vec<f32> = f.into_vec().unwrap();
    assert!(adv.iter().all(|v| (0.0..=1.0).contains(v)));
    // Kill after 20 samples' records: the rerun finishes with identical records.
    let full = std::fs::read_to_string(tmp.path().join("r/samples.jsonl")).unwrap();
    let cut: String = full.lines().take(62).map(|l| format!("{l}\n")).collect();
    std::fs::write(tmp.path().join("r/samples.jsonl"), cut).unwrap();
    let o = run(tmp.path(), &args);
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("r/samples.jsonl")).unwrap(),
        full
    );
}

#[test]
fn deepfool_reports_minimum_norms_on_mnist() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-convexadv-robust.onnx");
    let data = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    let o = run(
        tmp.path(),
        &[
            "attack",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--limit",
            "30",
            "--attack",
            "deepfool",
            "--eps",
            "1.0,2.0",
            "--out",
            "d",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&tmp.path().join("d/run.json"));
    let med = r["results"]["median_min_norm"].as_f64().unwrap();
    // FAB's reference median for this model is 1.45 (L2); DeepFool is an upper bound of that order.
    assert!((0.5..4.0).contains(&med), "{med}");
    for rec in lines(&tmp.path().join("d/samples.jsonl")) {
        assert_eq!(
            rec["success"].as_bool().unwrap(),
            rec["prediction"] != rec["label"]
        );
    }
    assert!(stdout(&o).contains("median smallest perturbation"));
}

#[test]
fn bad_eps_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-convexadv-robust.onnx");
    let data = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    let o = run(
        tmp.path(),
        &[
            "attack",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--eps",
            "8/x",
        ],
    );
    assert_clear_error(&o, &["ε '8/x'"]);
}

#[test]
fn apgd_and_fab_run_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-advtrained.onnx");
    let data = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    let base = [
        "attack",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "20",
    ];
    let mut a = base.to_vec();
    a.extend([
        "--attack", "apgd-t", "--eps", "0.3", "--steps", "20", "--out", "t",
    ]);
    let o = run(tmp.path(), &a);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&tmp.path().join("t/run.json"));
    assert!(r["robust_accuracy"].as_f64().unwrap() <= r["clean_accuracy"].as_f64().unwrap());
    let mut f = base.to_vec();
    f.extend([
        "--attack",
        "fab",
        "--norm",
        "linf",
        "--restarts",
        "1",
        "--steps",
        "30",
        "--out",
        "f",
    ]);
    let o = run(tmp.path(), &f);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&tmp.path().join("f/run.json"));
    // FAB's reference L∞ median for this model is 0.34 (restart 0: 0.343).
    let med = r["results"]["median_min_norm"].as_f64().unwrap();
    assert!((0.15..0.6).contains(&med), "{med}");
}

/// `--preset standard` (AutoAttack's ensemble) on a small MNIST model at two radii: robust
/// accuracy after each stage, the stage that broke each sample, the sanity checks, and a resume
/// after a kill that reproduces the records.
#[test]
fn standard_preset_reports_stages_and_sanity_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    let args = [
        "attack",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "12",
        "--preset",
        "standard",
        "--eps",
        "0.2,0.15",
        "--batch-size",
        "5",
        "--threads",
        "2",
        "--out",
        "s",
    ];
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("after apgd-ce"), "{}", stdout(&o));
    let r = json(&tmp.path().join("s/run.json"));
    let names = ["apgd-ce", "apgd-t", "fab-t", "square"];
    for e in ["0.15", "0.2"] {
        let st = r["stages"][e].as_array().unwrap();
        let got: Vec<&str> = st.iter().map(|s| s["attack"].as_str().unwrap()).collect();
        assert_eq!(got, names);
        let accs: Vec<f64> = st
            .iter()
            .map(|s| s["robust_accuracy"].as_f64().unwrap())
            .collect();
        assert!(accs.windows(2).all(|w| w[1] <= w[0]), "{accs:?}");
        assert!(accs[0] <= r["clean_accuracy"].as_f64().unwrap());
        assert_eq!(accs[3], r["robust_accuracy"][e].as_f64().unwrap());
    }
    let recs = lines(&tmp.path().join("s/samples.jsonl"));
    assert_eq!(recs.len(), 24);
    for rec in &recs {
        let attacked_and_broken =
            rec["success"].as_bool().unwrap() && rec["label"] == rec["clean_prediction"];
        match rec["stage"].as_str() {
            Some(s) => assert!(attacked_and_broken && names.contains(&s), "{rec}"),
            None => assert!(!attacked_and_broken, "{rec}"),
        }
        assert_eq!(
            rec["success"].as_bool().unwrap(),
            rec["prediction"] != rec["label"],
            "{rec}"
        );
        assert!(rec["linf"].as_f64().unwrap() <= rec["eps"].as_f64().unwrap() + 1e-6);
    }
    let s = &r["sanity"];
    let clean_ok = recs
        .iter()
        .filter(|r| r["eps"].as_f64().unwrap() < 0.17 && r["label"] == r["clean_prediction"])
        .count();
    assert_eq!(
        s["gradients"]["checked"].as_u64().unwrap() as usize,
        clean_ok
    );
    let robust_at_max = recs
        .iter()
        .filter(|r| r["eps"].as_f64().unwrap() > 0.17 && !r["success"].as_bool().unwrap())
        .count();
    assert_eq!(
        s["unbounded"]["checked"].as_u64().unwrap() as usize,
        robust_at_max.min(10)
    );
    assert!(s["monotone"]["violations"].is_array() && s["warnings"].is_array());
    // Kill in the second batch: the rerun finishes with identical records.
    let full = std::fs::read_to_string(tmp.path().join("s/samples.jsonl")).unwrap();
    let cut: String = full.lines().take(15).map(|l| format!("{l}\n")).collect();
    std::fs::write(tmp.path().join("s/samples.jsonl"), cut).unwrap();
    let o = run(tmp.path(), &args);
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("s/samples.jsonl")).unwrap(),
        full
    );
    let again = json(&tmp.path().join("s/run.json"));
    assert_eq!(again["stages"], r["stages"]);
    assert_eq!(again["sanity"], r["sanity"]);
}

#[test]
fn square_and_cw_run_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    let base = [
        "attack",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "8",
    ];
    let mut a = base.to_vec();
    a.extend([
        "--attack", "square", "--eps", "0.2", "--steps", "300", "--out", "q",
    ]);
    let o = run(tmp.path(), &a);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&tmp.path().join("q/run.json"));
    let robust = r["robust_accuracy"].as_f64().unwrap();
    assert!(robust <= r["clean_accuracy"].as_f64().unwrap());
    // The unbounded sanity check attacks the samples Square left robust, and breaks them.
    let u = &r["sanity"]["unbounded"];
    assert_eq!(
        u["checked"].as_u64().unwrap(),
        (robust * 8.0).round() as u64
    );
    assert_eq!(u["still_robust"].as_array().unwrap().len(), 0, "{u}");
    for rec in lines(&tmp.path().join("q/samples.jsonl")) {
        // Square needs no gradients: one backward pass for the sanity check of the clean
        // gradient, more only for the unbounded sanity check (APGD-CE).
        if rec.get("unbounded_success").is_none() {
            assert!(rec["backward"].as_u64().unwrap() <= 1, "{rec}");
        }
        assert!(rec["linf"].as_f64().unwrap() <= 0.2 + 1e-6);
    }
    // C&W on CIFAR (in tanh space the many saturated MNIST pixels hardly move).
    let model = shared("models/cifar10/cifar10-resnet20.onnx");
    let data = shared("data/cifar10/test_batch_first100.bin");
    let c = [
        "attack",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "4",
        "--attack",
        "cw",
        "--steps",
        "30",
        "--eps",
        "0.5",
        "--out",
        "c",
    ];
    let o = run(tmp.path(), &c);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&tmp.path().join("c/run.json"));
    assert!(r["results"]["median_min_norm"].as_f64().unwrap() > 0.0);
    assert!(stdout(&o).contains("median smallest perturbation"));
}

#[test]
fn preset_and_cw_misuse_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    let base = [
        "attack",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "2",
    ];
    let mut a = base.to_vec();
    a.extend(["--preset", "standard", "--steps", "10", "--target", "3"]);
    assert_clear_error(
        &run(tmp.path(), &a),
        &["--preset standard", "--steps", "--target"],
    );
    let mut c = base.to_vec();
    c.extend(["--attack", "cw", "--norm", "linf"]);
    assert_clear_error(&run(tmp.path(), &c), &["cw", "--norm l2"]);
}
