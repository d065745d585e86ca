//! Shared helpers for the CLI tests: run the built binary in a fresh temporary directory.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(rel)
}

pub fn demo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../demo")
        .join(rel)
}

/// The clean LeNet-5 for MNIST (small and fast: the tests' default model).
pub fn lenet() -> String {
    shared("models/mnist/mnist-lenet5-clean.onnx")
        .display()
        .to_string()
}

/// The MNIST test images.
pub fn mnist() -> String {
    shared("data/mnist/t10k-images-idx3-ubyte.gz")
        .display()
        .to_string()
}

/// Runs `faultline args…` with `dir` as working directory.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the faultline binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The JSON lines of a `samples.jsonl`.
pub fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Asserts a failed run: exit code 2, one line on stderr containing every `needles` entry.
pub fn assert_clear_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "error line lacks '{n}': {}", lines[0]);
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// Keys whose values measure time or memory, or say how a run got to its end.
pub const VOLATILE: &[&str] = &[
    "runtime",
    "started_unix",
    "updated_unix",
    "seconds",
    "img_per_s",
    "images_per_second",
    "samples_per_second",
    "corrupted_img_per_s",
    "peak_memory_mib",
    "resumed_from",
    "read_back",
    "forward_img_per_s",
    "backward_img_per_s",
];

pub fn strip(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for k in VOLATILE {
                m.remove(*k);
            }
            m.values_mut().for_each(strip);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

/// Every file under `dir`, by relative path: JSON and JSON lines with the volatile fields
/// removed, HTML up to its `runs` section (wall times), both with the run directory's own path
/// replaced by `RUN_DIR` (an audit's advice names its directories), everything else as bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
                continue;
            }
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let bytes = std::fs::read(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let root_path = root.display().to_string();
            let norm = |text: &str| {
                let text = &text.replace(&root_path, "RUN_DIR");
                let mut v: serde_json::Value = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("{rel}: not JSON ({e}): {text}"));
                strip(&mut v);
                serde_json::to_string(&v).unwrap()
            };
            let kept = if name.ends_with(".jsonl") {
                let text = String::from_utf8(bytes).unwrap();
                text.lines()
                    .map(|l| norm(l) + "\n")
                    .collect::<String>()
                    .into_bytes()
            } else if name.ends_with(".json") {
                norm(&String::from_utf8(bytes).unwrap()).into_bytes()
            } else if name.ends_with(".html") {
                // The report's last section, `runs`, gives wall times.
                let text = String::from_utf8(bytes).unwrap();
                let end = text.find("<section id=\"runs\"").unwrap_or(text.len());
                text[..end].replace(&root_path, "RUN_DIR").into_bytes()
            } else {
                bytes
            };
            out.insert(rel, kept);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Asserts that the run directory `dir` equals the `expected` snapshot ([`snapshot`]): the same
/// files, each equal apart from the volatile fields; `what` names the run in the message.
pub fn compare(expected: &BTreeMap<String, Vec<u8>>, dir: &Path, what: &str) {
    let got = snapshot(dir);
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "{what}: files differ"
    );
    for (file, bytes) in expected {
        assert!(
            *bytes == got[file],
            "{what}: {file} differs:\n{}\n---\n{}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&got[file])
        );
    }
}
