//! The Slurm deployment on a real scheduler: `deploy/slurm/submit.sh` submits a 2-task array of
//! `faultline audit` (`faultline.sbatch`, `--shard auto`) and the merge job
//! (`--dependency=afterok`); the merged audit must equal the unsharded one (compared as the soak test compares). Needs a running
//! cluster (`deploy/slurm/ci-cluster.sh` starts a single-node one); without `sbatch` the test
//! is skipped with a note, unless `FAULTLINE_SLURM_CHECKS=required` (CI), which makes it fail.

mod util;
use util::*;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Why the scheduler cannot be used, or None when it answers with a node up.
fn unavailable() -> Option<String> {
    let sinfo = Command::new("sinfo").args(["-h", "-o", "%T"]).output();
    match sinfo {
        Err(_) => Some("sinfo/sbatch not found (install slurm-wlm)".into()),
        Ok(o) if !o.status.success() => Some(format!(
            "sinfo failed (no cluster running? deploy/slurm/ci-cluster.sh starts one): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(o) => {
            let states = String::from_utf8_lossy(&o.stdout).into_owned();
            let up = states
                .lines()
                .any(|s| ["idle", "mixed", "allocated"].contains(&s.trim()));
            (!up).then(|| format!("no Slurm node is up (states: {})", states.trim()))
        }
    }
}

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "out") {
                out += &format!(
                    "--- {}\n{}\n",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap_or_default()
                );
            }
        }
    }
    out
}

#[test]
fn a_slurm_array_and_its_merge_job_equal_the_unsharded_run() {
    let required = std::env::var("FAULTLINE_SLURM_CHECKS").is_ok_and(|v| v == "required");
    if let Some(why) = unavailable() {
        assert!(!required, "FAULTLINE_SLURM_CHECKS=required but {why}");
        eprintln!("skipping the Slurm test: {why}");
        return;
    }
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (m, d) = (lenet(), mnist());
    // The audit (quick preset): every section is a sharded run directory.
    let args = [
        "audit",
        "-m",
        &m,
        "-d",
        &d,
        "--limit",
        "24",
        "--batch-size",
        "6",
    ];
    // Absolute directories: the audit's advice names them, and the comparison replaces each
    // run's own path.
    let whole_dir = t.join("whole").display().to_string();
    // One thread, as each Slurm task has one CPU (`--cpus-per-task=1` below): the audit
    // records the thread count.
    let whole = run(
        t,
        &[&args[..], &["--threads", "1", "-o", &whole_dir]].concat(),
    );
    assert!(whole.status.success(), "{}", stderr(&whole));

    let submit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/slurm/submit.sh");
    let o = Command::new(&submit)
        .args(["ci", "2"])
        .args(args)
        .env("FAULTLINE", env!("CARGO_BIN_EXE_faultline"))
        .env("FAULTLINE_RUNS", t.join("runs"))
        .env("FAULTLINE_SBATCH", "--cpus-per-task=1")
        .current_dir(t)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "submit.sh: {said}{}", stderr(&o));
    // "array ID merge ID"
    let ids: Vec<&str> = said.split_whitespace().collect();
    assert!(
        ids.len() == 4 && ids[0] == "array" && ids[2] == "merge",
        "{said}"
    );
    let (array, merge) = (ids[1], ids[3]);
    let runs = t.join("runs/ci");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let q = Command::new("squeue")
            .args(["-h", "-o", "%i %T %r", "-j", &format!("{array},{merge}")])
            .output()
            .unwrap();
        let queue = String::from_utf8_lossy(&q.stdout).into_owned();
        if queue.trim().is_empty() {
            break;
        }
        assert!(
            !queue.contains("DependencyNeverSatisfied"),
            "a shard failed, so the merge job never ran:\n{queue}\n{}",
            logs(&runs)
        );
        assert!(
            Instant::now() < deadline,
            "the jobs did not finish within 10 minutes:\n{queue}\n{}",
            logs(&runs)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let merged = runs.join("merged");
    assert!(
        merged.join("run.json").exists(),
        "no merged run:\n{}",
        logs(&runs)
    );
    assert_eq!(json(&merged.join("run.json"))["status"], "complete");
    for k in [1, 2] {
        let s = json(&runs.join(format!("shard-{k}/run.json")));
        assert_eq!(
            s["settings"]["shard"]["index"], k,
            "task {k} ran shard {k}/2"
        );
    }
    compare(
        &snapshot(&t.join("whole")),
        &merged,
        "the Slurm array merged",
    );
    eprintln!(
        "slurm: array {array} (2 shards) and merge job {merge} equal the unsharded run ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
}
