//! `merge`: joins the run directories of the shards of one run (`--shard 1/n` … `n/n`) into the
//! directory the unsharded run would have written.
//!
//! The shards must come from the same command with the same settings apart from the shard
//! (which include the model's SHA-256, the data set and how it was read, and the selection's
//! sample list), be complete, and together hold every selected sample exactly once. Their
//! per-sample records (`samples.jsonl`, and `.npy` files with one row per sample) are written
//! in the unsharded run's order and layout, with the unsharded settings in `run.json` and the
//! status `running`: an interrupted unsharded run that has every sample done. The command itself
//! then runs again on it ([`Merged::invocation`]; the binary does this) and, finding every
//! sample recorded, recomputes every aggregate, plot and `run.json` from the records as the
//! unsharded run does. Shards cover whole batches of the unsharded run ([`Shard`]), so their
//! records are the unsharded run's records. Run directories nested in a shard's directory (the steps of a composite
//! command, e.g. `classwise`'s `eval/` and `attack/`) are joined the same way, recursively;
//! nested runs without a shard (e.g. `margins`' `fit/`) must be the same in every shard and are
//! copied.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{io, Error, Result};
use crate::record::SampleRecord;
use crate::robust::SANITY_SAMPLES;
use crate::rundir::{differences, settings_hash, RunDir};
use crate::subset::{indices_sha256, Shard};

/// A change to the joined records (one list of record lines per sample, in the unsharded
/// order) that makes them what the unsharded run would have recorded.
pub type Fixup = fn(&mut [Vec<String>]) -> Result<()>;

/// How `merge` joins the records of a command's shards, before the command runs again on
/// them. A command not listed here cannot be merged.
#[derive(Debug, Clone, Copy)]
pub struct Joiner {
    /// The command writes `samples.jsonl` (one or more records per sample).
    pub records: bool,
    /// What the unsharded run would have recorded differently, fixed on the joined records.
    pub fixup: Option<Fixup>,
}

/// The commands `merge` joins: command name → how. A composite command's steps are nested run
/// directories joined by their own entries.
pub const JOINERS: &[(&str, Joiner)] = &[
    (
        "eval",
        Joiner {
            records: true,
            fixup: None,
        },
    ),
    (
        "attack",
        Joiner {
            records: true,
            fixup: Some(attack_sanity_budget),
        },
    ),
    (
        "margins",
        Joiner {
            records: true,
            fixup: None,
        },
    ),
    (
        "weak",
        Joiner {
            records: true,
            fixup: None,
        },
    ),
    (
        "classwise",
        Joiner {
            records: false,
            fixup: None,
        },
    ),
    (
        "audit",
        Joiner {
            records: false,
            fixup: None,
        },
    ),
];

/// The joiner of `command`.
pub fn joiner(command: &str) -> Option<Joiner> {
    JOINERS.iter().find(|(c, _)| *c == command).map(|(_, j)| *j)
}

/// Settings of `merge`.
#[derive(Debug, Clone)]
pub struct MergeConfig {
    /// The shards' run directories, in any order.
    pub shards: Vec<PathBuf>,
    /// Where the joined run goes.
    pub out: PathBuf,
    /// Replace a run already in `out`.
    pub overwrite: bool,
}

/// What `merge` prepared.
#[derive(Debug, Clone, Serialize)]
pub struct Merged {
    /// The command the shards ran.
    pub command: String,
    /// Number of shards.
    pub shards: usize,
    /// Samples of the joined run.
    pub samples: usize,
    /// The command line of the first shard (`argv`, program name first) and its working
    /// directory: with `--shard` and `--out` replaced (`--shard` removed, `--out` the merged
    /// directory), running it resumes the joined directory and finishes the run.
    pub invocation: Invocation,
}

/// A recorded command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invocation {
    /// Program name first.
    pub argv: Vec<String>,
    /// Working directory it ran in (relative paths in `argv` are relative to it).
    pub cwd: PathBuf,
}

impl Invocation {
    /// The arguments after the program name without `--shard`, `--out`/`-o` and `--overwrite`,
    /// then `--out out`.
    pub fn unsharded(&self, out: &Path) -> Vec<String> {
        let mut args = Vec::new();
        let mut it = self.argv.iter().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--shard" | "--out" | "-o" => {
                    it.next();
                }
                "--overwrite" => {}
                _ if a.starts_with("--shard=") || a.starts_with("--out=") => {}
                _ if a.starts_with("-o") && a.len() > 2 && !a.starts_with("--") => {}
                _ => args.push(a.clone()),
            }
        }
        args.push("--out".into());
        args.push(out.display().to_string());
        args
    }
}

/// A shard's run directory as read.
struct Part {
    dir: PathBuf,
    run: Value,
    shard: Option<Shard>,
}

impl Part {
    fn read(dir: &Path) -> Result<Part> {
        let p = dir.join("run.json");
        if !p.exists() {
            return Err(Error::Invalid(format!(
                "{}: no run.json (not a faultline run directory)",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        let run: Value = serde_json::from_str(&text).map_err(|e| Error::RunDir {
            path: p.clone(),
            why: format!("not a faultline run record ({e})"),
        })?;
        let shard = match run["settings"].get("shard") {
            Some(s) => Some(
                serde_json::from_value(s.clone()).map_err(|e| Error::RunDir {
                    path: p.clone(),
                    why: format!("settings.shard: {e}"),
                })?,
            ),
            None => None,
        };
        Ok(Part {
            dir: dir.to_path_buf(),
            run,
            shard,
        })
    }
    fn command(&self) -> &str {
        self.run["command"].as_str().unwrap_or("")
    }
    fn name(&self) -> String {
        match &self.shard {
            Some(s) => format!("shard {} ({})", s.label(), self.dir.display()),
            None => self.dir.display().to_string(),
        }
    }
    fn setting_usize(&self, key: &str) -> Result<usize> {
        self.run["settings"][key]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| Error::RunDir {
                path: self.dir.join("run.json"),
                why: format!("settings.{key} is missing"),
            })
    }
}

/// The settings of the unsharded run: a shard's without its shard keys (at the top, where
/// [`crate::subset::Selection::describe`] puts them, and in serialized configurations).
pub fn unshard(settings: &Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("shard");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut s = settings.clone();
    if let Some(m) = s.as_object_mut() {
        m.remove("shard_samples");
        m.remove("shard_sha256");
    }
    strip(&mut s);
    s
}

/// Checks the shards in `cfg` and writes their joined records to `cfg.out`; the command must
/// then run again there ([`Merged::invocation`]) to finish the run.
pub fn run(cfg: &MergeConfig) -> Result<Merged> {
    if cfg.shards.is_empty() {
        return Err(Error::Invalid("merge: no shard directories given".into()));
    }
    let parts = cfg
        .shards
        .iter()
        .map(|d| Part::read(d))
        .collect::<Result<Vec<_>>>()?;
    for p in &parts {
        if p.shard.is_none() {
            return Err(Error::Invalid(format!(
                "{}: not a shard (its settings have no --shard)",
                p.dir.display()
            )));
        }
    }
    let out = &cfg.out;
    if out.join("run.json").exists() {
        if !cfg.overwrite {
            return Err(Error::Invalid(format!(
                "{} already holds a run; choose another --out or pass --overwrite",
                out.display()
            )));
        }
        std::fs::remove_dir_all(out).map_err(io(out))?;
    }
    let first = &parts[0];
    let invocation: Invocation =
        serde_json::from_value(first.run["invocation"].clone()).map_err(|_| Error::RunDir {
            path: first.dir.join("run.json"),
            why: "no recorded command line (invocation); was it written by `faultline … --shard`?"
                .into(),
        })?;
    let samples = join(&parts, out)?;
    Ok(Merged {
        command: first.command().to_string(),
        shards: parts.len(),
        samples,
        invocation,
    })
}

/// Joins the run directories `parts` (the same step of every shard) into `out`, then their
/// nested run directories; returns the number of samples.
fn join(parts: &[Part], out: &Path) -> Result<usize> {
    let first = &parts[0];
    let command = first.command();
    for p in &parts[1..] {
        if p.command() != command {
            return Err(Error::Invalid(format!(
                "{} is a `{}` run but {} a `{command}` run",
                p.dir.display(),
                p.command(),
                first.dir.display()
            )));
        }
    }
    let Some(joiner) = joiner(command) else {
        return Err(Error::Invalid(format!(
            "{}: `{command}` runs cannot be merged (merge joins {})",
            first.dir.display(),
            JOINERS
                .iter()
                .map(|(c, _)| *c)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let samples = match first.shard {
        Some(_) => join_shards(parts, joiner, out)?,
        None => copy_unsharded(parts, out)?,
    };
    // Nested run directories, by the same relative path in every shard.
    for sub in nested_runs(&first.dir)? {
        let subs = parts
            .iter()
            .map(|p| {
                let d = p.dir.join(&sub);
                if !d.join("run.json").exists() {
                    return Err(Error::Invalid(format!(
                        "{} has {sub}/run.json but {} has not",
                        first.dir.display(),
                        p.dir.display()
                    )));
                }
                Part::read(&d)
            })
            .collect::<Result<Vec<_>>>()?;
        join(&subs, &out.join(&sub))?;
    }
    Ok(samples)
}

/// The names of the sub-directories of `dir` that hold a run (sorted).
fn nested_runs(dir: &Path) -> Result<Vec<String>> {
    let mut subs = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let p = e.map_err(io(dir))?.path();
        if p.join("run.json").is_file() {
            if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                subs.push(n.to_string());
            }
        }
    }
    subs.sort();
    Ok(subs)
}

/// A nested run without a shard (it ran on other data, e.g. `margins`' `fit/`): the same in
/// every shard, copied from the first (its nested runs are joined by the caller).
fn copy_unsharded(parts: &[Part], out: &Path) -> Result<usize> {
    let first = &parts[0];
    for p in &parts[1..] {
        if p.run["settings_hash"] != first.run["settings_hash"] {
            return Err(Error::Invalid(format!(
                "{} and {} differ: {}",
                first.dir.display(),
                p.dir.display(),
                differences(&first.run["settings"], &p.run["settings"]).join(", ")
            )));
        }
    }
    std::fs::create_dir_all(out).map_err(io(out))?;
    for e in std::fs::read_dir(&first.dir).map_err(io(&first.dir))? {
        let p = e.map_err(io(&first.dir))?.path();
        if p.is_file() {
            if let Some(n) = p.file_name() {
                let to = out.join(n);
                std::fs::copy(&p, &to).map_err(io(&to))?;
            }
        }
    }
    Ok(first.setting_usize("samples").unwrap_or(0))
}

/// Checks the shards of one run and writes their joined records and the unsharded `run.json`
/// (status `running`) to `out`; returns the number of samples.
fn join_shards(parts: &[Part], joiner: Joiner, out: &Path) -> Result<usize> {
    let first = &parts[0];
    let command = first.command();
    let settings = unshard(&first.run["settings"]);
    for p in parts {
        let Some(shard) = p.shard else {
            return Err(Error::Invalid(format!(
                "{}: not a shard (its settings have no --shard) but {} is",
                p.dir.display(),
                first.name()
            )));
        };
        if p.run["status"] != "complete" {
            return Err(Error::Invalid(format!(
                "{} did not finish (status {}): run it again with the same command and it \
                 resumes",
                p.name(),
                p.run["status"]
            )));
        }
        let s = &p.run["settings"];
        if s["model_sha256"] != first.run["settings"]["model_sha256"] {
            return Err(Error::Invalid(format!(
                "{} ran model {} (SHA-256 {}) but {} ran {} (SHA-256 {})",
                p.name(),
                s["model"],
                s["model_sha256"],
                first.name(),
                first.run["settings"]["model"],
                first.run["settings"]["model_sha256"]
            )));
        }
        let other = unshard(s);
        if other != settings {
            return Err(Error::Invalid(format!(
                "{} and {} are not shards of the same run: {}",
                first.name(),
                p.name(),
                differences(&settings, &other).join(", ")
            )));
        }
        if p.run.get("data") != first.run.get("data") {
            return Err(Error::Invalid(format!(
                "{} and {} read different data sets (length, image shape or class names)",
                first.name(),
                p.name()
            )));
        }
        let (count, block) = first.shard.map_or((0, 0), |s| (s.count, s.block));
        if (shard.count, shard.block) != (count, block) {
            return Err(Error::Invalid(format!(
                "{} is one of {} shards in blocks of {} samples but {} one of {count} in \
                 blocks of {block} (the batch size)",
                p.name(),
                shard.count,
                shard.block,
                first.name(),
            )));
        }
    }
    let (n, block) = first.shard.map_or((0, 1), |s| (s.count, s.block.max(1)));
    // Every shard number exactly once.
    let mut by_number: BTreeMap<usize, &Part> = BTreeMap::new();
    for p in parts {
        let i = p.shard.map_or(0, |s| s.index);
        if let Some(q) = by_number.insert(i, p) {
            return Err(Error::Invalid(format!(
                "shard {i}/{n} is given twice: {} and {}",
                q.dir.display(),
                p.dir.display()
            )));
        }
    }
    let missing: Vec<String> = (1..=n)
        .filter(|i| !by_number.contains_key(i))
        .map(|i| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Invalid(format!(
            "shard {} missing (given {} of {n}: {})",
            missing.join(", "),
            by_number.len(),
            by_number
                .values()
                .map(|p| p.dir.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let ordered: Vec<&Part> = by_number.values().copied().collect();
    let total = first.setting_usize("samples")?;
    // Each shard's records, grouped by sample in its order.
    let mut groups: Vec<Vec<(usize, Vec<String>)>> = Vec::with_capacity(n);
    let mut owner: HashMap<usize, usize> = HashMap::new();
    for (k, p) in ordered.iter().enumerate() {
        let g = if joiner.records {
            read_groups(p)?
        } else {
            Vec::new()
        };
        if joiner.records {
            let list: Vec<usize> = g.iter().map(|(i, _)| *i).collect();
            for &i in &list {
                if let Some(o) = owner.insert(i, k) {
                    return Err(Error::Invalid(format!(
                        "sample {i} is in both {} and {}",
                        ordered[o].name(),
                        p.name()
                    )));
                }
            }
            let want = p.setting_usize("shard_samples")?;
            if list.len() != want
                || p.run["settings"]["shard_sha256"] != indices_sha256(&list).as_str()
            {
                return Err(Error::Invalid(format!(
                    "{}: its records cover {} samples, not the {want} of its part of the selection",
                    p.name(),
                    list.len()
                )));
            }
        }
        groups.push(g);
    }
    // The unsharded order: the shards' blocks dealt back in turn (`Shard::locate`).
    let mut merged: Vec<(usize, Vec<String>)> = Vec::with_capacity(total);
    if joiner.records {
        let mut iters: Vec<_> = groups.into_iter().map(|g| g.into_iter()).collect();
        for q in 0..total {
            let (k, row) = Shard::locate(n, block, q);
            let next = iters[k].next().ok_or_else(|| {
                Error::Invalid(format!(
                    "{} lacks its row {row} (sample {q} of {total} of the selection)",
                    ordered[k].name()
                ))
            })?;
            merged.push(next);
        }
        let list: Vec<usize> = merged.iter().map(|(i, _)| *i).collect();
        if settings["samples_sha256"] != indices_sha256(&list).as_str() {
            return Err(Error::Invalid(format!(
                "the shards' samples do not make up the selection of {total} samples recorded \
                 in their settings ({})",
                first.dir.display()
            )));
        }
        let per = merged.first().map_or(0, |(_, l)| l.len());
        if let Some((i, l)) = merged.iter().find(|(_, l)| l.len() != per) {
            return Err(Error::Invalid(format!(
                "sample {i} has {} records but sample {} has {per}",
                l.len(),
                merged[0].0
            )));
        }
    }
    let mut lines: Vec<Vec<String>> = merged.iter().map(|(_, l)| l.clone()).collect();
    if let Some(fix) = joiner.fixup {
        fix(&mut lines)?;
    }
    // Open the joined directory as the unsharded run (status running), then its records in
    // the layout an uninterrupted run writes: batch by batch, within a batch record slot by
    // record slot (every sample's first record, then every sample's second, …).
    let (rd, _) = RunDir::open::<Value>(out, command, settings.clone(), true)?;
    drop(rd);
    debug_assert_eq!(
        settings_hash(command, &settings),
        settings_hash(command, &unshard(&first.run["settings"]))
    );
    if joiner.records {
        let per = lines.first().map_or(0, Vec::len);
        let mut text = String::new();
        for chunk in lines.chunks(block) {
            for slot in 0..per {
                for l in chunk {
                    text.push_str(&l[slot]);
                    text.push('\n');
                }
            }
        }
        let p = out.join("samples.jsonl");
        std::fs::write(&p, text).map_err(io(&p))?;
    }
    join_npy(&ordered, total, block, out)?;
    Ok(total)
}

/// The records of a shard's `samples.jsonl`, grouped by sample (in the order each sample first
/// appears), each sample's lines in file order.
fn read_groups(p: &Part) -> Result<Vec<(usize, Vec<String>)>> {
    #[derive(Deserialize)]
    struct Index {
        index: usize,
    }
    let path = p.dir.join("samples.jsonl");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let mut groups: Vec<(usize, Vec<String>)> = Vec::new();
    let mut at: HashMap<usize, usize> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let r: Index = serde_json::from_str(line).map_err(|e| Error::RunDir {
            path: path.clone(),
            why: format!("line {}: {e}", n + 1),
        })?;
        let g = *at.entry(r.index).or_insert_with(|| {
            groups.push((r.index, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(line.to_string());
    }
    Ok(groups)
}

/// `.npy` files with one row per sample of the shard (attack's `--save-adv` images): joined
/// row by row in the unsharded order.
fn join_npy(parts: &[&Part], total: usize, block: usize, out: &Path) -> Result<()> {
    let n = parts.len();
    let first = parts[0];
    for e in std::fs::read_dir(&first.dir).map_err(io(&first.dir))? {
        let path = e.map_err(io(&first.dir))?.path();
        if path.extension().and_then(|x| x.to_str()) != Some("npy") || !path.is_file() {
            continue;
        }
        let Some(name) = path.file_name() else {
            continue;
        };
        let mut tables = Vec::with_capacity(n);
        for p in parts {
            let f = p.dir.join(name);
            let bytes = std::fs::read(&f).map_err(io(&f))?;
            let Some((descr, shape, data)) = npy_rows(&bytes) else {
                return Ok(());
            };
            let rows = p.setting_usize("shard_samples")?;
            if shape.first() != Some(&rows) {
                // Not one row per sample: an aggregate the command writes again.
                tables.clear();
                break;
            }
            tables.push((descr, shape, data.to_vec()));
        }
        if tables.len() != n {
            continue;
        }
        let (descr, shape) = (tables[0].0.clone(), tables[0].1.clone());
        let row: usize = shape[1..].iter().product::<usize>() * dtype_size(&descr);
        let mut full_shape = shape.clone();
        full_shape[0] = total;
        let mut bytes = super::npy::header(&descr, &full_shape);
        for q in 0..total {
            let (k, r) = Shard::locate(n, block, q);
            let t = &tables[k].2;
            bytes.extend_from_slice(&t[r * row..(r + 1) * row]);
        }
        let to = out.join(name);
        std::fs::write(&to, bytes).map_err(io(&to))?;
    }
    Ok(())
}

/// Bytes per element of an `.npy` dtype such as `<f4` or `|u1`.
fn dtype_size(descr: &str) -> usize {
    descr
        .trim_start_matches(['<', '>', '|', '='])
        .get(1..)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// The dtype, shape and data of an `.npy` file (format 1.0, C order), or None.
fn npy_rows(bytes: &[u8]) -> Option<(String, Vec<usize>, &[u8])> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return None;
    }
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let head = std::str::from_utf8(bytes.get(10..10 + len)?).ok()?;
    if head.contains("'fortran_order': True") {
        return None;
    }
    let descr = head
        .split("'descr': '")
        .nth(1)?
        .split('\'')
        .next()?
        .to_string();
    let dims = head.split("'shape': (").nth(1)?.split(')').next()?;
    let shape = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().ok())
        .collect::<Option<Vec<usize>>>()?;
    Some((descr, shape, &bytes[10 + len..]))
}

/// `attack` with the sanity checks: the unbounded attack checks the first [`SANITY_SAMPLES`]
/// samples of the run still robust at the largest ε. Each shard checked its own first ones, a
/// superset of the unsharded run's (a sample among the run's first robust ones is among its
/// shard's first); the checks past the run's first [`SANITY_SAMPLES`] are undone (the flag
/// removed, their passes taken back out of the sample's totals).
fn attack_sanity_budget(samples: &mut [Vec<String>]) -> Result<()> {
    let mut kept = 0usize;
    for lines in samples.iter_mut() {
        let mut checked = false;
        for line in lines.iter_mut() {
            let mut r: SampleRecord = serde_json::from_str(line)
                .map_err(|e| Error::Invalid(format!("an attack record: {e}")))?;
            let Some(a) = r.attack.as_mut() else { continue };
            if a.unbounded_success.is_none() {
                continue;
            }
            checked = true;
            if kept < SANITY_SAMPLES {
                continue;
            }
            let [f, b] = a.unbounded_passes.ok_or_else(|| {
                Error::Invalid(
                    "an attack record of a shard has an unbounded check without its passes \
                     (written by an older faultline): run the shards again"
                        .into(),
                )
            })?;
            a.forward -= f;
            a.backward -= b;
            a.unbounded_success = None;
            a.unbounded_passes = None;
            *line = serde_json::to_string(&r)
                .map_err(|e| Error::Invalid(format!("an attack record: {e}")))?;
        }
        if checked && kept < SANITY_SAMPLES {
            kept += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_command_line_loses_its_shard_and_output() {
        let inv = Invocation {
            argv: [
                "faultline",
                "attack",
                "-m",
                "m.onnx",
                "--shard",
                "auto",
                "-o",
                "r/1",
                "--overwrite",
                "--limit",
                "8",
                "--out=x",
                "--shard=2/2",
                "-oy",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            cwd: PathBuf::from("/w"),
        };
        assert_eq!(
            inv.unsharded(Path::new("/o")),
            ["attack", "-m", "m.onnx", "--limit", "8", "--out", "/o"]
        );
    }

    #[test]
    fn unsharded_settings_drop_every_shard_key() {
        let s = serde_json::json!({
            "samples": 8, "shard": {"index": 1, "count": 2}, "shard_samples": 4,
            "shard_sha256": "x", "config": {"selection": {"limit": 8, "shard": {"index": 1}}}
        });
        assert_eq!(
            unshard(&s),
            serde_json::json!({"samples": 8, "config": {"selection": {"limit": 8}}})
        );
    }

    #[test]
    fn npy_headers_round_trip() {
        let mut b = super::super::npy::header("<f4", &[3, 2]);
        b.extend_from_slice(&[0u8; 24]);
        let (d, s, data) = npy_rows(&b).unwrap();
        assert_eq!((d.as_str(), s, data.len()), ("<f4", vec![3, 2], 24));
        assert_eq!(dtype_size("<f4"), 4);
        assert_eq!(dtype_size("|u1"), 1);
        assert_eq!(dtype_size("<i8"), 8);
    }
}
