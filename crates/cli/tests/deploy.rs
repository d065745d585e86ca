//! The deployment files: the Kubernetes manifests parsed and their key fields checked (an
//! Indexed Job whose shard count, completions and `--shard auto` agree, retried per index, on a
//! shared volume, and the merge Job on the same volume), the command they run accepted by the
//! CLI, and the Slurm scripts' shell syntax.

mod util;
use util::*;

use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(rel)
}

fn load(rel: &str) -> Yaml {
    let text = std::fs::read_to_string(deploy(rel)).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one document");
    docs.remove(0)
}

/// `y[a][b]…` by a dotted path (list items by number).
fn at<'a>(y: &'a Yaml, path: &str) -> &'a Yaml {
    path.split('.').fold(y, |y, k| match k.parse::<usize>() {
        Ok(i) => &y[i],
        Err(_) => &y[k],
    })
}

fn text<'a>(y: &'a Yaml, path: &str) -> &'a str {
    at(y, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string: {:?}", at(y, path)))
}

fn int(y: &Yaml, path: &str) -> i64 {
    at(y, path)
        .as_i64()
        .unwrap_or_else(|| panic!("{path} is not a number: {:?}", at(y, path)))
}

/// The value of the container's environment variable `name`.
fn env<'a>(container: &'a Yaml, name: &str) -> &'a Yaml {
    container["env"]
        .as_vec()
        .and_then(|v| v.iter().find(|e| e["name"].as_str() == Some(name)))
        .unwrap_or_else(|| panic!("no env {name}"))
}

#[test]
fn the_kubernetes_manifests_fit_together() {
    let pvc = load("k8s/pvc.yaml");
    assert_eq!(text(&pvc, "kind"), "PersistentVolumeClaim");
    let claim = text(&pvc, "metadata.name");

    let job = load("k8s/shards-job.yaml");
    assert_eq!(text(&job, "apiVersion"), "batch/v1");
    assert_eq!(text(&job, "kind"), "Job");
    assert_eq!(text(&job, "spec.completionMode"), "Indexed");
    let completions = int(&job, "spec.completions");
    let parallelism = int(&job, "spec.parallelism");
    assert!(completions >= 1 && (1..=completions).contains(&parallelism));
    assert!(int(&job, "spec.backoffLimitPerIndex") >= 0);
    // backoffLimitPerIndex needs pods that are not restarted in place.
    assert_eq!(text(&job, "spec.template.spec.restartPolicy"), "Never");
    let c = at(&job, "spec.template.spec.containers.0");
    let count = env(c, "FAULTLINE_SHARD_COUNT")["value"].as_str().unwrap();
    assert_eq!(
        count.parse::<i64>().unwrap(),
        completions,
        "shard count = completions"
    );
    assert_eq!(
        text(env(c, "SHARD_INDEX"), "valueFrom.fieldRef.fieldPath"),
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    );
    let args: Vec<&str> = c["args"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let after = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
    assert_eq!(after("--shard"), "auto");
    let run = env(c, "RUN")["value"].as_str().unwrap();
    assert_eq!(
        after("--out"),
        "/faultline/runs/$(RUN)/shard-$(SHARD_INDEX)"
    );
    let mount = text(c, "volumeMounts.0.mountPath");
    assert!(after("--out").starts_with(mount));
    let vol = at(&job, "spec.template.spec.volumes.0");
    assert_eq!(text(c, "volumeMounts.0.name"), text(vol, "name"));
    assert_eq!(text(vol, "persistentVolumeClaim.claimName"), claim);

    // The pod's command line is one the CLI accepts (it fails later, on the missing data).
    let tmp = tempfile::tempdir().unwrap();
    let expanded: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("$(RUN)", run)
                .replace("$(SHARD_INDEX)", "0")
                .replace("/faultline/", &format!("{}/", tmp.path().display()))
        })
        .collect();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(&expanded)
        .env("JOB_COMPLETION_INDEX", "0")
        .env("FAULTLINE_SHARD_COUNT", count)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(
        !err.contains("Usage:"),
        "the CLI rejects the Job's arguments: {err}"
    );
    assert!(
        err.contains("not found") && err.contains("/data/test"),
        "{err}"
    );

    let merge = load("k8s/merge-job.yaml");
    assert_eq!(text(&merge, "kind"), "Job");
    let mc = at(&merge, "spec.template.spec.containers.0");
    assert_eq!(env(mc, "RUN")["value"].as_str(), Some(run), "the same run");
    let line = mc["args"][0].as_str().unwrap();
    assert!(
        line.contains("faultline merge /faultline/runs/\"$RUN\"/shard-*"),
        "{line}"
    );
    assert!(
        line.contains("--out /faultline/runs/\"$RUN\"/merged"),
        "{line}"
    );
    assert_eq!(text(mc, "volumeMounts.0.mountPath"), mount);
    assert_eq!(
        text(
            &merge,
            "spec.template.spec.volumes.0.persistentVolumeClaim.claimName"
        ),
        claim
    );
    assert_eq!(
        text(&job, "spec.template.spec.containers.0.image"),
        text(mc, "image")
    );
}

#[test]
fn the_slurm_scripts_are_valid_shell() {
    for f in [
        "slurm/faultline.sbatch",
        "slurm/faultline-merge.sbatch",
        "slurm/submit.sh",
        "slurm/ci-cluster.sh",
        "k8s/submit.sh",
    ] {
        let o = std::process::Command::new("bash")
            .arg("-n")
            .arg(deploy(f))
            .output()
            .unwrap();
        assert!(o.status.success(), "{f}: {}", stderr(&o));
    }
    let sbatch = std::fs::read_to_string(deploy("slurm/faultline.sbatch")).unwrap();
    assert!(sbatch.contains("--shard auto"));
    let submit = std::fs::read_to_string(deploy("slurm/submit.sh")).unwrap();
    assert!(submit.contains("--dependency=\"afterok:$array\""));
    let docker = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    assert_eq!(
        docker.matches("\nFROM ").count() + usize::from(docker.starts_with("FROM")),
        2
    );
    assert!(docker.contains("COPY --from=build /src/target/release/faultline"));
}
