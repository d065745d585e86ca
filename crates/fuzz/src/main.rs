//! `faultline-fuzz`: mutation fuzzing of faultline's parsers (ONNX and its external data, IDX,
//! CIFAR binary, npy, npz, PNG and JPEG folders) and of its command line, on the stable
//! toolchain.
//!
//! ```text
//! faultline-fuzz run TARGET|all [--seconds 60] [--execs N] [--seed 0] [--out fuzz-out] [--shared ../shared]
//! faultline-fuzz replay TARGET FILE [--shared ../shared]
//! faultline-fuzz list
//! ```
//!
//! A supervisor process runs each target in a worker child process and watches it: the worker
//! mutates valid seed files, runs the parser as faultline does and prints one line per input.
//! The properties checked: no panic or abort (the worker dies: the input is kept under
//! `OUT/TARGET/crashes/`), no hang (no line within the time limit), and bounded memory (the
//! worker's address space is capped at 4 GiB, so a file that makes a parser allocate what its
//! header declares, without checking it against the file, aborts and is kept as a crash).
//! `OUT/TARGET/status.txt` holds the counts so far, rewritten every 30 s.
//! Inputs reaching a new outcome (a new kind of error) join the corpus, a cheap stand-in for
//! coverage feedback.

mod cli;
mod mutate;
mod targets;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use mutate::{mutate, Rng};
use targets::{Target, TARGETS};

/// Address-space cap of a worker.
const MEMORY_CAP: u64 = 4 << 30;

struct Options {
    targets: Vec<String>,
    seconds: Option<u64>,
    execs: Option<u64>,
    seed: u64,
    out: PathBuf,
    shared: PathBuf,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        targets: Vec::new(),
        seconds: None,
        execs: None,
        seed: 0,
        out: PathBuf::from("fuzz-out"),
        shared: PathBuf::from("../shared"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{flag} needs a value"))
        };
        match a.as_str() {
            "--seconds" => o.seconds = Some(value(a)?.parse().context("--seconds")?),
            "--execs" => o.execs = Some(value(a)?.parse().context("--execs")?),
            "--seed" => o.seed = value(a)?.parse().context("--seed")?,
            "--out" => o.out = value(a)?.into(),
            "--shared" => o.shared = value(a)?.into(),
            "all" => o.targets.extend(TARGETS.iter().map(|t| t.to_string())),
            t if !t.starts_with('-') => o.targets.push(t.to_string()),
            f => bail!("unknown flag {f}"),
        }
    }
    if o.targets.is_empty() {
        bail!("name a target (one of {}) or all", TARGETS.join(", "));
    }
    if o.seconds.is_none() && o.execs.is_none() {
        o.seconds = Some(60);
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("list") => {
            println!("{}", TARGETS.join("\n"));
            Ok(true)
        }
        Some("run") => parse(&args[1..]).and_then(|o| supervise(&o)),
        Some("worker") => worker(&args[1..]).map(|_| true),
        Some("replay") => replay(&args[1..]).map(|_| true),
        _ => Err(anyhow::anyhow!(
            "usage: faultline-fuzz run TARGET|all [--seconds S] [--execs N] [--seed S] [--out DIR] [--shared DIR] | replay TARGET FILE [--shared DIR] | list"
        )),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// What one target's fuzzing found.
struct Summary {
    execs: u64,
    seconds: f64,
    outcomes: usize,
    crashes: Vec<String>,
    /// Command lines still running at the time limit (`cli` only), kept under `slow/`.
    slow: usize,
}

/// Runs every target in turn; true when none crashed or hung.
fn supervise(o: &Options) -> Result<bool> {
    let mut clean = true;
    println!(
        "{:<14} {:>9} {:>8} {:>9} {:>8} {:>7} {:>5}",
        "target", "execs", "seconds", "execs/s", "outcomes", "crashes", "slow"
    );
    for (i, t) in o.targets.iter().enumerate() {
        let s = fuzz_target(o, t, o.seed.wrapping_add(i as u64 * 1000))?;
        println!(
            "{:<14} {:>9} {:>8.0} {:>9.1} {:>8} {:>7} {:>5}",
            t,
            s.execs,
            s.seconds,
            s.execs as f64 / s.seconds.max(1e-9),
            s.outcomes,
            s.crashes.len(),
            s.slow
        );
        for c in &s.crashes {
            println!("  {c}");
        }
        clean &= s.crashes.is_empty();
    }
    Ok(clean)
}

enum Event {
    Line(String),
    Exit,
}

fn fuzz_target(o: &Options, name: &str, seed: u64) -> Result<Summary> {
    let dir = o.out.join(name);
    let work = dir.join("work");
    let crashes = dir.join("crashes");
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&crashes)?;
    std::fs::create_dir_all(dir.join("slow"))?;
    // Build the target once here so seed errors are reported before any worker starts.
    Target::new(name, &work, &o.shared)?;
    let limit = if name == "cli" {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(30)
    };
    let start = Instant::now();
    let deadline = o.seconds.map(|s| start + Duration::from_secs(s));
    let mut summary = Summary {
        execs: 0,
        seconds: 0.0,
        outcomes: 0,
        crashes: Vec::new(),
        slow: 0,
    };
    let mut outcomes = HashSet::new();
    let mut worker_seed = seed;
    let mut last_status = Instant::now();
    'workers: loop {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["worker", name, "--seed", &worker_seed.to_string()])
            .arg("--dir")
            .arg(&work)
            .arg("--shared")
            .arg(&o.shared)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(work.join("stderr.txt"))?))
            .spawn()
            .context("starting a worker")?;
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(Event::Line(l)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = tx.send(Event::Exit);
        });
        loop {
            let done = deadline.is_some_and(|d| Instant::now() >= d)
                || o.execs.is_some_and(|n| summary.execs >= n);
            if done {
                let _ = child.kill();
                let _ = child.wait();
                break 'workers;
            }
            if last_status.elapsed() >= Duration::from_secs(30) {
                // A run stopped from outside still leaves its counts.
                last_status = Instant::now();
                let secs = start.elapsed().as_secs_f64();
                std::fs::write(
                    dir.join("status.txt"),
                    format!(
                        "{name}: {} execs in {secs:.0} s ({:.1}/s), {} outcomes, {} crashes, {} slow\n",
                        summary.execs,
                        summary.execs as f64 / secs.max(1e-9),
                        outcomes.len(),
                        summary.crashes.len(),
                        summary.slow
                    ),
                )?;
            }
            match rx.recv_timeout(limit) {
                Ok(Event::Line(l)) => {
                    summary.execs += 1;
                    if l.starts_with("CRASH") {
                        summary.crashes.push(keep(&work, &crashes, &l)?);
                    } else if l.starts_with("SLOW") {
                        keep(&work, &dir.join("slow"), &l)?;
                        summary.slow += 1;
                    }
                    outcomes.insert(l);
                }
                Ok(Event::Exit) => {
                    let status = child.wait()?;
                    let err = std::fs::read_to_string(work.join("stderr.txt")).unwrap_or_default();
                    // The panic message (or the allocation failure) names what went wrong.
                    let tail: String = err
                        .lines()
                        .filter(|l| l.contains("panicked") || l.contains("memory allocation"))
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" | ");
                    summary.crashes.push(keep(
                        &work,
                        &crashes,
                        &format!("worker died ({status}): {tail}"),
                    )?);
                    worker_seed = worker_seed.wrapping_add(1);
                    continue 'workers;
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    summary.crashes.push(keep(
                        &work,
                        &crashes,
                        &format!("hang: no result within {} s", limit.as_secs()),
                    )?);
                    worker_seed = worker_seed.wrapping_add(1);
                    continue 'workers;
                }
            }
        }
    }
    summary.seconds = start.elapsed().as_secs_f64();
    summary.outcomes = outcomes.len();
    Ok(summary)
}

/// Copies the worker's current input to `crashes/` with a note of what happened.
fn keep(work: &Path, crashes: &Path, what: &str) -> Result<String> {
    let n = std::fs::read_dir(crashes)?.count() / 2;
    let input = crashes.join(format!("{n}.bin"));
    let _ = std::fs::copy(work.join("current.bin"), &input);
    std::fs::write(crashes.join(format!("{n}.txt")), what)?;
    Ok(format!("{}: {what}", input.display()))
}

/// Runs one kept input again in this process and prints its outcome (a panic shows itself).
fn replay(args: &[String]) -> Result<()> {
    let (Some(name), Some(file)) = (args.first(), args.get(1)) else {
        bail!("replay needs a target and an input file");
    };
    let shared = match args.iter().position(|a| a == "--shared") {
        Some(i) => PathBuf::from(args.get(i + 1).context("--shared needs a value")?),
        None => PathBuf::from("../shared"),
    };
    let dir = std::env::temp_dir().join(format!("faultline-fuzz-replay-{}", std::process::id()));
    let target = Target::new(name, &dir, &shared)?;
    let input = std::fs::read(file).with_context(|| format!("reading {file}"))?;
    println!("{}", target.exec(&input));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The worker: mutates, writes `current.bin`, runs the target, prints the outcome; forever.
fn worker(args: &[String]) -> Result<()> {
    let name = args.first().context("worker needs a target")?;
    let get = |flag: &str| -> Result<String> {
        let i = args
            .iter()
            .position(|a| a == flag)
            .with_context(|| format!("worker needs {flag}"))?;
        args.get(i + 1).cloned().context("missing value")
    };
    let seed: u64 = get("--seed")?.parse()?;
    let dir = PathBuf::from(get("--dir")?);
    let shared = PathBuf::from(get("--shared")?);
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limits.
    unsafe {
        let lim = libc::rlimit {
            rlim_cur: MEMORY_CAP,
            rlim_max: MEMORY_CAP,
        };
        libc::setrlimit(libc::RLIMIT_AS, &lim);
    }
    let target = Target::new(name, &dir, &shared)?;
    let mut corpus = target.seeds.clone();
    let mut seen = HashSet::new();
    let mut rng = Rng::new(seed);
    let out = std::io::stdout();
    loop {
        let parent = &corpus[rng.below(corpus.len())];
        let other = &corpus[rng.below(corpus.len())];
        let mut input = parent.clone();
        if target.name == "cli" && rng.chance(2) {
            cli::mutate(&mut input, &mut rng);
        } else {
            mutate(&mut input, other, &mut rng, target.max_len);
        }
        std::fs::write(dir.join("current.bin"), &input)?;
        let sig: String = target
            .exec(&input)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(300)
            .collect();
        {
            let mut o = out.lock();
            writeln!(o, "{sig}")?;
            o.flush()?;
        }
        if !sig.starts_with("CRASH")
            && !sig.starts_with("SLOW")
            && seen.insert(sig)
            && corpus.len() < 2000
        {
            corpus.push(input);
        }
    }
}
