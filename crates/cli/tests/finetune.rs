//! `faultline finetune` from the command line: a short adversarial run on demo images writes a
//! model that `eval` loads, and bad settings are one-line errors before anything runs.

mod util;
use util::*;

#[test]
fn finetune_writes_a_model_eval_loads_and_a_run_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (demo("cifar10-resnet20.onnx"), demo("cifar10-test"));
    let out = tmp.path().join("ft");
    // A validation folder of two images per class, so `eval` covers exactly the same images.
    let val = tmp.path().join("val");
    for class in std::fs::read_dir(&data).unwrap() {
        let class = class.unwrap().path();
        let dst = val.join(class.file_name().unwrap());
        std::fs::create_dir_all(&dst).unwrap();
        for name in ["0000.jpg", "0001.jpg"] {
            std::fs::copy(class.join(name), dst.join(name)).unwrap();
        }
    }
    let o = run(
        tmp.path(),
        &[
            "finetune",
            "-m",
            model.to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "--limit",
            "32",
            "--batch-size",
            "16",
            "--lr",
            "1e-3",
            "--adversarial",
            "pgd",
            "--eps",
            "1/255",
            "--steps",
            "2",
            "--eps-warmup",
            "0.5",
            "--augment",
            "crop,flip,gaussian_noise:1-2",
            "--val",
            val.to_str().unwrap(),
            "--val-steps",
            "3",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("before fine-tuning"), "{}", stdout(&o));
    let r = json(&out.join("run.json"));
    assert_eq!(r["command"], "finetune");
    assert_eq!(r["status"], "complete");
    for key in ["clean_accuracy", "robust_accuracy", "images_per_second"] {
        assert!(r[key].is_number(), "{key}: {}", r[key]);
    }
    assert_eq!(
        lines(&out.join("samples.jsonl")).len(),
        1,
        "one record per epoch"
    );
    let e = tmp.path().join("eval");
    let o = run(
        tmp.path(),
        &[
            "eval",
            "-m",
            out.join("model.onnx").to_str().unwrap(),
            "-d",
            val.to_str().unwrap(),
            "-o",
            e.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // eval of the exported file agrees with the run record on the same images.
    let acc = json(&e.join("run.json"))["clean_accuracy"]
        .as_f64()
        .unwrap();
    assert_eq!(Some(acc), r["clean_accuracy"].as_f64());
}

#[test]
fn bad_finetune_settings_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (demo("cifar10-resnet20.onnx"), demo("cifar10-test"));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--epochs", "0"], vec!["--epochs"]),
        (vec!["--trades", "6"], vec!["--trades", "--adversarial"]),
        (
            vec!["--adversarial", "deepfool"],
            vec!["--adversarial", "deepfool"],
        ),
        (vec!["--adversarial", "pgd", "--eps", "8"], vec!["--eps"]),
        (vec!["--schedule", "sawtooth"], vec!["--schedule"]),
        (vec!["--augment", "crop,nonsense"], vec!["--augment"]),
        (
            vec!["--optimizer", "adam", "--nesterov"],
            vec!["--nesterov"],
        ),
        (vec!["--class-weights", "1,2"], vec!["--class-weights"]),
        (vec!["--subset", "some"], vec!["--subset"]),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["finetune", "-m", m, "-d", d, "--limit", "16", "-o"];
        let out = tmp.path().join("x");
        let o_s = out.to_str().unwrap().to_string();
        args.push(&o_s);
        args.extend(extra.iter());
        let o = run(tmp.path(), &args);
        assert_clear_error(&o, &needles);
        assert!(!out.join("model.onnx").exists());
    }
}
