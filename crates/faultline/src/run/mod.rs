//! The commands as library functions: each module takes a typed configuration and a loaded model
//! and data set, writes its run directory (`run.json`, `samples.jsonl`, plots) and returns a
//! typed report — the body of `run.json`. The binary parses arguments into these configurations
//! and prints the reports; composite commands (`classwise`) call the others in process on the
//! same loaded model and data.
//!
//! | command | function | report |
//! |---|---|---|
//! | `eval` | [`eval::run`] | [`eval::EvalReport`] |
//! | `attack` | [`attack::run`] | [`attack::AttackReport`] |
//! | `corrupt` | [`corrupt::run`] | [`corrupt::CorruptReport`] |
//! | `classwise` | [`classwise::run`] | [`classwise::ClasswiseRun`] |
//! | `margins` | [`margins::run`] | [`margins::MarginsReport`] |
//! | `bench` | [`bench::run`] | [`bench::BenchReport`] |
//! | `finetune` | [`finetune::run`] | [`finetune::FinetuneReport`] |
//! | `weak` | [`weak::run`] | [`weak::WeakReport`] |
//! | `harden` | [`weak::harden`] | [`weak::HardenReport`] |
//! | `metrics` | [`metrics::run`] | [`metrics::MetricsReport`] |
//! | `compare` | [`compare::run`] | [`compare::CompareReport`] |
//! | `merge` | [`merge::run`] (then the shards' command, resumed) | [`merge::Merged`] |
//! | `audit` | [`audit::run`] | [`audit::AuditReport`] |

pub mod attack;
pub mod audit;
pub mod bench;
pub mod calibrate;
pub mod classwise;
pub mod compare;
pub mod corrupt;
pub mod eval;
pub mod finetune;
pub mod margins;
pub mod merge;
pub mod metrics;
pub mod npy;
pub mod quantize;
pub mod reverse;
pub mod weak;

use std::path::{Path, PathBuf};

use faultline_data::{self as data, Dataset, LoadOptions};
use faultline_engine::Normalization;
use serde::Serialize;

use crate::error::{setting, Result};
use crate::model::{load_model, LoadedModel};
use crate::record::SampleRecord;
use crate::rundir::{whole_samples, RunDir};
use crate::subset::Selection;

/// Where a model and data set come from, and how to read them.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The ONNX file.
    pub model: PathBuf,
    /// The data set (file or folder).
    pub data: PathBuf,
    /// Per-channel means and standard deviations applied outside the graph.
    pub normalization: Option<(Vec<f32>, Vec<f32>)>,
    /// How to read the data.
    pub load: LoadOptions,
}

/// A model bound to a data set.
pub struct Loaded {
    /// The model and its description.
    pub model: LoadedModel,
    /// The data set.
    pub data: Box<dyn Dataset>,
    /// Where the model came from.
    pub model_path: PathBuf,
    /// Where the data came from.
    pub data_path: PathBuf,
    /// How the data was read.
    pub options: LoadOptions,
    /// Notes for the user (layout rules applied, class-count mismatches).
    pub notes: Vec<String>,
}

impl Loaded {
    /// The class names, one per model output: the data set's, then indices for the rest.
    pub fn class_names(&self) -> Vec<String> {
        let k = self.model.card.num_classes;
        let mut names = self.data.info().class_names.clone();
        names.resize_with(k.max(names.len()), String::new);
        for (i, n) in names.iter_mut().enumerate() {
            if n.is_empty() {
                *n = i.to_string();
            }
        }
        names
    }
    /// The data set's description for run records.
    pub fn data_card(&self) -> DataCard {
        DataCard::of(self.data.as_ref(), &self.data_path)
    }
    /// The settings every run's hash includes: model and data, how they were read, and the
    /// selection of samples ([`Selection::describe`]); `indices` is the list
    /// [`Loaded::select`] returned (a shard's part, whose whole selection is resolved again).
    pub fn settings(&self, selection: &Selection, indices: &[usize]) -> Result<serde_json::Value> {
        let mut s = data_settings(self.data.as_ref(), &self.data_path, &self.options);
        s["model"] = serde_json::json!(self.model_path);
        s["model_sha256"] = serde_json::json!(self.model.card.sha256);
        s["normalization"] = serde_json::json!(self.model.card.normalization);
        let all = match selection.shard {
            Some(_) => selection.resolve_all(self.data.as_ref())?,
            None => indices.to_vec(),
        };
        if let (Some(m), serde_json::Value::Object(d)) =
            (s.as_object_mut(), selection.describe(&all))
        {
            m.extend(d);
        }
        Ok(s)
    }
    /// The data-set indices `selection` covers (ascending); see [`Selection::resolve`].
    pub fn select(&self, selection: &Selection) -> Result<Vec<usize>> {
        selection.resolve(self.data.as_ref())
    }
}

/// The settings that describe where `data` came from and how it was read (every run's hash
/// includes them).
pub fn data_settings(data: &dyn Dataset, path: &Path, o: &LoadOptions) -> serde_json::Value {
    serde_json::json!({
        "data": path, "format": data.info().format.name(),
        "split": format!("{:?}", o.split).to_lowercase(), "resize": o.resize,
        "center_crop": o.center_crop, "classes_file": o.classes_file, "labels": o.labels,
    })
}

/// What the run record says about the data set.
#[derive(Debug, Clone, Serialize)]
pub struct DataCard {
    /// The file or folder.
    pub path: PathBuf,
    /// Its format.
    pub format: String,
    /// Samples in it.
    pub len: usize,
    /// `[channels, height, width]`.
    pub image_shape: [usize; 3],
    /// Class names it provides.
    pub class_names: Vec<String>,
}

impl DataCard {
    /// The description of `data`, opened from `path`.
    pub fn of(data: &dyn Dataset, path: &Path) -> DataCard {
        let info = data.info();
        DataCard {
            path: path.to_path_buf(),
            format: info.format.name().to_string(),
            len: info.len,
            image_shape: [info.channels, info.height, info.width],
            class_names: info.class_names.clone(),
        }
    }
}

/// The number of samples of `data` a run over `limit` of them covers; refuses to cover none.
pub fn total(data: &dyn Dataset, limit: Option<usize>) -> Result<usize> {
    let len = data.info().len;
    match limit {
        Some(0) => Err(setting("--limit", "0 selects no samples")),
        _ if len == 0 => Err(crate::Error::Invalid(format!(
            "{}: the data set holds no samples",
            data.info().source.display()
        ))),
        Some(l) => Ok(l.min(len)),
        None => Ok(len),
    }
}

/// Loads the data, then the model bound to the data's image shape.
pub fn load(src: &Source) -> Result<Loaded> {
    let data = data::open(&src.data, &src.load)?;
    let info = data.info();
    let norm = src.normalization.as_ref().map(|(mean, std)| Normalization {
        mean: mean.clone(),
        std: std.clone(),
    });
    let model = load_model(&src.model, [info.channels, info.height, info.width], norm)?;
    Loaded::bind(model, data, &src.model, &src.data, &src.load)
}

impl Loaded {
    /// Binds a model already prepared for the data's image shape to the data set (read from
    /// `data_path` with `options`), checking that they fit and noting what the user should
    /// know. [`load`] calls it; the Python bindings call it with a model they keep loaded and
    /// arrays held in memory.
    pub fn bind(
        model: LoadedModel,
        data: Box<dyn Dataset>,
        model_path: &Path,
        data_path: &Path,
        options: &LoadOptions,
    ) -> Result<Loaded> {
        let info = data.info();
        let mut notes = Vec::new();
        // An image folder numbers its class folders by sorted position: with a class folder
        // missing, every later class would silently take the label of the one before it.
        if info.format == data::Format::ImageFolder
            && options.classes_file.is_none()
            && info.num_classes() < model.card.num_classes
        {
            return Err(setting(
                "--classes",
                format!(
                    "{} has {} class folders but the model has {} outputs, so folder k would be \
                     read as class k and every class after a missing folder would shift; pass \
                     --classes FILE listing the model's {} class names in output order \
                     (folders are then matched by name)",
                    data_path.display(),
                    info.num_classes(),
                    model.card.num_classes,
                    model.card.num_classes
                ),
            ));
        }
        if model.card.num_classes != info.num_classes() {
            notes.push(format!(
                "the model has {} outputs and the data set {} classes",
                model.card.num_classes,
                info.num_classes()
            ));
        }
        if let Some(rule) = &model.card.layout {
            notes.push(rule.clone());
        }
        Ok(Loaded {
            model,
            data,
            model_path: model_path.to_path_buf(),
            data_path: data_path.to_path_buf(),
            options: options.clone(),
            notes,
        })
    }
}

/// Where a run writes its records.
#[derive(Debug, Clone)]
pub struct Output {
    /// The run directory.
    pub dir: PathBuf,
    /// Replace a different run already there instead of refusing.
    pub overwrite: bool,
    /// A scratch directory (the CLI's default `runs/<command>`): a run with other settings
    /// there is replaced with a note instead of refused; one with the same settings resumes.
    pub scratch: bool,
}

impl Output {
    /// A sub-directory for a step of a composite command.
    pub fn sub(&self, name: &str) -> Output {
        Output {
            dir: self.dir.join(name),
            ..self.clone()
        }
    }
    /// What opening the run directory does with a run already there.
    pub fn mode(&self) -> crate::rundir::Overwrite {
        use crate::rundir::Overwrite;
        match (self.overwrite, self.scratch) {
            (true, _) => Overwrite::Yes,
            (false, true) => Overwrite::IfDifferent,
            (false, false) => Overwrite::No,
        }
    }
    /// A file in the run directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// How a run reports progress: every method has a silent default, so a library caller passes
/// [`Silent`] and the binary a progress bar.
pub trait Progress: Sync {
    /// A phase over `total` samples starts, `done` of them already recorded (a resumed run).
    fn start(&self, _what: &str, _total: usize, _done: usize) {}
    /// `done` samples of the phase are recorded.
    fn advance(&self, _done: usize) {}
    /// A running figure to show beside the count.
    fn message(&self, _msg: &str) {}
    /// A line for the user (resumption, notes, warnings).
    fn note(&self, _line: &str) {}
    /// The phase ended.
    fn finish(&self) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {}

/// Engine settings of a run, recorded with it.
#[derive(Debug, Clone, Serialize)]
pub struct Runtime {
    /// Worker threads.
    pub threads: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Wall-clock seconds of this invocation.
    pub seconds: f64,
    /// Samples already recorded by an interrupted run this one resumed.
    pub resumed_from: usize,
    /// Forward passes (attacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_passes: Option<u64>,
    /// Backward passes (attacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backward_passes: Option<u64>,
    /// Images per second (evaluation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub img_per_s: Option<f64>,
}

/// Opens the run directory of a per-sample `command` over the samples `indices` (in that
/// order) with `per_sample` records each: a fresh run, or the whole samples of an interrupted
/// run with the same settings, which cover a prefix of `indices` (a cut batch is recomputed).
/// Returns the directory, the records kept and the number of samples they cover (the position
/// in `indices` to continue from).
pub fn open_records(
    out: &Output,
    command: &str,
    settings: serde_json::Value,
    per_sample: usize,
    indices: &[usize],
    progress: &dyn Progress,
) -> Result<(RunDir, Vec<SampleRecord>, usize)> {
    let complete = |recs: &[SampleRecord]| whole_samples(recs, per_sample, indices);
    let (rd, records) = RunDir::open_with(&out.dir, command, settings, out.mode(), complete)?;
    if let Some(line) = rd.replaced() {
        progress.note(line);
    }
    let start = records.len() / per_sample.max(1);
    if start > 0 {
        let done = match command {
            "eval" => "evaluated",
            "attack" => "attacked",
            "margins" => "measured",
            _ => "done",
        };
        progress.note(&format!(
            "resuming {}: {start} of {} samples already {done}",
            out.dir.display(),
            indices.len()
        ));
    }
    Ok((rd, records, start))
}

/// Refuses a shard for `command`, whose results are not per-sample records that `merge` could
/// join.
pub fn refuse_shard(selection: &Selection, command: &str) -> Result<()> {
    match &selection.shard {
        Some(s) => Err(setting(
            "--shard",
            format!(
                "{command} cannot be sharded (shard {}): its results are not per-sample records \
                 that merge could join; shard eval, attack, classwise, margins or weak",
                s.label()
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses a batch size of 0.
pub fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(setting("--batch-size", "must be at least 1"));
    }
    Ok(())
}

/// Writes a text file of the run (a plot), naming it in the error.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(crate::error::io(path))
}

/// The number of worker threads in rayon's global pool.
pub fn threads() -> usize {
    rayon::current_num_threads()
}
