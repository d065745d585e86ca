//! `faultline eval`: the run record, resuming after a kill, and clear errors on bad input.

mod util;

use std::io::Write;

use util::*;

#[test]
fn eval_writes_run_json_and_samples_jsonl() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared("data/cifar10/test_batch_first100.bin");
    let model = shared("models/cifar10/cifar10-resnet20.onnx");
    let o = run(
        tmp.path(),
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            "r",
            "--batch-size",
            "32",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let run_json = json(&tmp.path().join("r/run.json"));
    assert_eq!(run_json["clean_accuracy"], 0.94);
    assert_eq!(run_json["status"], "complete");
    assert_eq!(
        run_json["results"]["confusion"].as_array().unwrap().len(),
        10
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(tmp.path().join("r/samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 100);
    // First CIFAR-10 test labels: 3, 8, 8, 0.
    assert_eq!(lines[0]["label"], 3);
    assert_eq!(lines[3]["label"], 0);
    let correct = lines
        .iter()
        .filter(|l| l["label"] == l["prediction"])
        .count();
    assert_eq!(correct, 94);
    // Clean records: the condition says so; there is no attack outcome.
    for l in &lines {
        assert_eq!(l["condition"], "clean", "{l}");
        assert!(
            l.get("clean_prediction").is_none() && l.get("success").is_none(),
            "{l}"
        );
    }
    // The margin is positive exactly for the correct predictions.
    assert!(lines
        .iter()
        .all(|l| (l["logit_margin"].as_f64().unwrap() > 0.0) == (l["label"] == l["prediction"])));
    assert!(stdout(&o).contains("clean accuracy"));
}

#[test]
fn a_killed_run_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared("data/cifar10/test_batch_first100.bin");
    let model = shared("models/cifar10/cifar10-resnet20.onnx");
    let args = [
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        "r",
        "--batch-size",
        "16",
    ];
    assert!(run(tmp.path(), &args).status.success());
    let full = std::fs::read_to_string(tmp.path().join("r/samples.jsonl")).unwrap();
    // Keep 37 complete records and half of the 38th, as a kill mid-write would.
    let mut cut: String = full.lines().take(37).map(|l| format!("{l}\n")).collect();
    cut.push_str(&full.lines().nth(37).unwrap()[..10]);
    std::fs::write(tmp.path().join("r/samples.jsonl"), &cut).unwrap();
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("37 of 100 samples already evaluated"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("r/samples.jsonl")).unwrap(),
        full
    );
    assert_eq!(json(&tmp.path().join("r/run.json"))["clean_accuracy"], 0.94);
    // Other settings in the same directory are refused rather than mixed in.
    let mut other = args.to_vec();
    other.extend(["--limit", "10"]);
    assert_clear_error(
        &run(tmp.path(), &other),
        &["holds a different run", "--overwrite"],
    );
}

#[test]
fn the_demo_runs_without_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(tmp.path(), &["eval", "--limit", "300"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&tmp.path().join("runs/eval/run.json"));
    let acc = r["clean_accuracy"].as_f64().unwrap();
    // The first 300 demo images are airplanes (class folders in order); ResNet-20 gets about
    // three quarters of them right on this JPEG-compressed copy.
    assert_eq!(r["results"]["n"], 300);
    assert!((0.6..0.9).contains(&acc), "{acc}");
}

#[test]
fn bad_inputs_give_one_clear_line_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/cifar10/cifar10-resnet20.onnx");
    let mnist_model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let cifar = shared("data/cifar10/test_batch_first100.bin");
    // Missing model file.
    let o = run(
        tmp.path(),
        &[
            "eval",
            "--model",
            "nope.onnx",
            "--data",
            cifar.to_str().unwrap(),
        ],
    );
    assert_clear_error(&o, &["nope.onnx"]);
    // Truncated ONNX file.
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(tmp.path().join("cut.onnx"), &bytes[..bytes.len() / 3]).unwrap();
    let o = run(
        tmp.path(),
        &[
            "eval",
            "--model",
            "cut.onnx",
            "--data",
            cifar.to_str().unwrap(),
        ],
    );
    assert_clear_error(&o, &["cut.onnx", "not a valid ONNX model"]);
    // A model for other images.
    let o = run(
        tmp.path(),
        &[
            "eval",
            "--model",
            mnist_model.to_str().unwrap(),
            "--data",
            cifar.to_str().unwrap(),
        ],
    );
    assert_clear_error(&o, &["3x32x32"]);
    // Labels beyond the model's outputs (a CIFAR-100 record read by a 10-class model).
    let mut rec = vec![57u8, 57u8];
    rec.extend(std::iter::repeat_n(128u8, 3072));
    let mut f = std::fs::File::create(tmp.path().join("c100.bin")).unwrap();
    f.write_all(&rec).unwrap();
    drop(f);
    let o = run(
        tmp.path(),
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            "c100.bin",
            "--format",
            "cifar100",
        ],
    );
    assert_clear_error(&o, &["label 57 of sample 0", "10 outputs"]);
}

#[test]
fn bench_json_has_the_stable_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-convexadv-robust.onnx");
    let o = run(
        tmp.path(),
        &[
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--batch-size",
            "4,16",
            "--iters",
            "1",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(v["forward_img_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["input_grad_img_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
}

#[test]
fn help_documents_every_flag_with_its_default() {
    let tmp = tempfile::tempdir().unwrap();
    let h = stdout(&run(tmp.path(), &["eval", "--help"]));
    for flag in [
        "--model",
        "--data",
        "--format",
        "--limit",
        "--batch-size",
        "--threads",
        "--out",
        "--mean",
        "--std",
        "--resize",
        "--center-crop",
    ] {
        assert!(h.contains(flag), "eval --help lacks {flag}");
    }
    assert!(h.contains("[default: 128]"));
    // Short flags.
    for short in ["-m, --model", "-d, --data", "-o, --out"] {
        assert!(h.contains(short), "eval --help lacks {short}");
    }
    let h = stdout(&run(tmp.path(), &["attack", "--help"]));
    assert!(h.contains("-a, --attack"), "attack --help lacks -a");
}

/// Off a terminal the progress is a status line per interval and one when a phase ends, with a
/// rounded rate (issue 24 item 9).
#[test]
fn progress_off_a_terminal_prints_status_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (demo("cifar10-resnet20.onnx"), demo("cifar10-test"));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "eval",
            "-m",
            model.to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "--limit",
            "40",
            "--batch-size",
            "8",
        ])
        .arg("-o")
        .arg(tmp.path().join("e"))
        .env("FAULTLINE_STATUS_SECS", "0")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("eval: ")).collect();
    assert!(
        lines.len() >= 5,
        "one line per batch at interval 0 and a closing one:\n{err}"
    );
    let last = lines.last().unwrap();
    assert!(last.starts_with("eval: 40/40 (100 %), "), "{last}");
    // The rate has one decimal: `123.4/s`.
    let rate = last.split(", ").nth(1).unwrap();
    let number = rate.split("/s").next().unwrap();
    assert_eq!(number.split('.').nth(1).map(str::len), Some(1), "{last}");
}
