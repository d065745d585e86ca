//! `faultline corrupt` and `faultline eval --corruptions`: files that match the reference
//! generator, resuming, grayscale and ImageNet-sized inputs, and CE/mCE against a baseline.

mod util;

use util::*;

fn npy_u8(path: &std::path::Path) -> (Vec<u64>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = f.shape().to_vec();
    (shape, f.into_vec::<u8>().unwrap())
}

#[test]
fn corrupt_writes_cifar10c_style_files_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared("data/cifar10/test_batch_first100.bin");
    let args = [
        "corrupt",
        "--data",
        data.to_str().unwrap(),
        "--out",
        "c",
        "--corruptions",
        "brightness,contrast",
        // The reference files hold the first 20 images.
        "--limit",
        "20",
        "--subset",
        "first",
        "--batch-size",
        "8",
    ];
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, bytes) = npy_u8(&tmp.path().join("c/brightness.npy"));
    assert_eq!(shape, vec![100, 32, 32, 3]);
    // Severity s occupies rows (s−1)·20 .. s·20 and equals the reference generator's output.
    for s in 1..=5usize {
        let (_, want) = npy_u8(&shared(&format!(
            "reference/corruptions/brightness_s{s}.npy"
        )));
        assert_eq!(
            &bytes[(s - 1) * 20 * 3072..s * 20 * 3072],
            &want[..],
            "severity {s}"
        );
    }
    let (lshape, labels) = npy_u8(&tmp.path().join("c/labels.npy"));
    assert_eq!(lshape, vec![100]);
    assert_eq!(&labels[..4], &[3, 8, 8, 0]);
    assert_eq!(&labels[20..24], &[3, 8, 8, 0]);
    // Kill after 12 samples: the rerun completes the same bytes.
    let full = std::fs::read(tmp.path().join("c/contrast.npy")).unwrap();
    let recs = std::fs::read_to_string(tmp.path().join("c/samples.jsonl")).unwrap();
    let cut: String = recs.lines().take(12).map(|l| format!("{l}\n")).collect();
    std::fs::write(tmp.path().join("c/samples.jsonl"), cut).unwrap();
    let o = run(tmp.path(), &args);
    assert!(
        stderr(&o).contains("12 of 20 samples already written"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(tmp.path().join("c/contrast.npy")).unwrap(),
        full
    );
    // The written set reads back as a data set (labels.npy beside it).
    let model = shared("models/cifar10/cifar10-resnet20.onnx");
    let o = run(
        tmp.path(),
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            "c/brightness.npy",
            "--out",
            "e",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn corrupt_handles_grayscale_mnist_and_imagenet_sized_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let mnist = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    let o = run(
        tmp.path(),
        &[
            "corrupt",
            "--data",
            mnist.to_str().unwrap(),
            "--out",
            "m",
            "--limit",
            "4",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, _) = npy_u8(&tmp.path().join("m/frost.npy"));
    assert_eq!(shape, vec![20, 28, 28, 1]);
    // 224x224 images from the demo folder: the ImageNet table is chosen, PNG folder output.
    let demo = demo("cifar10-test");
    let o = run(
        tmp.path(),
        &[
            "corrupt",
            "--data",
            demo.to_str().unwrap(),
            "--resize",
            "224",
            "--limit",
            "2",
            "--severities",
            "5",
            "--output",
            "folder",
            "--out",
            "big",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("imagenet table"), "{}", stderr(&o));
    // Two samples, one per class (stratified): the first airplane and the first automobile,
    // named by their data-set index.
    let png = tmp.path().join("big/glass_blur/5/automobile/001000.png");
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (224, 224));
    assert!(tmp
        .path()
        .join("big/glass_blur/5/airplane/000000.png")
        .exists());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("big/glass_blur/5"))
            .unwrap()
            .count(),
        2
    );
}

/// With a selection, the `.npy` output's sample k is the k-th selected sample (ascending
/// data-set index): the rows equal those of a run over the whole set at the selected indices.
#[test]
fn corrupt_writes_the_selected_samples_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared("data/cifar10/test_batch_first100.bin");
    std::fs::write(tmp.path().join("idx.txt"), "57\n3\n# x\n90\n").unwrap();
    let go = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "corrupt",
            "-d",
            data.to_str().unwrap(),
            "--corruptions",
            "contrast,gaussian_noise",
            "--severities",
            "1,4",
            "--out",
            out,
        ];
        a.extend_from_slice(extra);
        let o = run(tmp.path(), &a);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    go("all", &[]);
    go("sel", &["--indices", "idx.txt"]);
    let (_, labels_all) = npy_u8(&tmp.path().join("all/labels.npy"));
    let (lshape, labels) = npy_u8(&tmp.path().join("sel/labels.npy"));
    assert_eq!(lshape, vec![6]);
    let picked = [3usize, 57, 90];
    for name in ["contrast", "gaussian_noise"] {
        let (shape, all) = npy_u8(&tmp.path().join(format!("all/{name}.npy")));
        assert_eq!(shape, vec![200, 32, 32, 3]);
        let (shape, sel) = npy_u8(&tmp.path().join(format!("sel/{name}.npy")));
        assert_eq!(shape, vec![6, 32, 32, 3]);
        for s in 0..2 {
            for (k, &i) in picked.iter().enumerate() {
                let row = &sel[(s * 3 + k) * 3072..(s * 3 + k + 1) * 3072];
                let want = &all[(s * 100 + i) * 3072..(s * 100 + i + 1) * 3072];
                assert_eq!(row, want, "{name} severity block {s}, sample {i}");
                assert_eq!(labels[s * 3 + k], labels_all[s * 100 + i]);
            }
        }
    }
}

#[test]
fn eval_under_corruptions_reports_accuracy_and_mce() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared("data/cifar10/test_batch_first100.bin");
    let m20 = shared("models/cifar10/cifar10-resnet20.onnx");
    let base = [
        "eval",
        "--model",
        m20.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "30",
        "--corruptions",
        "gaussian_noise,fog",
        "--severities",
        "1,5",
    ];
    let mut a = base.to_vec();
    a.extend(["--out", "base"]);
    let o = run(tmp.path(), &a);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&tmp.path().join("base/run.json"));
    let table = r["corruptions"]["table"].as_array().unwrap();
    assert_eq!(table.len(), 4);
    let mean: f64 = table
        .iter()
        .map(|t| t["accuracy"].as_f64().unwrap())
        .sum::<f64>()
        / 4.0;
    assert!((r["mean_corruption_accuracy"].as_f64().unwrap() - mean).abs() < 1e-12);
    // 30 clean + 4 × 30 corrupted records, the corruption and severity in the condition.
    let recs = lines(&tmp.path().join("base/samples.jsonl"));
    assert_eq!(recs.len(), 150);
    assert_eq!(
        recs.iter().filter(|r| r["condition"] == "clean").count(),
        30
    );
    for name in ["gaussian_noise", "fog"] {
        for severity in [1, 5] {
            let cond = serde_json::json!({"corruption": {"name": name, "severity": severity}});
            let at: Vec<&serde_json::Value> =
                recs.iter().filter(|r| r["condition"] == cond).collect();
            assert_eq!(at.len(), 30, "{cond}");
            // The table's accuracy is that of these records.
            let right = at.iter().filter(|r| r["prediction"] == r["label"]).count();
            let row = table
                .iter()
                .find(|t| t["corruption"] == name && t["severity"] == severity)
                .unwrap_or_else(|| panic!("no table row for {cond}: {table:?}"));
            assert!((row["accuracy"].as_f64().unwrap() - right as f64 / 30.0).abs() < 1e-12);
        }
    }
    for r in &recs {
        assert!(
            r.get("corruption").is_none() && r.get("severity").is_none(),
            "{r}"
        );
        assert_eq!(
            r["logit_margin"].as_f64().unwrap() > 0.0,
            r["prediction"] == r["label"],
            "{r}"
        );
    }
    // The same model against itself as baseline: CE and relative CE are exactly 1.
    let mut b = base.to_vec();
    b.extend(["--out", "self", "--baseline", "base"]);
    let o = run(tmp.path(), &b);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = json(&tmp.path().join("self/run.json"));
    assert_eq!(s["mce"], 1.0);
    assert_eq!(s["relative_mce"], 1.0);
    assert_eq!(s["mean_corruption_accuracy"], r["mean_corruption_accuracy"]);
}

/// `corrupt` takes no model, and its help says nothing of one (issue 24 item 11).
#[test]
fn corrupt_help_mentions_no_model() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(tmp.path(), &["corrupt", "--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    assert!(help.contains("--data"), "{help}");
    assert!(!help.to_lowercase().contains("model"), "{help}");
}
