//! Kill-at-random soak test: every command that records per-sample results (per epoch for
//! finetune, per batch for metrics) is killed with SIGKILL at random moments, several times in a
//! row, then run to the end; its final records must equal an uninterrupted run's. JSON records
//! are compared after removing the fields that measure time (seconds, rates, start and update
//! stamps, peak memory, how far a run resumed from); every other file (samples.jsonl, .npy,
//! .svg, .png, model.onnx, checkpoints) byte for byte.
//!
//! `FAULTLINE_SOAK_KILLS` sets the kills per command (default 3, for CI); the kills are seeded
//! (`FAULTLINE_SOAK_SEED`, default 0): half at a moment spread over the uninterrupted run's
//! duration, half after a random number of further records.

mod util;
use util::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Complete lines of a records file (0 while it does not exist).
fn records(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `args` (writing to `-o r`) once uninterrupted, then in chains of kills and resumptions
/// until `FAULTLINE_SOAK_KILLS` kills have landed; asserts that every chain ends with the
/// uninterrupted run's records.
fn soak(name: &str, args: &[String]) {
    let kills = env_or("FAULTLINE_SOAK_KILLS", 3);
    // The project's seeded stream, one per command: each command its own kill moments.
    let mut stream = faultline_seed::Stream::new(env_or("FAULTLINE_SOAK_SEED", 0), 0, name);
    let mut uniform = move || stream.unit() as f64;
    let mut full_args: Vec<String> = args.to_vec();
    full_args.extend(["-o".into(), "r".into()]);
    let argv: Vec<&str> = full_args.iter().map(String::as_str).collect();

    let whole = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let o = run(whole.path(), &argv);
    let t_full = t0.elapsed();
    assert!(o.status.success(), "{name}: {}", stderr(&o));

    let total = records(&whole.path().join("r/samples.jsonl"));
    let expected = snapshot(&whole.path().join("r"));
    let killed = tempfile::tempdir().unwrap();
    let dir = killed.path().join("r");
    // Chains of kill → resume in a fresh directory, each compared with the uninterrupted run
    // once it ends, until `kills` kills have landed. A chain that ends before its first kill
    // (the machine got faster) starts over with earlier moments.
    let (mut landed, mut chain_landed, mut chains) = (0, 0, 0);
    let mut scale = 1.0;
    let mut attempts = 0;
    while landed < kills && attempts < 4 * kills + 8 {
        attempts += 1;
        let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(&argv)
            .current_dir(killed.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Half the kills come at a random moment (they also land in start-up and in writes of
        // run.json, plots and models); half once a random number of further records is
        // written, so they land mid-run even when resumed runs are short.
        let at = t_full.mul_f64(scale * (0.02 + 0.98 * uniform()));
        let now = records(&dir.join("samples.jsonl"));
        let by_records = uniform() < 0.5 && total > now + 1;
        let target = now + 1 + (uniform() * total.saturating_sub(now + 1) as f64) as usize;
        let start = Instant::now();
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{name}: a resumed run failed");
                break true;
            }
            let due = if by_records {
                records(&dir.join("samples.jsonl")) >= target
            } else {
                start.elapsed() >= at
            };
            if due {
                break false;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if !finished {
            child.kill().unwrap();
            child.wait().unwrap();
            landed += 1;
            chain_landed += 1;
            continue;
        }
        if chain_landed > 0 {
            compare(
                &expected,
                &dir,
                &format!("{name} after {chain_landed} kills"),
            );
            chains += 1;
        } else {
            scale *= 0.5;
        }
        std::fs::remove_dir_all(&dir).unwrap();
        chain_landed = 0;
    }
    if chain_landed > 0 {
        let o = run(killed.path(), &argv);
        assert!(
            o.status.success(),
            "{name} after {chain_landed} kills: {}",
            stderr(&o)
        );
        compare(
            &expected,
            &dir,
            &format!("{name} after {chain_landed} kills"),
        );
        chains += 1;
    }
    assert!(
        kills == 0 || landed > 0,
        "{name}: no kill landed before the run ended"
    );
    eprintln!("{name}: {landed} kills landed over {chains} resumed runs, each equal to the uninterrupted one");
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn cifar() -> String {
    shared("data/cifar10/test_batch_first100.bin")
        .display()
        .to_string()
}

#[test]
fn eval_survives_random_kills() {
    let m = shared("models/cifar10/cifar10-resnet20.onnx")
        .display()
        .to_string();
    let d = cifar();
    soak(
        "eval",
        &args(&[
            "eval",
            "-m",
            &m,
            "-d",
            &d,
            "--batch-size",
            "10",
            "--corruptions",
            "gaussian_noise,contrast",
            "--severities",
            "1,3",
        ]),
    );
}

#[test]
fn attack_survives_random_kills() {
    let (m, d) = (lenet(), mnist());
    soak(
        "attack",
        &args(&[
            "attack",
            "-m",
            &m,
            "-d",
            &d,
            "--limit",
            "60",
            "-a",
            "pgd",
            "--steps",
            "10",
            "--batch-size",
            "6",
            "--eps",
            "0.1,0.2",
        ]),
    );
}

#[test]
fn classwise_survives_random_kills() {
    let (m, d) = (lenet(), mnist());
    soak(
        "classwise",
        &args(&[
            "classwise",
            "-m",
            &m,
            "-d",
            &d,
            "--limit",
            "60",
            "-a",
            "pgd",
            "--steps",
            "5",
            "--batch-size",
            "6",
            "--corruptions",
            "gaussian_noise",
            "--severities",
            "2",
        ]),
    );
}

#[test]
fn margins_survive_random_kills() {
    let (m, d) = (lenet(), mnist());
    soak(
        "margins",
        &args(&[
            "margins",
            "-m",
            &m,
            "-d",
            &d,
            "--limit",
            "20",
            "-a",
            "deepfool",
            "--batch-size",
            "4",
        ]),
    );
}

#[test]
fn corrupt_survives_random_kills() {
    let d = cifar();
    soak(
        "corrupt",
        &args(&[
            "corrupt",
            "-d",
            &d,
            "--corruptions",
            "gaussian_noise,fog",
            "--severities",
            "1,2",
        ]),
    );
}

#[test]
fn weak_survives_random_kills() {
    let (m, d) = (lenet(), mnist());
    soak(
        "weak",
        &args(&[
            "weak",
            "-m",
            &m,
            "-d",
            &d,
            "--limit",
            "60",
            "--q",
            "8",
            "--test",
            &d,
            "--test-limit",
            "50",
        ]),
    );
}

#[test]
fn finetune_survives_random_kills() {
    let (m, d) = (lenet(), mnist());
    soak(
        "finetune",
        &args(&[
            "finetune",
            "-m",
            &m,
            "-d",
            &d,
            "--limit",
            "256",
            "--epochs",
            "3",
            "--batch-size",
            "32",
        ]),
    );
}

#[test]
fn metrics_survive_random_kills() {
    let (m, d) = (lenet(), mnist());
    let defended = shared("models/mnist/mnist-lenet5-advtrained.onnx")
        .display()
        .to_string();
    soak(
        "metrics",
        &args(&[
            "metrics",
            "-m",
            &m,
            "-d",
            &d,
            "--limit",
            "30",
            "--batch-size",
            "6",
            "--steps",
            "5",
            "--black-box-queries",
            "20",
            "--defended",
            &defended,
            "--baseline",
            &defended,
            "--corruptions",
            "gaussian_noise,contrast",
            "--severities",
            "2",
            "--mfr-frames",
            "3",
            "--boundary-directions",
            "2",
            "--boundary-limit",
            "12",
            "--ebd2-steps",
            "40",
        ]),
    );
}

#[test]
fn calibrate_survives_random_kills() {
    let (m, d) = (lenet(), mnist());
    soak(
        "calibrate",
        &args(&[
            "calibrate",
            "-m",
            &m,
            "-d",
            &d,
            "--limit",
            "256",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--test",
            &d,
            "--test-limit",
            "200",
            "--seen",
            "gaussian_blur",
            "--unseen",
            "contrast,fog",
            "--severities",
            "1,5",
            "--width",
            "4",
            "--blocks",
            "1",
        ]),
    );
}

#[test]
fn reverse_survives_random_kills() {
    let (m, d) = (lenet(), mnist());
    soak(
        "reverse",
        &args(&[
            "reverse",
            "-m",
            &m,
            "-d",
            &d,
            "--limit",
            "30",
            "--batch-size",
            "6",
            "--corruptions",
            "gaussian_noise",
            "--severities",
            "3",
        ]),
    );
}

#[test]
fn quantize_survives_random_kills() {
    let (m, d) = (lenet(), mnist());
    soak(
        "quantize",
        &args(&[
            "quantize",
            "-m",
            &m,
            "-d",
            &d,
            "--calibration",
            &d,
            "--calibration-limit",
            "20",
            "--bits",
            "4",
            "--limit",
            "60",
            "--batch-size",
            "6",
        ]),
    );
}

#[test]
fn audit_survives_random_kills() {
    let (m, d) = (lenet(), mnist());
    soak(
        "audit",
        &args(&[
            "audit",
            "-m",
            &m,
            "-d",
            &d,
            "--limit",
            "24",
            "--batch-size",
            "6",
        ]),
    );
}
