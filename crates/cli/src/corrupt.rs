//! `faultline corrupt`: writes a CIFAR-10-C-style corrupted copy of a data set — one `.npy` per
//! family with the chosen severities stacked (`[S·N, H, W, C]` uint8, severity-major, like
//! CIFAR-10-C's 5 × 10,000 rows) plus `labels.npy` — or an image folder
//! `DIR/<family>/<severity>/<class>/<index>.png`. Progress is recorded per sample in
//! `samples.jsonl`, so a killed run resumes where it stopped.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use faultline::run::corrupt::{self, CorruptConfig, Layout};
use faultline::run::Output;

use crate::common::{Bar, DataArgs};

/// Arguments of `faultline corrupt`.
#[derive(Args, Debug)]
#[command(mut_arg("data", |a| a.help(
    "Data set to corrupt: a CIFAR binary file or folder, an MNIST IDX file or folder, an image \
     folder (one sub-folder per class), or a .npy/.npz file"
)))]
pub struct CorruptArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Output directory
    #[arg(short, long, value_name = "DIR")]
    pub out: PathBuf,
    /// Families: all, standard (the 15 of CIFAR-10-C), extra (the other 4) or a list such as fog,snow
    #[arg(long, default_value = "all", value_name = "LIST")]
    pub corruptions: String,
    /// Severities: a range such as 1-5 or a list such as 1,3,5
    #[arg(long, default_value = "1-5", value_name = "S")]
    pub severities: String,
    /// Seed of the random families (each sample gets its own stream derived from it)
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    /// Parameter table: cifar or imagenet [default: by image size, cifar up to 84 px]
    #[arg(long, value_name = "T", value_parser = ["cifar", "imagenet"])]
    pub table: Option<String>,
    /// Output layout: npy (CIFAR-10-C style) or folder (PNG files)
    #[arg(long, default_value = "npy", value_parser = ["npy", "folder"])]
    pub output: String,
    /// Images per batch
    #[arg(long, default_value_t = 256, value_name = "B")]
    pub batch_size: usize,
    /// Replace a different run already in --out instead of refusing
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(args: &CorruptArgs) -> Result<()> {
    let Some(path) = &args.data.data else {
        bail!("corrupt needs --data")
    };
    let data = faultline::data::open(path, &args.data.options())?;
    let info = data.info().clone();
    let cfg = CorruptConfig {
        plan: crate::eval::plan(
            &Some(args.corruptions.clone()),
            &args.severities,
            &args.table,
            args.seed,
            (info.height, info.width),
        )?
        .context("a corruption plan")?,
        layout: if args.output == "npy" {
            Layout::Npy
        } else {
            Layout::Folder
        },
        selection: args.data.selection(0)?,
        batch_size: args.batch_size,
    };
    let settings = faultline::run::data_settings(data.as_ref(), path, &args.data.options());
    let out = Output {
        dir: args.out.clone(),
        overwrite: args.overwrite,
        scratch: false,
    };
    let r = corrupt::run(&cfg, data.as_ref(), settings, &out, &Bar::new())?;
    println!(
        "wrote {} x {} severities of {} images to {} in {:.1} s",
        cfg.plan.kinds.len(),
        cfg.plan.severities.len(),
        r.images,
        args.out.display(),
        r.runtime.seconds
    );
    Ok(())
}
