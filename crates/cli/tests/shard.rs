//! Sharded runs: `--shard 1/2` and `--shard 2/2` joined by `merge` give the unsharded run's
//! directory — every file, JSON compared without the fields that measure time (as the soak test
//! compares), everything else byte for byte — for each command that can be sharded, `audit`
//! included (each of its sections is a sharded run directory); `merge`
//! refuses shards that do not belong together with a one-line error; a shard that did not
//! finish is re-run alone and resumes.

mod util;
use util::*;

use std::path::Path;

fn with(args: &[&str], extra: &[&str]) -> Vec<String> {
    args.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn ok(dir: &Path, args: &[String]) -> std::process::Output {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(dir, &argv);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

/// Runs `command` on LeNet-5 and MNIST with `rest` unsharded (`whole`), as shards 1/2 and 2/2
/// (`s1`, `s2`), merges them (`m`) and asserts that `m` equals `whole`. Returns the temporary
/// directory.
fn sharded_equals_unsharded(command: &str, rest: &[&str]) -> tempfile::TempDir {
    let (m, d) = (lenet(), mnist());
    let args = &with(&[command, "-m", &m, "-d", &d], rest);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let args = &args[..];
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    ok(t, &with(args, &["-o", "whole"]));
    ok(t, &with(args, &["--shard", "1/2", "-o", "s1"]));
    ok(t, &with(args, &["--shard", "2/2", "-o", "s2"]));
    let o = ok(t, &with(&["merge", "s2", "s1"], &["-o", "m"]));
    assert!(stderr(&o).contains("2 shards"), "{}", stderr(&o));
    let whole = json(&t.join("whole/run.json"));
    let (s1, s2) = (json(&t.join("s1/run.json")), json(&t.join("s2/run.json")));
    // The shards split the samples and record which part they are.
    assert_eq!(s1["settings"]["shard"]["index"], 1);
    assert_eq!(s2["settings"]["shard"]["count"], 2);
    let n = whole["settings"]["samples"].as_u64().unwrap();
    assert_eq!(
        s1["settings"]["shard_samples"].as_u64().unwrap()
            + s2["settings"]["shard_samples"].as_u64().unwrap(),
        n
    );
    assert!(s1["invocation"]["argv"].is_array());
    compare(&snapshot(&t.join("whole")), &t.join("m"), args[0]);
    tmp
}

#[test]
fn eval_with_corruptions_merges_to_the_unsharded_run() {
    sharded_equals_unsharded(
        "eval",
        &[
            "--limit",
            "30",
            "--batch-size",
            "8",
            "--corruptions",
            "gaussian_noise,fog",
            "--severities",
            "1,3",
        ],
    );
}

#[test]
fn attack_merges_to_the_unsharded_run() {
    // Sanity checks on (their unbounded-attack budget crosses shards) and saved images.
    let tmp = sharded_equals_unsharded(
        "attack",
        &[
            "--limit",
            "40",
            "-a",
            "pgd",
            "--steps",
            "5",
            "--eps",
            "0.05,0.1",
            "--batch-size",
            "6",
            "--save-adv",
        ],
    );
    // The unbounded check ran on more samples across the shards than the run's budget, and
    // the merge kept the run's own.
    let checked = |dir: &str| {
        lines(&tmp.path().join(dir).join("samples.jsonl"))
            .iter()
            .filter(|r| r.get("unbounded_success").is_some())
            .count()
    };
    assert_eq!(checked("m"), checked("whole"));
    assert!(
        checked("s1") + checked("s2") > checked("whole"),
        "the test covers shards checking samples the unsharded run does not"
    );
}

#[test]
fn classwise_merges_to_the_unsharded_run() {
    sharded_equals_unsharded(
        "classwise",
        &[
            "--limit",
            "30",
            "-a",
            "pgd",
            "--steps",
            "3",
            "--batch-size",
            "8",
            "--corruptions",
            "gaussian_noise",
            "--severities",
            "2",
        ],
    );
}

#[test]
fn margins_merge_to_the_unsharded_run() {
    // --attack-subset: the attacked samples are drawn from the whole selection.
    sharded_equals_unsharded(
        "margins",
        &[
            "--limit",
            "16",
            "-a",
            "deepfool",
            "--attack-subset",
            "9",
            "--batch-size",
            "4",
        ],
    );
}

#[test]
fn weak_merges_to_the_unsharded_run() {
    let d = mnist();
    sharded_equals_unsharded(
        "weak",
        &[
            "--limit",
            "40",
            "--q",
            "4",
            "--test",
            &d,
            "--test-limit",
            "20",
        ],
    );
}

#[test]
fn merge_refuses_shards_that_do_not_belong_together() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (m, d) = (lenet(), mnist());
    // `eval` of `model` on `limit` samples as shard `spec` into `out`.
    let shard = |model: &str, limit: &str, spec: &str, out: &str| {
        let args = [
            "eval", "-m", model, "-d", &d, "--limit", limit, "--shard", spec, "-o", out,
        ];
        ok(t, &with(&args, &[]));
    };
    shard(&m, "12", "1/2", "a1");
    shard(&m, "12", "2/2", "a2");
    // A missing shard, a shard given twice.
    assert_clear_error(&run(t, &["merge", "a1", "-o", "x"]), &["shard 2/2 missing"]);
    assert_clear_error(
        &run(t, &["merge", "a1", "a1", "a2", "-o", "x"]),
        &["shard 1/2 is given twice"],
    );
    // Other settings: another limit, another model.
    shard(&m, "14", "2/2", "b2");
    assert_clear_error(
        &run(t, &["merge", "a1", "b2", "-o", "x"]),
        &["not shards of the same run", "limit: 12 → 14"],
    );
    let other = shared("models/mnist/mnist-lenet5-advtrained.onnx");
    shard(&other.display().to_string(), "12", "2/2", "c2");
    assert_clear_error(
        &run(t, &["merge", "a1", "c2", "-o", "x"]),
        &["SHA-256", "advtrained"],
    );
    // Another command; an unsharded run.
    ok(
        t,
        &with(
            &[
                "margins", "-m", &m, "-d", &d, "--limit", "12", "-a", "deepfool",
            ],
            &["--shard", "2/2", "-o", "d2"],
        ),
    );
    assert_clear_error(
        &run(t, &["merge", "a1", "d2", "-o", "x"]),
        &["`margins` run"],
    );
    ok(
        t,
        &with(
            &["eval", "-m", &m, "-d", &d, "--limit", "12"],
            &["-o", "whole"],
        ),
    );
    assert_clear_error(
        &run(t, &["merge", "a1", "whole", "-o", "x"]),
        &["not a shard"],
    );
    assert!(!t.join("x/samples.jsonl").exists(), "nothing merged");
    // Bad shard specifications and commands that cannot be sharded.
    for (spec, needle) in [
        ("3/2", "runs from 1 to 2"),
        ("1/0", "at least 1"),
        ("2", "I/N"),
    ] {
        assert_clear_error(
            &run(t, &["eval", "-m", &m, "-d", &d, "--shard", spec]),
            &[needle],
        );
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["eval", "-m", &m, "-d", &d, "--shard", "auto"])
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .current_dir(t)
        .output()
        .unwrap();
    assert_clear_error(&o, &["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"]);
    assert_clear_error(
        &run(
            t,
            &["finetune", "-m", &m, "-d", &d, "--shard", "1/2", "-o", "f"],
        ),
        &["finetune cannot be sharded"],
    );
}

#[test]
fn an_unfinished_shard_is_refused_then_rerun_alone_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let args = [
        "attack",
        "-m",
        &lenet(),
        "-d",
        &mnist(),
        "--limit",
        "20",
        "-a",
        "fgsm",
        "--batch-size",
        "4",
    ];
    // (A kill leaves whole batches: records are appended batch by batch.)
    ok(t, &with(&args, &["-o", "whole"]));
    ok(t, &with(&args, &["--shard", "1/2", "-o", "s1"]));
    let s2 = with(&args, &["--shard", "2/2", "-o", "s2"]);
    ok(t, &s2);
    // Shard 2 as a killed job leaves it: part of its records, status running.
    let p = t.join("s2/samples.jsonl");
    let text = std::fs::read_to_string(&p).unwrap();
    let keep: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, keep).unwrap();
    let rj = t.join("s2/run.json");
    let mut run_json = json(&rj);
    run_json["status"] = "running".into();
    std::fs::write(&rj, run_json.to_string()).unwrap();
    assert_clear_error(
        &run(t, &["merge", "s1", "s2", "-o", "m"]),
        &["shard 2/2", "did not finish", "resumes"],
    );
    let o = ok(t, &s2);
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    ok(t, &with(&["merge", "s1", "s2"], &["-o", "m"]));
    compare(
        &snapshot(&t.join("whole")),
        &t.join("m"),
        "attack after a resumed shard",
    );
}

/// The standard preset: its metric suite is not sharded but left to the unsharded run that
/// `merge` resumes (the Slurm test covers the quick preset).
#[test]
fn audit_merges_to_the_unsharded_audit() {
    let (m, d) = (lenet(), mnist());
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dir = |name: &str| t.join(name).display().to_string();
    let args = |extra: &[&str]| {
        with(
            &[
                "audit",
                "-m",
                &m,
                "-d",
                &d,
                "--preset",
                "standard",
                "--limit",
                "12",
                "--batch-size",
                "6",
            ],
            extra,
        )
    };
    ok(t, &args(&["-o", &dir("whole")]));
    ok(t, &args(&["--shard", "1/2", "-o", &dir("s1")]));
    ok(t, &args(&["--shard", "2/2", "-o", &dir("s2")]));
    let o = ok(
        t,
        &with(&["merge", &dir("s1"), &dir("s2")], &["-o", &dir("m")]),
    );
    assert!(stderr(&o).contains("2 shards"), "{}", stderr(&o));
    let s1 = json(&t.join("s1/attack/run.json"));
    assert_eq!(s1["settings"]["shard"]["index"], 1, "sections are sharded");
    assert!(
        !t.join("s1/metrics").exists(),
        "a shard leaves the metrics to the merge"
    );
    assert!(t.join("m/metrics/run.json").exists());
    compare(&snapshot(&t.join("whole")), &t.join("m"), "audit");
}
