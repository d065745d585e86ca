//! The `cli` target: argument lists for the real `faultline` binary, run as a child process on a
//! 12-image data set, so the whole path from flags to configuration to run is covered. An input
//! is the arguments joined by NUL bytes; `@M` and `@D` stand for the model and the data set.
//! A panic (exit code 101), a death by signal or a failure without an error line is a crash; a
//! run still going after the time limit is kept as slow.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::mutate::Rng;

/// Valid command lines to start from.
const SEEDS: &[&str] = &[
    "eval -m @M -d @D --limit 5",
    "eval -m @M -d @D --corruptions fog,gaussian_noise --severities 1,5 --batch-size 3",
    "attack -m @M -d @D -a pgd --eps 0.1,0.2 --steps 2 --limit 4",
    "attack -m @M -d @D -a fab --steps 3 --restarts 1 --limit 2",
    "attack -m @M -d @D --preset standard --limit 2 --eps 0.3",
    "classwise -m @M -d @D -a fgsm --limit 6 --targeted",
    "margins -m @M -d @D -a deepfool --limit 4 --pseudo-margin --epochs 3",
    "corrupt -d @D --corruptions fog --severities 1 -o out",
    "finetune -m @M -d @D --limit 8 --batch-size 4 --adversarial pgd --steps 1 -o ft",
    "weak -m @M -d @D --limit 8 --q 2 --eps 0.1",
    "bench -m @M --batch-size 1 --iters 1",
    "list --json",
];

/// Tokens a mutation may put in place of another.
const DICTIONARY: &[&str] = &[
    "eval",
    "attack",
    "classwise",
    "margins",
    "corrupt",
    "finetune",
    "weak",
    "harden",
    "bench",
    "list",
    "-m",
    "-d",
    "-o",
    "-a",
    "@M",
    "@D",
    "--limit",
    "--subset",
    "first",
    "random",
    "stratified",
    "--indices",
    "--eps",
    "--norm",
    "linf",
    "l2",
    "l1",
    "--steps",
    "--step-size",
    "--restarts",
    "--batch-size",
    "--threads",
    "--seed",
    "--preset",
    "standard",
    "--target",
    "--loss",
    "ce",
    "dlr",
    "--corruptions",
    "all",
    "--severities",
    "1-5",
    "--format",
    "npy",
    "idx",
    "--resize",
    "--center-crop",
    "--overwrite",
    "--epochs",
    "--lr",
    "--augment",
    "flip",
    "crop",
    "--val",
    "--q",
    "--fraction",
    "--test",
    "--pseudo-margin",
    "--attack-subset",
    "--classes",
    "0",
    "1",
    "-1",
    "2",
    "1e309",
    "NaN",
    "inf",
    "-0",
    "8/255",
    "1/0",
    "0/0",
    "3/",
    "255",
    "4294967296",
    "18446744073709551616",
    "0.5",
    "1.5",
    "",
    ",",
    "1,1",
    "a,b",
    "fgsm",
    "pgd",
    "apgd-ce",
    "apgd-t",
    "fab-t",
    "square",
    "cw",
    "deepfool",
    "none",
    "/nonexistent",
    "@D/x",
    ".",
    "--help",
    "--json",
    "--dry-run",
];

pub fn seeds() -> Vec<Vec<u8>> {
    SEEDS
        .iter()
        .map(|s| s.split(' ').collect::<Vec<_>>().join("\0").into_bytes())
        .collect()
}

/// Token-level mutations: replace, insert, delete or duplicate whole arguments.
pub fn mutate(input: &mut Vec<u8>, rng: &mut Rng) {
    let text = String::from_utf8_lossy(input).into_owned();
    let mut tokens: Vec<String> = text.split('\0').map(str::to_string).collect();
    for _ in 0..1 + rng.below(3) {
        let word = DICTIONARY[rng.below(DICTIONARY.len())].to_string();
        let i = rng.below(tokens.len() + 1);
        match rng.below(4) {
            0 if i < tokens.len() => tokens[i] = word,
            1 => tokens.insert(i, word),
            2 if i < tokens.len() && tokens.len() > 1 => {
                tokens.remove(i);
            }
            _ if i < tokens.len() => {
                let t = tokens[i].clone();
                tokens.insert(i, t);
            }
            _ => tokens.push(word),
        }
    }
    *input = tokens.join("\0").into_bytes();
}

/// The binary to run: `FAULTLINE_BIN`, or `faultline` beside this executable.
fn binary() -> PathBuf {
    std::env::var_os("FAULTLINE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("faultline")))
                .unwrap_or_else(|| PathBuf::from("faultline"))
        })
}

/// Seconds a command line may run before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(20);

pub fn exec(input: &[u8], dir: &Path, shared: &Path) -> Result<String> {
    let data = dir.join("images.npy");
    if !data.exists() {
        crate::targets::write_npy_set(shared, dir)?;
    }
    let model = shared.join("models/mnist/mnist-lenet5-clean.onnx");
    let text = String::from_utf8_lossy(input);
    let args: Vec<String> = text
        .split('\0')
        .map(|t| {
            t.replace("@M", &model.display().to_string())
                .replace("@D", &data.display().to_string())
        })
        .collect();
    let work = dir.join("cwd");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut child = Command::new(binary())
        .args(&args)
        .current_dir(&work)
        .env("FAULTLINE_STATUS_SECS", "3600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            // Without --model and --data a command runs on the 10,000-image demo, which takes
            // minutes: a slow run is kept for review, not counted as a hang.
            return Ok(format!(
                "SLOW after {} s: {}",
                LIMIT.as_secs(),
                args.join(" ")
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(101), _) | (None, _) => Ok(format!(
            "CRASH {status}: {}: {}",
            args.join(" "),
            err.lines()
                .find(|l| l.contains("panicked"))
                .unwrap_or(err.trim())
        )),
        (Some(0), _) => Ok(format!("ok {}", args.first().map_or("", |s| s.as_str()))),
        (Some(code), _) => {
            // A refusal must be one line that says what is wrong (or the usage, when no command
            // is named).
            let lines: Vec<&str> = err
                .lines()
                .filter(|l| l.starts_with("error") || l.starts_with("Usage:"))
                .collect();
            if lines.is_empty() {
                Ok(format!(
                    "CRASH exit {code} without an error line: {}",
                    args.join(" ")
                ))
            } else {
                Ok(crate::targets::signature(lines[0]))
            }
        }
    }
}
