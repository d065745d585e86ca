//! Arguments shared by subcommands (model, data, output), turning them into the library's
//! [`Source`] and [`Output`], and the progress bar the library reports to. The embedded demo
//! (ResNet-20 and the CIFAR-10 test images shipped under `demo/`) is used when neither --model
//! nor --data is given.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use clap::Args;
use faultline::data::{Format, LoadOptions, Split};
use faultline::run::{Loaded, Output, Progress, Source};
use faultline::subset::{Selection, Shard, Subset};

/// The demo folder of the source tree this binary was built from.
pub fn demo_dir() -> PathBuf {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../demo"));
    p.canonicalize().unwrap_or(p)
}

/// The demo model.
pub fn demo_model() -> PathBuf {
    demo_dir().join("cifar10-resnet20.onnx")
}

/// Which model, and how it expects its input.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// ONNX classifier to analyse [default: the demo ResNet-20 for CIFAR-10, when --data is
    /// also omitted]
    #[arg(short, long, value_name = "M.onnx")]
    pub model: Option<PathBuf>,
    /// Per-channel means to subtract, for models that expect normalized input but do not
    /// normalize inside their graph, e.g. 0.4914,0.4822,0.4465 [default: none]
    #[arg(long, value_delimiter = ',', value_name = "M,M,M", requires = "std")]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviations to divide by (with --mean) [default: none]
    #[arg(long, value_delimiter = ',', value_name = "S,S,S", requires = "mean")]
    pub std: Option<Vec<f32>>,
}

/// Which data, and how to read it.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Data set: a CIFAR binary file or folder, an MNIST IDX file or folder, an image folder
    /// (one sub-folder per class), or a .npy/.npz file [default: the demo CIFAR-10 test images,
    /// when --model is also omitted]
    #[arg(short, long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Data format: cifar10, cifar100, idx, folder, npy [default: detected from PATH]
    #[arg(long, value_name = "F")]
    pub format: Option<Format>,
    /// File with one class name per line (overrides the names the data set provides)
    #[arg(long, value_name = "FILE")]
    pub classes: Option<PathBuf>,
    /// Labels array for a .npy image file [default: labels.npy or <stem>_labels.npy beside it]
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Which split of a folder holding both (MNIST folder, cifar-10-batches-bin)
    #[arg(long, default_value = "test", value_parser = ["test", "train"])]
    pub split: String,
    /// Image folders: resize the shorter side to this many pixels [default: no resize]
    #[arg(long, value_name = "PX")]
    pub resize: Option<u32>,
    /// Image folders: centre-crop to this square size after resizing [default: no crop]
    #[arg(long, value_name = "PX")]
    pub center_crop: Option<u32>,
    /// Use N samples, picked by --subset [default: all]
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// How --limit picks its samples: stratified (the same number from every class, the first
    /// of each in file order), first (samples 0..N) or random (seeded by --subset-seed)
    #[arg(long, default_value = "stratified", value_name = "HOW", value_parser = ["stratified", "first", "random"])]
    pub subset: String,
    /// Seed of --subset random [default: 0; finetune: its --seed]
    #[arg(long, value_name = "SEED")]
    pub subset_seed: Option<u64>,
    /// File of data-set indices to use, one per line (blank lines and # comments ignored);
    /// --limit then picks among them [default: every sample]
    #[arg(long, value_name = "FILE")]
    pub indices: Option<PathBuf>,
    /// Process part I of N of the selected samples (every N-th, from the I-th; 1-based), for
    /// cluster array jobs joined by `faultline merge`; `auto` reads the part from a Slurm array
    /// (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT) or a Kubernetes Indexed Job
    /// (JOB_COMPLETION_INDEX, with N from auto/N or FAULTLINE_SHARD_COUNT) [default: all]
    #[arg(long, value_name = "I/N|auto")]
    pub shard: Option<String>,
}

impl DataArgs {
    /// Which samples to use; `seed` seeds --subset random when --subset-seed is not given.
    pub fn selection(&self, seed: u64) -> Result<Selection> {
        Ok(Selection {
            limit: self.limit,
            subset: Subset::parse(&self.subset)?,
            seed: self.subset_seed.unwrap_or(seed),
            indices: self.indices.clone(),
            shard: self
                .shard
                .as_deref()
                .map(|s| Shard::parse(s, &|k| std::env::var(k).ok()))
                .transpose()?,
        })
    }
    /// How the library should read the data.
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            format: self.format,
            resize: self.resize,
            center_crop: self.center_crop,
            classes_file: self.classes.clone(),
            labels: self.labels.clone(),
            split: if self.split == "train" {
                Split::Train
            } else {
                Split::Test
            },
        }
    }
    /// How to read a held-out set (`--test`, `--val`) beside the training data: the format
    /// options of --data, but the test split of a folder holding both, and its own labels
    /// (--labels names the training array's).
    pub fn held_out_options(&self) -> LoadOptions {
        LoadOptions {
            split: Split::Test,
            labels: None,
            ..self.options()
        }
    }
}

/// Where a run writes, with the default `runs/<command>` (scratch space, replaced).
#[derive(Args, Debug, Clone)]
pub struct OutArgs {
    /// Run directory for run.json and samples.jsonl; an interrupted run with the same settings
    /// resumes there [default: runs/<command>]
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace a different run already in --out instead of refusing
    #[arg(long)]
    pub overwrite: bool,
}

impl OutArgs {
    /// The output of `command`; the default directory is scratch space: a run with the same
    /// settings resumes there, one with other settings replaces it and says so.
    pub fn output(&self, command: &str) -> Output {
        match &self.out {
            Some(d) => Output {
                dir: d.clone(),
                overwrite: self.overwrite,
                scratch: false,
            },
            None => Output {
                dir: PathBuf::from("runs").join(command),
                overwrite: self.overwrite,
                scratch: true,
            },
        }
    }
}

/// Resolves the model and data paths (the demo when both are omitted).
pub fn source(m: &ModelArgs, d: &DataArgs) -> Result<Source> {
    let (model, data) = match (&m.model, &d.data) {
        (Some(mp), Some(dp)) => (mp.clone(), dp.clone()),
        (None, None) => {
            let (mp, dp) = (demo_model(), demo_dir().join("cifar10-test"));
            if !mp.exists() || !dp.exists() {
                bail!(
                    "the demo files were not found under {}; pass --model and --data",
                    demo_dir().display()
                );
            }
            (mp, dp)
        }
        (None, Some(_)) => {
            bail!("--data was given without --model: pass the model to evaluate on it")
        }
        (Some(_), None) => {
            bail!("--model was given without --data: pass the data set to evaluate it on")
        }
    };
    Ok(Source {
        model,
        data,
        normalization: m.mean.clone().zip(m.std.clone()),
        load: d.options(),
    })
}

/// Loads model and data, printing the library's notes.
pub fn load(m: &ModelArgs, d: &DataArgs) -> Result<Loaded> {
    let loaded = faultline::run::load(&source(m, d)?)?;
    for n in &loaded.notes {
        eprintln!("note: {n}");
    }
    Ok(loaded)
}

/// Progress on stderr: a bar on a terminal; elsewhere (a log, a pipe, a batch job) one status
/// line every `FAULTLINE_STATUS_SECS` seconds (default 10) and one when a phase ends.
pub struct Bar {
    bar: Mutex<Option<indicatif::ProgressBar>>,
    /// Off a terminal (where indicatif draws nothing): the phase, for periodic status lines.
    status: Mutex<Option<Status>>,
    terminal: bool,
    /// Seconds between status lines off a terminal (`FAULTLINE_STATUS_SECS`, default 10).
    every: f64,
}

/// A phase as the status lines off a terminal describe it.
struct Status {
    what: String,
    total: usize,
    first: usize,
    done: usize,
    started: std::time::Instant,
    printed: std::time::Instant,
    msg: String,
}

impl Status {
    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = (self.done - self.first) as f64 / secs;
        let eta = if rate > 0.0 && self.done < self.total {
            format!(", eta {}", duration((self.total - self.done) as f64 / rate))
        } else {
            String::new()
        };
        let pct = 100.0 * self.done as f64 / self.total.max(1) as f64;
        let msg = if self.msg.is_empty() {
            String::new()
        } else {
            format!("  {}", self.msg)
        };
        format!(
            "{}: {}/{} ({pct:.0} %), {rate:.1}/s{eta}{msg}",
            self.what, self.done, self.total
        )
    }
}

/// `95 s`, `12 min 5 s`, `2 h 3 min`.
fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=99 => format!("{s} s"),
        100..=5999 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

impl Bar {
    /// A bar that shows nothing until a phase starts.
    pub fn new() -> Self {
        use std::io::IsTerminal;
        Bar {
            bar: Mutex::new(None),
            status: Mutex::new(None),
            terminal: std::io::stderr().is_terminal(),
            every: std::env::var("FAULTLINE_STATUS_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(10.0),
        }
    }
    fn with(&self, f: impl FnOnce(&indicatif::ProgressBar)) {
        if let Ok(g) = self.bar.lock() {
            if let Some(b) = g.as_ref() {
                f(b);
            }
        }
    }
    fn with_status(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut g) = self.status.lock() {
            if let Some(s) = g.as_mut() {
                f(s);
            }
        }
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: usize, done: usize) {
        if !self.terminal {
            let now = std::time::Instant::now();
            if let Ok(mut g) = self.status.lock() {
                *g = Some(Status {
                    what: what.to_string(),
                    total,
                    first: done,
                    done,
                    started: now,
                    printed: now,
                    msg: String::new(),
                });
            }
            return;
        }
        let bar = indicatif::ProgressBar::new(total as u64);
        // Rates rounded to one decimal; the ETA is indicatif's, from the measured rate.
        let template =
            format!("{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{rate}} eta {{eta}} {{msg}}");
        if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
            let style = style
                .with_key(
                    "rate",
                    |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.1}/s", s.per_sec());
                    },
                )
                .progress_chars("=> ");
            bar.set_style(style);
        }
        bar.set_position(done as u64);
        if let Ok(mut g) = self.bar.lock() {
            *g = Some(bar);
        }
    }
    fn advance(&self, done: usize) {
        self.with(|b| b.set_position(done as u64));
        let every = self.every;
        self.with_status(|s| {
            s.done = done;
            if s.printed.elapsed().as_secs_f64() >= every {
                s.printed = std::time::Instant::now();
                eprintln!("{}", s.line());
            }
        });
    }
    fn message(&self, msg: &str) {
        let msg = msg.to_string();
        self.with_status(|s| s.msg = msg.clone());
        self.with(|b| b.set_message(msg));
    }
    fn note(&self, line: &str) {
        let mut shown = false;
        self.with(|b| {
            b.suspend(|| eprintln!("{line}"));
            shown = true;
        });
        if !shown {
            eprintln!("{line}");
        }
    }
    fn finish(&self) {
        if let Ok(mut g) = self.bar.lock() {
            if let Some(b) = g.take() {
                b.finish_and_clear();
            }
        }
        if let Ok(mut g) = self.status.lock() {
            if let Some(s) = g.take() {
                // One closing line per phase off a terminal, so a log shows how it ended.
                eprintln!("{}", s.line());
            }
        }
    }
}

/// Sets the size of rayon's global pool (all cores when `None`).
pub fn set_threads(threads: Option<usize>) -> Result<usize> {
    let n = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if n == 0 {
        bail!("--threads must be at least 1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("configuring threads")?;
    Ok(n)
}

/// Parses radii given as decimals or fractions.
pub fn parse_radii(v: &Option<Vec<String>>) -> Result<Vec<f32>> {
    Ok(v.iter()
        .flatten()
        .map(|s| faultline::eps::parse_eps(s))
        .collect::<std::result::Result<_, _>>()?)
}
