//! `faultline corrupt`: writes a CIFAR-10-C-style corrupted copy of a data set — one `.npy` per
//! family with the chosen severities stacked (`[S·N, H, W, C]` uint8, severity-major, like
//! CIFAR-10-C's 5 × 10,000 rows) plus `labels.npy` — or an image folder
//! `DIR/<family>/<severity>/<class>/<index>.png`. Progress is recorded per sample in
//! `samples.jsonl`, so a killed run resumes where it stopped.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use faultline::corruption::{parse_kinds, parse_severities, CorruptionPlan, ParamTable};
use faultline::data::{self, LoadOptions, Split};
use faultline::record::RunDir;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::common::{progress, DataArgs};
use crate::npy_out::NpyRows;

/// Arguments of `faultline corrupt`.
#[derive(Args, Debug)]
pub struct CorruptArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Output directory
    #[arg(long, value_name = "DIR")]
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

#[derive(Serialize, Deserialize)]
struct Done {
    index: usize,
    label: usize,
}

pub fn run(args: &CorruptArgs) -> Result<()> {
    let Some(path) = &args.data.data else {
        bail!("corrupt needs --data")
    };
    let opts = LoadOptions {
        format: args.data.format,
        resize: args.data.resize,
        center_crop: args.data.center_crop,
        classes_file: args.data.classes.clone(),
        labels: args.data.labels.clone(),
        split: if args.data.split == "train" {
            Split::Train
        } else {
            Split::Test
        },
    };
    let ds = data::open(path, &opts)?;
    let info = ds.info().clone();
    let n = args.data.limit.map_or(info.len, |l| l.min(info.len));
    let plan = CorruptionPlan {
        kinds: parse_kinds(&args.corruptions)?,
        severities: parse_severities(&args.severities)?,
        table: match args.table.as_deref() {
            Some(t) => t.parse::<ParamTable>()?,
            None => ParamTable::for_size(info.height, info.width),
        },
        seed: args.seed,
    };
    let settings = json!({ "data": path, "format": info.format.name(), "limit": args.data.limit, "plan": plan,
                           "output": args.output, "resize": args.data.resize, "center_crop": args.data.center_crop });
    let (mut rd, done) = RunDir::open::<Done>(&args.out, "corrupt", settings, args.overwrite)?;
    let start = done.len().min(n);
    let fresh = start == 0;
    let (c, h, w) = (info.channels, info.height, info.width);
    let s = plan.severities.len();
    let npy = args.output == "npy";
    let mut files = Vec::new();
    if npy {
        for k in &plan.kinds {
            files.push(NpyRows::open(
                &args.out.join(format!("{}.npy", k.name())),
                "|u1",
                1,
                &[s * n, h, w, c],
                !fresh,
            )?);
        }
    }
    // Labels as uint8 like CIFAR-10-C, or int64 when there are more than 256 classes.
    let wide = info.num_classes() > 256;
    let (descr, width) = if wide { ("<i8", 8) } else { ("|u1", 1) };
    let mut labels = NpyRows::open(&args.out.join("labels.npy"), descr, width, &[s * n], !fresh)?;
    if start > 0 {
        eprintln!(
            "resuming {}: {start} of {n} samples already written",
            args.out.display()
        );
    }
    eprintln!(
        "{} corruptions x {} severities ({} table, seed {}) on {} images of {}x{}x{}",
        plan.kinds.len(),
        s,
        plan.table,
        plan.seed,
        n - start,
        c,
        h,
        w
    );
    let bar = progress("corrupt", n, false);
    bar.set_position(start as u64);
    let t0 = Instant::now();
    for batch in ds.batches(args.batch_size.max(1), start..n)? {
        let batch = batch?;
        let first = batch.indices[0];
        for (fi, &kind) in plan.kinds.iter().enumerate() {
            for (si, &sev) in plan.severities.iter().enumerate() {
                let imgs = plan.corrupt_bytes(&batch, kind, sev)?;
                if npy {
                    let bytes: Vec<u8> = imgs
                        .iter()
                        .flat_map(|i| i.as_slice().iter().copied())
                        .collect();
                    files[fi].write_rows(si * n + first, &bytes)?;
                } else {
                    for (img, (&idx, &y)) in
                        imgs.iter().zip(batch.indices.iter().zip(&batch.labels))
                    {
                        let class = info
                            .class_names
                            .get(y)
                            .cloned()
                            .unwrap_or_else(|| y.to_string());
                        let dir = args.out.join(kind.name()).join(sev.to_string()).join(class);
                        std::fs::create_dir_all(&dir)
                            .with_context(|| format!("creating {}", dir.display()))?;
                        let file = dir.join(format!("{idx:06}.png"));
                        let ct = if c == 1 {
                            image::ExtendedColorType::L8
                        } else {
                            image::ExtendedColorType::Rgb8
                        };
                        image::save_buffer(&file, img.as_slice(), w as u32, h as u32, ct)
                            .with_context(|| format!("writing {}", file.display()))?;
                    }
                }
            }
        }
        for si in 0..s {
            let bytes: Vec<u8> = if wide {
                batch
                    .labels
                    .iter()
                    .flat_map(|&y| (y as i64).to_le_bytes())
                    .collect()
            } else {
                batch.labels.iter().map(|&y| y as u8).collect()
            };
            labels.write_rows(si * n + first, &bytes)?;
        }
        let recs: Vec<Done> = batch
            .indices
            .iter()
            .zip(&batch.labels)
            .map(|(&index, &label)| Done { index, label })
            .collect();
        rd.append(&recs)?;
        bar.set_position((first + batch.len()) as u64);
    }
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let written: Vec<String> = if npy {
        plan.kinds
            .iter()
            .map(|k| format!("{}.npy", k.name()))
            .collect()
    } else {
        plan.kinds
            .iter()
            .map(|k| format!("{}/", k.name()))
            .collect()
    };
    rd.write_run(json!({
        "status": "complete",
        "images": n,
        "files": written,
        "layout": if npy { "[severity * N + i, H, W, C] uint8, severities in the order of plan.severities; labels.npy repeats the labels per severity" } else { "<family>/<severity>/<class>/<index>.png" },
        "runtime": { "seconds": secs, "corrupted_img_per_s": ((n - start) * plan.kinds.len() * s) as f64 / secs.max(1e-9) },
    }))?;
    println!(
        "wrote {} x {} severities of {n} images to {} in {secs:.1} s",
        plan.kinds.len(),
        s,
        args.out.display()
    );
    Ok(())
}
