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
    // The curve is ascending in ε whatever the order given.
    let radii: Vec<f64> = curve.iter().map(|p| p["eps"].as_f64().unwrap()).collect();
    assert!(radii.windows(2).all(|w| w[0] < w[1]), "{radii:?}");
    assert!((radii[2] - 2.0 / 255.0).abs() < 1e-7, "{radii:?}");
    // The run records the attack by registry name, its norm and its resolved parameters.
    assert_eq!(r["attack"], "pgd");
    assert_eq!(r["norm"], "linf");
    let sa = &r["settings"]["attack"];
    assert_eq!(sa["name"], "pgd");
    assert_eq!(sa["kind"], "bounded");
    assert_eq!(sa["norm"], "linf");
    assert_eq!(sa["params"]["steps"], 10);
    let recs = lines(&tmp.path().join("r/samples.jsonl"));
    assert_eq!(recs.len(), 120);
    for rec in &recs {
        let cond = &rec["condition"]["attack"];
        assert_eq!(cond["name"], "pgd", "{rec}");
        assert_eq!(cond["norm"], "linf", "{rec}");
        let eps = cond["eps"].as_f64().unwrap();
        assert!(radii.iter().any(|e| (e - eps).abs() < 1e-7), "{rec}");
        assert!(rec["clean_prediction"].is_u64(), "{rec}");
        assert!(
            rec.get("eps").is_none() && rec.get("attack").is_none(),
            "{rec}"
        );
        assert_eq!(
            rec["success"].as_bool().unwrap(),
            rec["prediction"] != rec["label"],
            "{rec}"
        );
        // The logit margin is taken on the returned image against the label.
        assert_eq!(
            rec["logit_margin"].as_f64().unwrap() > 0.0,
            rec["prediction"] == rec["label"],
            "{rec}"
        );
        assert!(rec["linf"].as_f64().unwrap() <= eps + 1e-6);
    }
    // 40 samples at each of the 3 radii.
    for e in &radii {
        let at = recs
            .iter()
            .filter(|r| (r["condition"]["attack"]["eps"].as_f64().unwrap() - e).abs() < 1e-7)
            .count();
        assert_eq!(at, 40, "ε = {e}");
    }
    // The 40 samples are 4 of each class (stratified), in ascending data-set order.
    let mut order: Vec<usize> = Vec::new();
    let mut per_class = [0; 10];
    for rec in &recs {
        let i = rec["index"].as_u64().unwrap() as usize;
        if !order.contains(&i) {
            order.push(i);
            per_class[rec["label"].as_u64().unwrap() as usize] += 1;
        }
    }
    assert_eq!(order.len(), 40);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert_eq!(per_class, [4; 10]);
    // Saved images: one file per ε of the (ascending) curve, each inside its ball and the box;
    // row j is the j-th selected sample.
    let clean = std::fs::read(&data).unwrap();
    for (k, e) in radii.iter().enumerate() {
        let bytes = std::fs::read(tmp.path().join(format!("r/adv_{k}.npy"))).unwrap();
        let f = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(f.shape(), &[40, 3, 32, 32]);
        let adv: Vec<f32> = f.into_vec().unwrap();
        assert!(adv.iter().all(|v| (0.0..=1.0).contains(v)));
        for (j, img) in adv.chunks(3072).enumerate() {
            // CIFAR binary record: a label byte, then 3072 CHW pixel bytes.
            let i = order[j];
            let x = &clean[i * 3073 + 1..(i + 1) * 3073];
            let d = img
                .iter()
                .zip(x)
                .map(|(a, &b)| (a - b as f32 / 255.0).abs())
                .fold(0.0f32, f32::max);
            // (Another sample's image would be far outside the ball.)
            assert!(
                d as f64 <= e + 1e-6,
                "adv_{k} row {j}, sample {i}: {d} > {e}"
            );
        }
    }
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
    assert_eq!(r["attack"], "deepfool");
    assert_eq!(r["norm"], "l2");
    assert_eq!(r["settings"]["attack"]["kind"], "min-norm");
    let recs = lines(&tmp.path().join("d/samples.jsonl"));
    // A minimum-norm attack runs once per sample, whatever the radii the curve is read at.
    assert_eq!(recs.len(), 30);
    for rec in recs {
        // Minimum-norm conditions carry no radius.
        assert_eq!(
            rec["condition"],
            serde_json::json!({"attack": {"name": "deepfool", "norm": "l2"}}),
            "{rec}"
        );
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
    assert_clear_error(&o, &["--eps", "'8/x'"]);
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
    assert_eq!(r["attack"], "apgd-t");
    assert_eq!(r["settings"]["attack"]["params"]["steps"], 20);
    for rec in lines(&tmp.path().join("t/samples.jsonl")) {
        let cond = &rec["condition"]["attack"];
        assert_eq!(cond["name"], "apgd-t", "{rec}");
        assert!((cond["eps"].as_f64().unwrap() - 0.3).abs() < 1e-7, "{rec}");
        assert!(rec["linf"].as_f64().unwrap() <= 0.3 + 1e-6, "{rec}");
    }
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
    assert_eq!(r["attack"], "standard");
    assert_eq!(r["norm"], "linf");
    let recs = lines(&tmp.path().join("s/samples.jsonl"));
    assert_eq!(recs.len(), 24);
    let eps = |r: &serde_json::Value| r["condition"]["attack"]["eps"].as_f64().unwrap();
    for rec in &recs {
        assert_eq!(rec["condition"]["attack"]["name"], "standard", "{rec}");
        assert_eq!(rec["condition"]["attack"]["norm"], "linf", "{rec}");
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
        assert!(rec["linf"].as_f64().unwrap() <= eps(rec) + 1e-6);
    }
    let s = &r["sanity"];
    let clean_ok = recs
        .iter()
        .filter(|r| eps(r) < 0.17 && r["label"] == r["clean_prediction"])
        .count();
    assert_eq!(
        s["gradients"]["checked"].as_u64().unwrap() as usize,
        clean_ok
    );
    let robust_at_max = recs
        .iter()
        .filter(|r| eps(r) > 0.17 && !r["success"].as_bool().unwrap())
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
        &["--preset", "standard", "--steps", "--target"],
    );
    let mut c = base.to_vec();
    c.extend(["--attack", "cw", "--norm", "linf"]);
    assert_clear_error(
        &run(tmp.path(), &c),
        &["cw does not support the linf norm", "l2"],
    );
}

/// Settings an attack does not take, norms it lacks, empty or out-of-range values: each is
/// refused with one line naming the flag or value, before any run directory is written.
#[test]
fn attack_settings_are_validated_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--eps", "8"],
            &["--eps", "8 exceeds the pixel range [0, 1]", "8/255"],
        ),
        (&["--eps", "2/255,-1"], &["--eps", "'-1'"]),
        (
            &["-a", "fgsm", "--steps", "3"],
            &["fgsm does not support --steps (it takes --loss)"],
        ),
        (
            &["-a", "apgd-ce", "--norm", "l1"],
            &["apgd-ce does not support the l1 norm (it supports linf, l2)"],
        ),
        (&["--steps", "0"], &["pgd", "0 steps"]),
        (&["-a", "fab", "--restarts", "0"], &["fab", "0 restarts"]),
        (&["-a", "apgd-t", "--target", "3"], &["apgd-t", "--target"]),
        (&["-a", "fab-t", "--target", "3"], &["fab-t", "--target"]),
        (&["--target", "12"], &["target class 12", "10 classes"]),
        (&["--limit", "0"], &["--limit: 0 selects no samples"]),
        (&["--batch-size", "0"], &["--batch-size"]),
        // A clap conflict: clap's own message, still exit code 2 and one error line.
        (
            &["--preset", "standard", "-a", "pgd"],
            &["--preset", "--attack"],
        ),
    ];
    for (extra, needles) in cases {
        let mut a = vec![
            "attack",
            "-m",
            model.to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "-o",
            "e",
        ];
        if !extra.contains(&"--limit") {
            a.extend(["--limit", "4"]);
        }
        a.extend_from_slice(extra);
        let o = run(tmp.path(), &a);
        assert_clear_error(&o, needles);
        assert!(
            !tmp.path().join("e").exists(),
            "{extra:?} wrote a run directory before refusing"
        );
    }
}

/// Repeated radii are one radius: the run equals the run with the radius given once (a repeated
/// ε once counted each sample twice, reporting robust accuracies up to 190 %).
#[test]
fn repeated_radii_are_one_radius() {
    let tmp = tempfile::tempdir().unwrap();
    let model = demo("cifar10-resnet20.onnx");
    let data = demo("cifar10-test");
    let attack = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "attack",
            "-m",
            model.to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "--limit",
            "20",
            "-o",
            out,
        ];
        a.extend_from_slice(extra);
        let o = run(tmp.path(), &a);
        assert!(o.status.success(), "{}", stderr(&o));
        (o, json(&tmp.path().join(out).join("run.json")))
    };
    // The literal case: PGD at 8/255 twice.
    let (o, r) = attack("pgd", &["--eps", "8/255,8/255"]);
    assert_eq!(stdout(&o).matches("at ε =").count(), 1, "{}", stdout(&o));
    assert_eq!(r["results"]["curve"].as_array().unwrap().len(), 1);
    assert_eq!(r["settings"]["eps"].as_array().unwrap().len(), 1);
    let robust = r["robust_accuracy"].as_f64().unwrap();
    assert!(robust <= r["clean_accuracy"].as_f64().unwrap(), "{robust}");
    assert_eq!(lines(&tmp.path().join("pgd/samples.jsonl")).len(), 20);
    // A radius where some samples stay robust, so a double count would show: FGSM at 1/255.
    let (_, twice) = attack("twice", &["-a", "fgsm", "--eps", "1/255,1/255"]);
    let (_, once) = attack("once", &["-a", "fgsm", "--eps", "1/255"]);
    let robust = twice["robust_accuracy"].as_f64().unwrap();
    assert!(robust > 0.0 && robust <= twice["clean_accuracy"].as_f64().unwrap());
    assert_eq!(twice["robust_accuracy"], once["robust_accuracy"]);
    assert_eq!(twice["results"], once["results"]);
    assert_eq!(twice["settings_hash"], once["settings_hash"]);
    let recs = lines(&tmp.path().join("twice/samples.jsonl"));
    assert_eq!(recs.len(), 20);
    let held = recs.iter().filter(|r| r["success"] == false).count();
    assert_eq!(robust, held as f64 / 20.0);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("twice/samples.jsonl")).unwrap(),
        std::fs::read_to_string(tmp.path().join("once/samples.jsonl")).unwrap()
    );
}

/// `--indices FILE` attacks exactly the listed samples, in ascending order, and a stratified
/// `--limit` among them; the resumed run over the list continues after its whole samples.
#[test]
fn indices_file_selects_the_attacked_samples_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = demo("cifar10-resnet20.onnx");
    let data = demo("cifar10-test");
    std::fs::write(
        tmp.path().join("idx.txt"),
        "7001\n12\n# cats\n3005\n3006\n500\n8999\n",
    )
    .unwrap();
    let args = [
        "attack",
        "-m",
        model.to_str().unwrap(),
        "-d",
        data.to_str().unwrap(),
        "--indices",
        "idx.txt",
        "-a",
        "fgsm",
        "--eps",
        "1/255,2/255",
        "--no-sanity",
        "--batch-size",
        "2",
        "-o",
        "a",
    ];
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = lines(&tmp.path().join("a/samples.jsonl"));
    assert_eq!(recs.len(), 12);
    let mut order: Vec<u64> = Vec::new();
    for r in &recs {
        let i = r["index"].as_u64().unwrap();
        if !order.contains(&i) {
            order.push(i);
        }
    }
    assert_eq!(order, [12, 500, 3005, 3006, 7001, 8999]);
    // The demo folder holds 1000 images per class, class after class.
    for r in &recs {
        assert_eq!(
            r["label"].as_u64(),
            r["index"].as_u64().map(|i| i / 1000),
            "{r}"
        );
    }
    // Kill after the first batch (2 samples × 2 radii) and half of the second.
    let full = std::fs::read_to_string(tmp.path().join("a/samples.jsonl")).unwrap();
    let cut: String = full.lines().take(6).map(|l| format!("{l}\n")).collect();
    std::fs::write(tmp.path().join("a/samples.jsonl"), cut).unwrap();
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("2 of 6 samples already attacked"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("a/samples.jsonl")).unwrap(),
        full
    );
    // --limit picks among the listed, one class after the other (airplane 12, 500; cat 3005,
    // 3006; horse 7001; ship 8999): 12, 3005, 7001, 8999.
    let mut l = args.to_vec();
    l.extend(["--limit", "4", "--overwrite"]);
    let o = run(tmp.path(), &l);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut order: Vec<u64> = Vec::new();
    for r in lines(&tmp.path().join("a/samples.jsonl")) {
        let i = r["index"].as_u64().unwrap();
        if !order.contains(&i) {
            order.push(i);
        }
    }
    assert_eq!(order, [12, 3005, 7001, 8999]);
}

/// The default radius fits the data set and is printed with the run (issue 24 item 10): 0.3 in
/// L∞ on 28×28 grey images, 8/255 on CIFAR-sized colour images.
#[test]
fn default_eps_follows_the_image_size() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            shared("models/mnist/mnist-lenet5-clean.onnx"),
            shared("data/mnist/t10k-images-idx3-ubyte.gz"),
            "0.3",
            "1×28×28",
        ),
        (
            demo("cifar10-resnet20.onnx"),
            demo("cifar10-test"),
            "8/255",
            "3×32×32",
        ),
    ];
    for (i, (model, data, eps, shape)) in cases.iter().enumerate() {
        let out = tmp.path().join(format!("a{i}"));
        let o = run(
            tmp.path(),
            &[
                "attack",
                "-m",
                model.to_str().unwrap(),
                "-d",
                data.to_str().unwrap(),
                "-a",
                "fgsm",
                "--limit",
                "10",
                "--no-sanity",
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let note = format!("ε defaults to {eps} (linf) for {shape} images");
        assert!(stderr(&o).contains(&note), "{}", stderr(&o));
        let recs = lines(&out.join("samples.jsonl"));
        let want = if *eps == "0.3" { 0.3 } else { 8.0 / 255.0 };
        let got = recs[0]["condition"]["attack"]["eps"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-6, "{}", recs[0]);
    }
}
