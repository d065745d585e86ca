//! Arguments shared by subcommands (model, data, threads) and turning them into a loaded model
//! and data set. The embedded demo (ResNet-20 and the CIFAR-10 test images shipped under
//! `demo/`) is used when neither --model nor --data is given.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use faultline::data::{self, Dataset, Format, LoadOptions, Split};
use faultline::engine::Normalization;
use faultline::model::{load_model, LoadedModel};

/// The demo folder of the source tree this binary was built from.
pub fn demo_dir() -> PathBuf {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../demo"));
    p.canonicalize().unwrap_or(p)
}

/// The demo model.
pub fn demo_model() -> PathBuf {
    demo_dir().join("cifar10-resnet20.onnx")
}

fn demo_data() -> PathBuf {
    demo_dir().join("cifar10-test")
}

/// Which model, and how it expects its input.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// ONNX classifier to analyse [default: the demo ResNet-20 for CIFAR-10, when --data is
    /// also omitted]
    #[arg(long, value_name = "M.onnx")]
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
    #[arg(long, value_name = "PATH")]
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
    /// Evaluate only the first N samples [default: all]
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// A model bound to a data set.
pub struct Loaded {
    pub model: LoadedModel,
    pub data: Box<dyn Dataset>,
    pub model_path: PathBuf,
    pub data_path: PathBuf,
}

/// Loads data then model (the model is bound to the data's image shape).
pub fn load(m: &ModelArgs, d: &DataArgs) -> Result<Loaded> {
    let (model_path, data_path) = match (&m.model, &d.data) {
        (Some(mp), Some(dp)) => (mp.clone(), dp.clone()),
        (None, None) => {
            let (mp, dp) = (demo_model(), demo_data());
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
    let opts = LoadOptions {
        format: d.format,
        resize: d.resize,
        center_crop: d.center_crop,
        classes_file: d.classes.clone(),
        labels: d.labels.clone(),
        split: if d.split == "train" {
            Split::Train
        } else {
            Split::Test
        },
    };
    // Library errors name the file themselves: no extra context needed.
    let data = data::open(&data_path, &opts)?;
    let info = data.info();
    let norm = match (&m.mean, &m.std) {
        (Some(mean), Some(std)) => Some(Normalization {
            mean: mean.clone(),
            std: std.clone(),
        }),
        _ => None,
    };
    let model = load_model(&model_path, [info.channels, info.height, info.width], norm)?;
    if model.card.num_classes != info.num_classes() {
        eprintln!(
            "note: the model has {} outputs and the data set {} classes",
            model.card.num_classes,
            info.num_classes()
        );
    }
    if let Some(rule) = &model.card.layout {
        eprintln!("note: {rule}");
    }
    Ok(Loaded {
        model,
        data,
        model_path,
        data_path,
    })
}

/// A progress bar for `what` over `len` samples (hidden when `quiet`; indicatif also hides it
/// when stderr is not a terminal).
pub fn progress(what: &str, len: usize, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    let template =
        format!("{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{msg}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
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
