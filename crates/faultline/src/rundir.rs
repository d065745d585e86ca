//! Run directories: `run.json` (settings, versions, results under stable keys) and
//! `samples.jsonl` (one JSON object per sample, appended as results arrive).
//!
//! A run is identified by a hash of its command and result-relevant settings. Opening a
//! directory that holds an unfinished run with the same hash resumes it: the valid records are
//! returned (a line cut short by a kill is dropped and the file truncated to the last complete
//! record) and the caller continues after them. A directory holding a different run is refused
//! unless the caller asks to overwrite it, so nothing is lost by a mistyped `--out`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{io, Error, Result};
use crate::record::SampleRecord;

/// How many leading records of an interrupted run to keep (for [`RunDir::open_with`]): those of
/// the samples that begin `indices` (the run's samples in the order it covers them) and have
/// all `per_sample` records. Records are appended batch by batch, so the complete samples come
/// first and a cut batch is dropped whole.
pub fn whole_samples(records: &[SampleRecord], per_sample: usize, indices: &[usize]) -> usize {
    // The longest prefix in which the samples appear in the order of `indices` (by their first
    // record) and every sample present has all its records: a batch writes its records ε by ε
    // (or condition by condition), so a cut batch leaves some samples short and is dropped
    // whole, whatever order its records came in.
    let mut count = std::collections::HashMap::new();
    let (mut short, mut keep, mut seen) = (0usize, 0usize, 0usize);
    for (i, r) in records.iter().enumerate() {
        let c = count.entry(r.index).or_insert(0usize);
        if *c == 0 {
            // A new sample must be the next one of the list.
            if indices.get(seen) != Some(&r.index) {
                break;
            }
            seen += 1;
            short += 1;
        }
        *c += 1;
        if *c == per_sample {
            short -= 1;
        }
        if *c > per_sample {
            break;
        }
        if short == 0 {
            keep = i + 1;
        }
    }
    keep
}

/// The command line of this process and its working directory, recorded in the `run.json` of
/// a shard (`--shard`) so that `faultline merge` can run the same command again over the joined
/// records ([`set_invocation`]; absent from unsharded runs, whose records stay as they were).
static INVOCATION: std::sync::OnceLock<Value> = std::sync::OnceLock::new();

/// Records this process's command line `argv` (program name first) and working directory for
/// the run records of shards; the binary calls it once at start.
pub fn set_invocation(argv: Vec<String>, cwd: PathBuf) {
    let _ = INVOCATION.set(json!({ "argv": argv, "cwd": cwd }));
}

/// Version of the `run.json` / `samples.jsonl` layout.
pub const SCHEMA_VERSION: u32 = 2;

/// An open run directory.
#[derive(Debug)]
pub struct RunDir {
    dir: PathBuf,
    samples: File,
    command: String,
    settings: Value,
    hash: String,
    started: u64,
    replaced: Option<String>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Hash of a command and its result-relevant settings (hex SHA-256 of the canonical JSON).
pub fn settings_hash(command: &str, settings: &Value) -> String {
    let canon = serde_json::to_vec(&json!({ "command": command, "settings": settings }))
        .unwrap_or_default();
    Sha256::digest(&canon)
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The settings that differ between an old run and a new one, as `key: old → new` (nested keys
/// joined by dots; at most 6, then a count).
pub fn differences(old: &Value, new: &Value) -> Vec<String> {
    fn walk(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(
                        &p,
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            _ if a != b => {
                let short = |v: &Value| {
                    let t = v.to_string();
                    if t.chars().count() > 40 {
                        format!("{}…", t.chars().take(40).collect::<String>())
                    } else {
                        t
                    }
                };
                out.push(format!("{prefix}: {} → {}", short(a), short(b)));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    if out.len() > 6 {
        let more = out.len() - 6;
        out.truncate(6);
        out.push(format!("{more} more"));
    }
    if out.is_empty() {
        out.push("the faultline version or record schema".into());
    }
    out
}

/// What to do with a run directory that already holds a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Resume a run with the same settings; refuse one with other settings.
    No,
    /// Replace whatever is there.
    Yes,
    /// Resume a run with the same settings; replace one with other settings, saying so
    /// ([`RunDir::replaced`]): the default `runs/<command>` scratch directories.
    IfDifferent,
}

impl From<bool> for Overwrite {
    fn from(yes: bool) -> Self {
        if yes {
            Overwrite::Yes
        } else {
            Overwrite::No
        }
    }
}

impl RunDir {
    /// Opens `dir` for `command`; returns the directory and the records of an interrupted run
    /// with the same settings (empty for a fresh run).
    pub fn open<R: DeserializeOwned>(
        dir: &Path,
        command: &str,
        settings: Value,
        overwrite: impl Into<Overwrite>,
    ) -> Result<(RunDir, Vec<R>)> {
        Self::open_with(dir, command, settings, overwrite, |r: &[R]| r.len())
    }

    /// [`RunDir::open`] where `keep` decides how many leading records of an interrupted run
    /// are complete (e.g. only whole groups of records that belong together); the rest is
    /// dropped from the file and recomputed.
    pub fn open_with<R: DeserializeOwned>(
        dir: &Path,
        command: &str,
        settings: Value,
        overwrite: impl Into<Overwrite>,
        keep: impl FnOnce(&[R]) -> usize,
    ) -> Result<(RunDir, Vec<R>)> {
        let overwrite: Overwrite = overwrite.into();
        let mut replaced = None;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut ends = Vec::new();
        let hash = settings_hash(command, &settings);
        let run_path = dir.join("run.json");
        let samples_path = dir.join("samples.jsonl");
        let mut resumed = Vec::new();
        let mut keep_len = 0u64;
        if run_path.exists() && overwrite != Overwrite::Yes {
            let text = std::fs::read_to_string(&run_path).map_err(io(&run_path))?;
            let old: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(_) if overwrite == Overwrite::IfDifferent => Value::Null,
                Err(e) => {
                    return Err(Error::Invalid(format!(
                        "{}: not a faultline run record ({e}); pass --overwrite to replace it",
                        run_path.display()
                    )))
                }
            };
            let same = old.get("settings_hash").and_then(Value::as_str) == Some(hash.as_str());
            if !same {
                let old_command = old
                    .get("command")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown command");
                let what = if old_command != command {
                    format!("an earlier `{old_command}` run")
                } else {
                    let diffs = differences(old.get("settings").unwrap_or(&Value::Null), &settings);
                    format!("{old_command} with other settings: {}", diffs.join(", "))
                };
                if overwrite != Overwrite::IfDifferent {
                    return Err(Error::Invalid(format!(
                        "{} holds a different run ({what}); choose another --out or pass --overwrite",
                        dir.display(),
                    )));
                }
                replaced = Some(format!(
                    "replacing {} ({what}); pass -o DIR to keep runs apart",
                    dir.display()
                ));
            }
            if same && samples_path.exists() {
                let f = File::open(&samples_path).map_err(io(&samples_path))?;
                let mut reader = BufReader::new(f);
                let mut line = String::new();
                loop {
                    line.clear();
                    let n = reader.read_line(&mut line).map_err(io(&samples_path))?;
                    if n == 0 || !line.ends_with('\n') {
                        break;
                    }
                    match serde_json::from_str::<R>(line.trim_end()) {
                        Ok(r) => {
                            resumed.push(r);
                            keep_len += n as u64;
                            ends.push(keep_len);
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        let kept = keep(&resumed).min(resumed.len());
        resumed.truncate(kept);
        keep_len = if kept == 0 { 0 } else { ends[kept - 1] };
        let samples = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&samples_path)
            .map_err(io(&samples_path))?;
        samples.set_len(keep_len).map_err(io(&samples_path))?;
        let mut samples = samples;
        use std::io::Seek;
        samples
            .seek(std::io::SeekFrom::End(0))
            .map_err(io(&samples_path))?;
        let rd = RunDir {
            dir: dir.to_path_buf(),
            samples,
            command: command.to_string(),
            settings,
            hash,
            started: now(),
            replaced,
        };
        rd.write_run(json!({ "status": "running" }))?;
        Ok((rd, resumed))
    }

    /// What an [`Overwrite::IfDifferent`] open replaced, as a line for the user.
    pub fn replaced(&self) -> Option<&str> {
        self.replaced.as_deref()
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Appends records, one JSON line each, and flushes them to the OS before returning.
    pub fn append<R: Serialize>(&mut self, records: &[R]) -> Result<()> {
        let mut buf = Vec::with_capacity(records.len() * 96);
        for r in records {
            serde_json::to_writer(&mut buf, r)
                .map_err(|e| Error::Invalid(format!("serializing a record: {e}")))?;
            buf.push(b'\n');
        }
        let p = self.dir.join("samples.jsonl");
        self.samples.write_all(&buf).map_err(io(&p))?;
        self.samples.flush().map_err(io(&p))?;
        Ok(())
    }

    /// Writes the finished run's `run.json`: the standard fields, `"status": "complete"` and the
    /// fields of `report` (a command's typed report is the body of its run record).
    pub fn finish<B: Serialize>(&self, report: &B) -> Result<()> {
        let mut body = serde_json::to_value(report)
            .map_err(|e| Error::Invalid(format!("serializing the report: {e}")))?;
        if let Value::Object(m) = &mut body {
            m.insert("status".into(), json!("complete"));
        }
        self.write_run(body)
    }

    /// Writes `run.json` atomically: the standard fields (schema, command, versions, settings and
    /// their hash, start time) merged with `body` (status, results, headline keys, …).
    pub fn write_run(&self, body: Value) -> Result<()> {
        let mut run = json!({
            "schema_version": SCHEMA_VERSION,
            "command": self.command,
            "versions": { "faultline": env!("CARGO_PKG_VERSION") },
            "settings": self.settings,
            "settings_hash": self.hash,
            "started_unix": self.started,
            "updated_unix": now(),
        });
        if let (Some(inv), true) = (INVOCATION.get(), self.settings.get("shard").is_some()) {
            run["invocation"] = inv.clone();
        }
        if let (Some(m), Value::Object(b)) = (run.as_object_mut(), body) {
            m.extend(b);
        }
        let path = self.dir.join("run.json");
        let tmp = self.dir.join("run.json.tmp");
        let text = serde_json::to_string_pretty(&run).map_err(|e| Error::Invalid(e.to_string()))?;
        std::fs::write(&tmp, text + "\n").map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(index: usize, eps: f32) -> SampleRecord {
        SampleRecord {
            index,
            label: 0,
            condition: crate::record::Condition::Attack {
                name: "pgd".into(),
                norm: faultline_attacks::Norm::Linf,
                eps: Some(eps),
            },
            prediction: 0,
            logit_margin: 1.0,
            clean_prediction: Some(0),
            attack: None,
            margin: None,
            flag: None,
        }
    }

    #[test]
    fn a_batch_cut_between_radii_is_dropped_whole() {
        // Batch 1 (samples 0, 1) complete at both radii; batch 2 (samples 2, 3) cut after the
        // first radius and sample 2 of the second.
        let recs = vec![
            at(0, 0.1),
            at(1, 0.1),
            at(0, 0.2),
            at(1, 0.2),
            at(2, 0.1),
            at(3, 0.1),
            at(2, 0.2),
        ];
        let list: Vec<usize> = (0..10).collect();
        assert_eq!(whole_samples(&recs, 2, &list), 4);
        assert_eq!(whole_samples(&recs[..4], 2, &list), 4);
        assert_eq!(whole_samples(&recs, 2, &list[..1]), 0);
        assert_eq!(whole_samples(&recs[..3], 2, &list), 0);
    }

    #[test]
    fn resumed_samples_are_a_prefix_of_the_selection() {
        // A stratified selection: data-set indices 3, 40, 41, 90, records in that order.
        let recs = vec![at(3, 0.1), at(40, 0.1), at(41, 0.1), at(90, 0.1)];
        assert_eq!(whole_samples(&recs, 1, &[3, 40, 41, 90, 95]), 4);
        // Records of another list (another selection): only the common prefix is kept.
        assert_eq!(whole_samples(&recs, 1, &[3, 40, 50, 90]), 2);
        assert_eq!(whole_samples(&recs, 1, &[0, 1, 2, 3]), 0);
    }
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Rec {
        index: usize,
        v: f32,
    }

    #[test]
    fn resumes_after_a_cut_line_and_refuses_other_settings() {
        let tmp = tempfile::tempdir().unwrap();
        let s = json!({"limit": 10});
        {
            let (mut rd, done) = RunDir::open::<Rec>(tmp.path(), "eval", s.clone(), false).unwrap();
            assert!(done.is_empty());
            rd.append(&[Rec { index: 0, v: 1.0 }, Rec { index: 1, v: 2.0 }])
                .unwrap();
        }
        // Simulate a kill in the middle of writing the third line.
        let p = tmp.path().join("samples.jsonl");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"index\":2,\"v\"").unwrap();
        drop(f);
        let (mut rd, done) = RunDir::open::<Rec>(tmp.path(), "eval", s.clone(), false).unwrap();
        assert_eq!(
            done,
            vec![Rec { index: 0, v: 1.0 }, Rec { index: 1, v: 2.0 }]
        );
        rd.append(&[Rec { index: 2, v: 3.0 }]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with("{\"index\":2,\"v\":3.0}\n"));
        let err = RunDir::open::<Rec>(tmp.path(), "eval", json!({"limit": 11}), false).unwrap_err();
        assert!(err.to_string().contains("different run"));
        // It names the setting that differs (issue 24 item 8).
        assert!(err.to_string().contains("limit: 10 → 11"), "{err}");
        let err =
            RunDir::open::<Rec>(tmp.path(), "attack", json!({"limit": 10}), false).unwrap_err();
        assert!(err.to_string().contains("an earlier `eval` run"), "{err}");
        let (_, done) =
            RunDir::open::<Rec>(tmp.path(), "eval", json!({"limit": 11}), true).unwrap();
        assert!(done.is_empty());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }
}
