//! A short fuzzing run of every target, as CI's share of the fuzzing (the long runs are made by
//! hand: `faultline-fuzz run all --seconds 3600`): no parser input may crash, hang or exhaust
//! memory, and no command line may panic or fail without an error line.

use std::path::{Path, PathBuf};
use std::process::Command;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn fuzz(targets: &[&str], execs: u64) {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_faultline-fuzz"))
        .arg("run")
        .args(targets)
        .args(["--execs", &execs.to_string(), "--seed", "1", "--shared"])
        .arg(shared())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for t in targets {
        let row = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(t))
            .unwrap_or_else(|| panic!("no row for {t}: {table}"));
        let execs_done: u64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(execs_done >= execs, "{row}");
    }
}

#[test]
fn parsers_survive_mutated_files() {
    fuzz(
        &[
            "onnx",
            "onnx-external",
            "idx",
            "cifar",
            "npy",
            "npz",
            "png",
            "jpeg",
        ],
        300,
    );
}

/// The command-line target runs the `faultline` binary built beside this one (the workspace
/// test builds it); outside a workspace build it is skipped unless reference checks are
/// required, as in CI.
#[test]
fn command_lines_survive_mutation() {
    let bin = Path::new(env!("CARGO_BIN_EXE_faultline-fuzz")).with_file_name("faultline");
    if !bin.exists() {
        assert_ne!(
            std::env::var("FAULTLINE_REFERENCE_CHECKS").as_deref(),
            Ok("required"),
            "{} is missing: build the workspace",
            bin.display()
        );
        eprintln!("skipped: {} is not built", bin.display());
        return;
    }
    fuzz(&["cli"], 25);
}

/// Inputs the long fuzzing runs found (a Pad asking for 13 TB and 28 GB, labels implying 10^18
/// classes or overflowing, a header of nested brackets that ran for minutes, a JPEG on which
/// zune-jpeg's IDCT panics) are refused with an error now. Each file is named `TARGET-what.bin`.
#[test]
fn found_crashes_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crashes");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let target = name.split('-').next().unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_faultline-fuzz"))
            .args(["replay", target])
            .arg(&p)
            .arg("--shared")
            .arg(shared())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && out.starts_with("err "),
            "{name}: {out} {}",
            String::from_utf8_lossy(&o.stderr)
        );
        n += 1;
    }
    assert!(n >= 6, "{n} regression inputs");
}
