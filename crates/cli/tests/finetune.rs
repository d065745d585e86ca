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
        (vec!["--indices", "nowhere.txt"], vec!["nowhere.txt"]),
        (vec!["--indices", "bad.txt"], vec!["bad.txt, line 2", "'x'"]),
    ];
    std::fs::write(tmp.path().join("bad.txt"), "1\nx\n").unwrap();
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

/// `--indices FILE` (with `--limit` picking among the listed) selects the training samples, as
/// for every other command: the run record holds the same selection hash as an `eval` over the
/// same file.
#[test]
fn finetune_trains_on_the_listed_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (demo("cifar10-resnet20.onnx"), demo("cifar10-test"));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    std::fs::write(
        tmp.path().join("idx.txt"),
        "4000\n1\n2\n5001\n# x\n9000\n8000\n7\n",
    )
    .unwrap();
    let o = run(
        tmp.path(),
        &[
            "finetune",
            "-m",
            m,
            "-d",
            d,
            "--indices",
            "idx.txt",
            "--limit",
            "6",
            "--batch-size",
            "3",
            "--augment",
            "none",
            "-o",
            "ft",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&tmp.path().join("ft/run.json"));
    assert_eq!(r["settings"]["samples"], 6);
    assert_eq!(r["settings"]["indices"], "idx.txt");
    // 6 samples in batches of 3.
    assert_eq!(r["epochs"][0]["batch_loss"].as_array().unwrap().len(), 2);
    let o = run(
        tmp.path(),
        &[
            "eval",
            "-m",
            m,
            "-d",
            d,
            "--indices",
            "idx.txt",
            "--limit",
            "6",
            "-o",
            "ev",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let e = json(&tmp.path().join("ev/run.json"));
    assert_eq!(
        e["settings"]["samples_sha256"],
        r["settings"]["samples_sha256"]
    );
    // One per class first (classes 0, 4, 5, 8, 9), then a second airplane.
    let idx: Vec<u64> = lines(&tmp.path().join("ev/samples.jsonl"))
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [1, 2, 4000, 5001, 8000, 9000]);
}

/// Grey digits are not mirror-symmetric: without `--augment` an MNIST run does not flip, and
/// the adversarial radius fits the data set (a quarter of MNIST's 0.3), printed with the run.
#[test]
fn defaults_fit_grey_digits() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    let o = run(
        tmp.path(),
        &[
            "finetune",
            "-m",
            model.to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "--limit",
            "64",
            "--batch-size",
            "32",
            "--adversarial",
            "pgd",
            "--steps",
            "1",
            "-o",
            "ft",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ε defaults to 0.075 (linf) for 1×28×28 images"),
        "{}",
        stderr(&o)
    );
    let ft = &json(&tmp.path().join("ft/run.json"))["settings"]["finetune"];
    assert_eq!(ft["augment"], serde_json::json!([]), "{ft}");
    let eps = ft["adversarial"]["eps"].as_f64().unwrap();
    assert!((eps - 0.075).abs() < 1e-6, "{eps}");
}
