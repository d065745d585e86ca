//! `corrupt`: writes a CIFAR-10-C-style corrupted copy of a data set — one `.npy` per family
//! with the chosen severities stacked (`[S·N, H, W, C]` uint8, severity-major, like
//! CIFAR-10-C's 5 × 10,000 rows) plus `labels.npy` — or an image folder
//! `DIR/<family>/<severity>/<class>/<index>.png`. With a selection, the output holds the
//! selected samples only, in ascending data-set order: row `k` of each severity block (and of
//! `labels.npy`) is the `k`-th selected sample, while PNG files keep the data-set index in
//! their names. Progress is recorded per sample in `samples.jsonl` (data-set index and label),
//! so a killed run resumes where it stopped.

use std::time::Instant;

use faultline_data::Dataset;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::corruption::CorruptionPlan;
use crate::error::{io, Error, Result};
use crate::run::npy::NpyRows;
use crate::run::{check_batch_size, Output, Progress};
use crate::rundir::RunDir;
use crate::subset::{read_batches, Selection};

/// Output layout of `corrupt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// CIFAR-10-C style `.npy` files.
    Npy,
    /// PNG files in folders.
    Folder,
}

/// Settings of `corrupt`.
#[derive(Debug, Clone, Serialize)]
pub struct CorruptConfig {
    /// Families, severities, parameter table and seed.
    pub plan: CorruptionPlan,
    /// Output layout.
    pub layout: Layout,
    /// The samples corrupted [default: all]; the output's sample `k` is the `k`-th selected.
    pub selection: Selection,
    /// Images per batch.
    pub batch_size: usize,
}

/// The body of `corrupt`'s `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CorruptReport {
    /// Images corrupted (each under every family × severity).
    pub images: usize,
    /// Files or folders written, one per family.
    pub files: Vec<String>,
    /// How rows are laid out.
    pub layout: String,
    /// Timing.
    pub runtime: CorruptRuntime,
}

/// Timing of a `corrupt` run.
#[derive(Debug, Clone, Serialize)]
pub struct CorruptRuntime {
    /// Wall-clock seconds of this invocation.
    pub seconds: f64,
    /// Corrupted images per second.
    pub corrupted_img_per_s: f64,
}

#[derive(Serialize, Deserialize)]
struct Done {
    index: usize,
    label: usize,
}

/// Runs `corrupt` on the selected samples of `data` (no model needed); `settings` describes
/// where the data came from (the selection is added to it).
pub fn run(
    cfg: &CorruptConfig,
    data: &dyn Dataset,
    settings: serde_json::Value,
    out: &Output,
    progress: &dyn Progress,
) -> Result<CorruptReport> {
    check_batch_size(cfg.batch_size)?;
    crate::run::refuse_shard(&cfg.selection, "corrupt")?;
    let info = data.info().clone();
    let indices = cfg.selection.resolve(data)?;
    let n = indices.len();
    let plan = &cfg.plan;
    let mut settings = settings;
    if let (Some(m), serde_json::Value::Object(d)) =
        (settings.as_object_mut(), cfg.selection.describe(&indices))
    {
        m.extend(d);
    }
    settings["plan"] = serde_json::to_value(plan).unwrap_or_default();
    settings["output"] = json!(cfg.layout);
    // Keep the records that begin the selection (a prefix of it, in order).
    let prefix = |done: &[Done]| {
        done.iter()
            .zip(&indices)
            .take_while(|(d, &i)| d.index == i)
            .count()
    };
    let (mut rd, done) =
        RunDir::open_with::<Done>(&out.dir, "corrupt", settings, out.mode(), prefix)?;
    let start = done.len();
    let fresh = start == 0;
    let (c, h, w) = (info.channels, info.height, info.width);
    let s = plan.severities.len();
    let npy = cfg.layout == Layout::Npy;
    let mut files = Vec::new();
    if npy {
        for k in &plan.kinds {
            files.push(NpyRows::open(
                &out.file(&format!("{}.npy", k.name())),
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
    let mut labels = NpyRows::open(&out.file("labels.npy"), descr, width, &[s * n], !fresh)?;
    if start > 0 {
        progress.note(&format!(
            "resuming {}: {start} of {n} samples already written",
            out.dir.display()
        ));
    }
    progress.note(&format!(
        "{} corruptions x {s} severities ({} table, seed {}) on {} images of {c}x{h}x{w}",
        plan.kinds.len(),
        plan.table,
        plan.seed,
        n - start,
    ));
    progress.start("corrupt", n, start);
    let t0 = Instant::now();
    let mut first = start;
    for batch in read_batches(data, &indices[start..], cfg.batch_size)? {
        let batch = batch?;
        for (fi, &kind) in plan.kinds.iter().enumerate() {
            for (si, &sev) in plan.severities.iter().enumerate() {
                let imgs = plan.corrupt_bytes(&batch, kind, sev)?;
                if npy {
                    let bytes: Vec<u8> = imgs
                        .iter()
                        .flat_map(|i| i.as_slice().iter().copied())
                        .collect();
                    files[fi].write_rows(si * n + first, &bytes)?;
                    continue;
                }
                for (img, (&idx, &y)) in imgs.iter().zip(batch.indices.iter().zip(&batch.labels)) {
                    let class = info
                        .class_names
                        .get(y)
                        .cloned()
                        .unwrap_or_else(|| y.to_string());
                    let dir = out.dir.join(kind.name()).join(sev.to_string()).join(class);
                    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                    let file = dir.join(format!("{idx:06}.png"));
                    let ct = if c == 1 {
                        image::ExtendedColorType::L8
                    } else {
                        image::ExtendedColorType::Rgb8
                    };
                    image::save_buffer(&file, img.as_slice(), w as u32, h as u32, ct).map_err(
                        |e| Error::RunDir {
                            path: file.clone(),
                            why: e.to_string(),
                        },
                    )?;
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
        first += batch.len();
        progress.advance(first);
    }
    progress.finish();
    let secs = t0.elapsed().as_secs_f64();
    let suffix = if npy { ".npy" } else { "/" };
    let report = CorruptReport {
        images: n,
        files: plan
            .kinds
            .iter()
            .map(|k| format!("{}{suffix}", k.name()))
            .collect(),
        layout: if npy {
            "[severity * N + k, H, W, C] uint8 (k: the k-th selected sample, ascending \
             data-set index), severities in the order of plan.severities; labels.npy repeats \
             the labels per severity"
        } else {
            "<family>/<severity>/<class>/<index>.png"
        }
        .into(),
        runtime: CorruptRuntime {
            seconds: secs,
            corrupted_img_per_s: ((n - start) * plan.kinds.len() * s) as f64 / secs.max(1e-9),
        },
    };
    rd.finish(&report)?;
    Ok(report)
}
