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
    // 30 images of each class (ResNet-20 scores about 81 % on this JPEG-compressed copy).
    assert_eq!(r["results"]["n"], 300);
    for c in r["results"]["per_class"].as_array().unwrap() {
        assert_eq!(c["n"], 30, "{c}");
    }
    assert!((0.7..0.92).contains(&acc), "{acc}");
}

/// The labels of a run's clean records, counted per class (10 classes).
fn per_class(recs: &[serde_json::Value]) -> Vec<usize> {
    let mut n = vec![0; 10];
    for r in recs {
        n[r["label"].as_u64().unwrap() as usize] += 1;
    }
    n
}

/// `--limit` takes the same number from every class by default (the demo folder lists its
/// classes one after the other, 1000 images each); `--subset first` takes the head of the
/// file order, `--subset random` a seeded draw.
#[test]
fn limit_picks_a_stratified_subset_unless_asked_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (demo("cifar10-resnet20.onnx"), demo("cifar10-test"));
    let eval = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "eval",
            "-m",
            model.to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "--limit",
            "100",
            "-o",
            out,
        ];
        a.extend_from_slice(extra);
        let o = run(tmp.path(), &a);
        assert!(o.status.success(), "{}", stderr(&o));
        (
            json(&tmp.path().join(out).join("run.json")),
            lines(&tmp.path().join(out).join("samples.jsonl")),
        )
    };
    let (r, recs) = eval("s", &[]);
    assert_eq!(recs.len(), 100);
    assert_eq!(per_class(&recs), vec![10; 10]);
    // Ascending data-set indices: the first 10 images of each class folder.
    let idx: Vec<u64> = recs.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "{idx:?}");
    assert_eq!(&idx[..11], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1000]);
    assert_eq!(r["settings"]["subset"], "stratified");
    assert_eq!(r["settings"]["samples"], 100);
    let (f, recs) = eval("f", &["--subset", "first"]);
    assert_eq!(
        per_class(&recs)[0],
        100,
        "the first 100 images are airplanes"
    );
    let idx: Vec<u64> = recs.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, (0..100).collect::<Vec<u64>>());
    assert_ne!(f["settings_hash"], r["settings_hash"]);
    let (_, a) = eval("r", &["--subset", "random", "--subset-seed", "3"]);
    let (_, b) = eval("r2", &["--subset", "random", "--subset-seed", "3"]);
    let (_, c) = eval("r3", &["--subset", "random", "--subset-seed", "4"]);
    let ids = |v: &[serde_json::Value]| -> Vec<u64> {
        v.iter().map(|r| r["index"].as_u64().unwrap()).collect()
    };
    assert_eq!(ids(&a), ids(&b));
    assert_ne!(ids(&a), ids(&c));
    assert!(per_class(&a).iter().filter(|&&n| n > 0).count() >= 8);
}

/// `--indices FILE` covers exactly the listed samples (ascending, whatever the file's order),
/// `--limit` then picks among them (stratified); the file's contents are part of the run's
/// settings, so an edited file is a different run, not a resume.
#[test]
fn indices_file_selects_exactly_those_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (demo("cifar10-resnet20.onnx"), demo("cifar10-test"));
    std::fs::write(
        tmp.path().join("idx.txt"),
        "# a few of each kind\n9001\n  17  \n\n2500 # a bird\n3\n4\n1000 # automobile\n",
    )
    .unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "eval",
            "-m",
            model.to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "--indices",
            "idx.txt",
            "--batch-size",
            "4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let go = |a: &[String]| {
        run(
            tmp.path(),
            &a.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        )
    };
    let o = go(&args(&["-o", "i"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = lines(&tmp.path().join("i/samples.jsonl"));
    let idx: Vec<u64> = recs.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, [3, 4, 17, 1000, 2500, 9001]);
    let labels: Vec<u64> = recs.iter().map(|r| r["label"].as_u64().unwrap()).collect();
    assert_eq!(labels, [0, 0, 0, 1, 2, 9]);
    let r = json(&tmp.path().join("i/run.json"));
    assert_eq!(r["results"]["n"], 6);
    assert!(r["settings"]["samples_sha256"].is_string());
    // --limit among the listed: one per class first (classes 0, 1, 2, 9), then class 0 again.
    let o = go(&args(&["--limit", "5", "-o", "l"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let idx: Vec<u64> = lines(&tmp.path().join("l/samples.jsonl"))
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [3, 4, 1000, 2500, 9001]);
    // The same file again resumes (nothing left to do); an edited file is refused.
    let o = go(&args(&["-o", "i"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("6 of 6 samples already evaluated"),
        "{}",
        stderr(&o)
    );
    std::fs::write(tmp.path().join("idx.txt"), "3\n4\n17\n1000\n2500\n9002\n").unwrap();
    assert_clear_error(
        &go(&args(&["-o", "i"])),
        &["holds a different run", "--overwrite"],
    );
    let o = go(&args(&["-o", "i", "--overwrite"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(&tmp.path().join("i/samples.jsonl"))[5]["index"], 9002);
}

/// A bad indices file is one error line naming the file and the line, before anything is
/// written.
#[test]
fn bad_indices_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (demo("cifar10-resnet20.onnx"), demo("cifar10-test"));
    let cases: &[(&str, &[&str])] = &[
        (
            "3\n# ok\nseven\n",
            &["bad.txt, line 3", "'seven' is not a sample index"],
        ),
        ("3\n-1\n", &["bad.txt, line 2", "'-1'"]),
        (
            "3\n10000\n",
            &[
                "bad.txt, line 2",
                "index 10000 is past the last",
                "10000 samples",
            ],
        ),
        (
            "3\n4\n\n3\n",
            &["bad.txt, line 4", "index 3 is listed twice", "line 1"],
        ),
        ("# nothing\n\n", &["bad.txt", "lists no sample index"]),
    ];
    for (text, needles) in cases {
        std::fs::write(tmp.path().join("bad.txt"), text).unwrap();
        for cmd in ["eval", "attack"] {
            let o = run(
                tmp.path(),
                &[
                    cmd,
                    "-m",
                    model.to_str().unwrap(),
                    "-d",
                    data.to_str().unwrap(),
                    "--indices",
                    "bad.txt",
                    "-o",
                    "x",
                ],
            );
            assert_clear_error(&o, needles);
            assert!(!tmp.path().join("x").exists(), "{cmd} {text:?} wrote a run");
        }
    }
    assert_clear_error(
        &run(
            tmp.path(),
            &[
                "eval",
                "-m",
                model.to_str().unwrap(),
                "-d",
                data.to_str().unwrap(),
                "--indices",
                "none.txt",
            ],
        ),
        &["none.txt"],
    );
}

/// A killed run over a stratified selection (data-set indices far apart) resumes after its
/// last whole batch and ends with the same records.
#[test]
fn a_stratified_run_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (demo("cifar10-resnet20.onnx"), demo("cifar10-test"));
    let args = [
        "eval",
        "-m",
        model.to_str().unwrap(),
        "-d",
        data.to_str().unwrap(),
        "--limit",
        "50",
        "--corruptions",
        "fog",
        "--severities",
        "2",
        "--batch-size",
        "8",
        "-o",
        "r",
    ];
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let full = std::fs::read_to_string(tmp.path().join("r/samples.jsonl")).unwrap();
    assert_eq!(full.lines().count(), 100);
    // Two whole batches (8 samples × 2 conditions each), part of the third and a torn line.
    let mut cut: String = full.lines().take(37).map(|l| format!("{l}\n")).collect();
    cut.push_str(&full.lines().nth(37).unwrap()[..10]);
    std::fs::write(tmp.path().join("r/samples.jsonl"), &cut).unwrap();
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("16 of 50 samples already evaluated"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("r/samples.jsonl")).unwrap(),
        full
    );
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
        "--subset",
        "--subset-seed",
        "--indices",
    ] {
        assert!(h.contains(flag), "eval --help lacks {flag}");
    }
    assert!(h.contains("[default: 128]"));
    assert!(
        h.contains("Use N samples, picked by --subset [default: all]"),
        "{h}"
    );
    assert!(h.contains("[default: stratified]"), "{h}");
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

/// An image folder missing a class folder is refused instead of shifting every later label;
/// with --classes the folders are matched by name (issue 24 item 4).
#[test]
fn a_folder_missing_a_class_is_refused_unless_classes_name_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo("cifar10-test");
    let part = tmp.path().join("part");
    let mut names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names.iter().filter(|n| n.as_str() != "cat") {
        std::fs::create_dir_all(part.join(n)).unwrap();
        for f in ["0000.jpg", "0001.jpg"] {
            std::fs::copy(data.join(n).join(f), part.join(n).join(f)).unwrap();
        }
    }
    let model = demo("cifar10-resnet20.onnx");
    let (m, p) = (model.to_str().unwrap(), part.to_str().unwrap());
    let o = run(tmp.path(), &["eval", "-m", m, "-d", p, "-o", "e"]);
    assert_clear_error(&o, &["--classes", "9 class folders", "10 outputs"]);
    let classes = tmp.path().join("classes.txt");
    std::fs::write(&classes, names.join("\n")).unwrap();
    let o = run(
        tmp.path(),
        &[
            "eval",
            "-m",
            m,
            "-d",
            p,
            "--classes",
            classes.to_str().unwrap(),
            "-o",
            "e",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Labels follow the names: no sample is labelled cat (3), and dog is 5.
    let recs = lines(&tmp.path().join("e/samples.jsonl"));
    assert_eq!(recs.len(), 18);
    assert!(recs.iter().all(|r| r["label"] != 3));
    assert_eq!(recs.iter().filter(|r| r["label"] == 5).count(), 2);
}

/// The default `runs/<command>` folder is scratch space, but not silently (issue 24 item 8): a
/// run with other settings replaces the one there and says which settings differ; the same
/// settings resume.
#[test]
fn the_default_run_folder_is_replaced_with_a_note_and_resumed_when_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (demo("cifar10-resnet20.onnx"), demo("cifar10-test"));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let o = run(tmp.path(), &["eval", "-m", m, "-d", d, "--limit", "20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("replacing"), "{}", stderr(&o));
    let o = run(tmp.path(), &["eval", "-m", m, "-d", d, "--limit", "30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("replacing runs/eval"), "{}", stderr(&o));
    assert!(stderr(&o).contains("limit: 20 → 30"), "{}", stderr(&o));
    assert_eq!(lines(&tmp.path().join("runs/eval/samples.jsonl")).len(), 30);
    let o = run(tmp.path(), &["eval", "-m", m, "-d", d, "--limit", "30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming runs/eval: 30 of 30"),
        "{}",
        stderr(&o)
    );
}
