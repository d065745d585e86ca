//! Which samples a run covers. Image folders list their classes one after the other, so the
//! first N samples of one are a few classes only; a representative subset takes the same number
//! from every class. A [`Selection`] (`--limit`, `--subset`, `--subset-seed`, `--indices`)
//! resolves to the ascending list of data-set indices every per-sample command walks through,
//! in batches read by [`read_batches`]. A [`Shard`] (`--shard i/n`) keeps every n-th of them,
//! so that n jobs of a cluster array split one run (`faultline merge` joins them).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::{Batch, Dataset};
use crate::error::{io, setting, Error, Result};

/// How `--limit N` picks its N samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subset {
    /// Samples 0..N in file order.
    First,
    /// The same number from every class (counts differ by at most one): the first samples of
    /// each class in file order, taken round-robin over the classes in label order. The
    /// default: the subset represents the data, and needs no seed.
    #[default]
    Stratified,
    /// N samples drawn uniformly at random (seeded) without replacement.
    Random,
}

impl Subset {
    /// Parses `first`, `stratified` or `random`.
    pub fn parse(s: &str) -> Result<Subset> {
        match s {
            "first" => Ok(Subset::First),
            "stratified" => Ok(Subset::Stratified),
            "random" => Ok(Subset::Random),
            _ => Err(setting(
                "--subset",
                format!("'{s}' is not one of first, stratified, random"),
            )),
        }
    }

    /// The name [`Subset::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Subset::First => "first",
            Subset::Stratified => "stratified",
            Subset::Random => "random",
        }
    }
}

/// Which samples of a data set a run covers: the indices listed in a file (all samples without
/// one), then at most `limit` of them picked by `subset`. [`Selection::default`] is every
/// sample.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Use at most this many samples [default: all].
    pub limit: Option<usize>,
    /// How `limit` picks them.
    #[serde(default)]
    pub subset: Subset,
    /// Seed of [`Subset::Random`].
    #[serde(default)]
    pub seed: u64,
    /// A text file of data-set indices, one per line (blank lines and `#` comments ignored);
    /// `limit` then picks among them.
    #[serde(default)]
    pub indices: Option<PathBuf>,
    /// The part of the selected samples this run covers (`--shard i/n`) [default: all of
    /// them].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// Part `index` (1-based) of `count` of a run's selected samples: the selected (ascending) list
/// cut into blocks of `block` samples — the run's batches — and the blocks dealt round-robin,
/// block `j` to shard `j mod count + 1`. Whole batches, because a batch's results can depend on
/// which samples share it (the engine's summation order, an attack's shared iteration and pass
/// counts): a shard's batches are the unsharded run's, so its records are too, and `merge`
/// joins them into exactly the unsharded run's. Round-robin keeps the shards balanced: their
/// sizes differ by at most one block, and each holds about 1/count of every class (a class's
/// samples, consecutive or interleaved in the list, span its blocks in turn).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which part, from 1.
    pub index: usize,
    /// Of how many.
    pub count: usize,
    /// Samples per block: the batch size of the command ([`Selection::batched`]).
    #[serde(default = "one")]
    pub block: usize,
}

fn one() -> usize {
    1
}

impl Shard {
    /// Checks `index` in 1..=count and `count` ≥ 1.
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 {
            return Err(setting(
                "--shard",
                "the number of shards must be at least 1",
            ));
        }
        if index == 0 || index > count {
            return Err(setting(
                "--shard",
                format!("shard {index} of {count}: the shard number runs from 1 to {count}"),
            ));
        }
        Ok(Shard {
            index,
            count,
            block: 1,
        })
    }

    /// Parses `i/n` (1-based), or `auto` / `auto/n`, which read the shard from the scheduler's
    /// environment through `env` (see [`Shard::from_env`]).
    pub fn parse(spec: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
        let bad = || {
            setting(
                "--shard",
                format!("'{spec}' is not I/N (e.g. 2/4), auto or auto/N"),
            )
        };
        let (a, n) = match spec.split_once('/') {
            Some((a, n)) => (
                a.trim(),
                Some(n.trim().parse::<usize>().map_err(|_| bad())?),
            ),
            None => (spec.trim(), None),
        };
        if a == "auto" {
            return Shard::from_env(n, env);
        }
        let i = a.parse::<usize>().map_err(|_| bad())?;
        Shard::new(i, n.ok_or_else(bad)?)
    }

    /// The shard of this task of a cluster array job, from the environment (`env` reads a
    /// variable): a Slurm array task (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`,
    /// `SLURM_ARRAY_TASK_MIN` and `SLURM_ARRAY_TASK_STEP`, so `--array=0-3`, `1-4` and `0-6:2`
    /// all give shards 1..=4), else a Kubernetes Indexed Job pod (`JOB_COMPLETION_INDEX` from 0,
    /// with the count `count` of `--shard auto/N` or the `FAULTLINE_SHARD_COUNT` variable the
    /// manifest sets). `count` given with Slurm must match the array's size.
    pub fn from_env(count: Option<usize>, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
        let num = |name: &str| -> Result<Option<usize>> {
            match env(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    setting("--shard auto", format!("{name}={v} is not a whole number"))
                }),
            }
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let n = num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                setting(
                    "--shard auto",
                    "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not",
                )
            })?;
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            if id < min || (id - min) % step != 0 {
                return Err(setting(
                    "--shard auto",
                    format!("SLURM_ARRAY_TASK_ID={id} is not in the array {min}-…:{step}"),
                ));
            }
            if let Some(c) = count.filter(|&c| c != n) {
                return Err(setting(
                    "--shard auto",
                    format!("auto/{c} but the Slurm array has {n} tasks"),
                ));
            }
            return Shard::new((id - min) / step + 1, n);
        }
        if let Some(i) = num("JOB_COMPLETION_INDEX")? {
            let n = match count {
                Some(c) => c,
                None => num("FAULTLINE_SHARD_COUNT")?.ok_or_else(|| {
                    setting(
                        "--shard auto",
                        "JOB_COMPLETION_INDEX is set but not the number of shards: pass \
                         --shard auto/N or set FAULTLINE_SHARD_COUNT (the Job's completions)",
                    )
                })?,
            };
            return Shard::new(i + 1, n);
        }
        Err(setting(
            "--shard auto",
            "neither SLURM_ARRAY_TASK_ID (a Slurm array job) nor JOB_COMPLETION_INDEX (a \
             Kubernetes Indexed Job) is set; pass --shard I/N",
        ))
    }

    /// This shard's part of `all` (the selected list, in its order).
    pub fn pick(&self, all: &[usize]) -> Vec<usize> {
        self.positions(all.len()).map(|p| all[p]).collect()
    }

    /// The positions in the selected list (of `len` samples) of this shard's samples, in order.
    pub fn positions(&self, len: usize) -> impl Iterator<Item = usize> {
        let b = self.block.max(1);
        (self.index - 1..len.div_ceil(b))
            .step_by(self.count)
            .flat_map(move |j| j * b..((j + 1) * b).min(len))
    }

    /// The shard and the row in it of position `q` of the selected list: (shard index from 0,
    /// row).
    pub fn locate(count: usize, block: usize, q: usize) -> (usize, usize) {
        let b = block.max(1);
        let j = q / b;
        (j % count, j / count * b + q % b)
    }

    /// `i/n`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.index, self.count)
    }
}

impl Selection {
    /// Every sample.
    pub fn all() -> Selection {
        Selection::default()
    }

    /// At most `n` samples, class-stratified.
    pub fn limit(n: usize) -> Selection {
        Selection {
            limit: Some(n),
            ..Selection::default()
        }
    }

    /// The first `n` samples (`None`: all).
    pub fn first(n: Option<usize>) -> Selection {
        Selection {
            limit: n,
            subset: Subset::First,
            ..Selection::default()
        }
    }

    /// The data-set indices this run covers: those selected ([`Selection::resolve_all`]), then
    /// its shard's part of them (ascending).
    pub fn resolve(&self, data: &dyn Dataset) -> Result<Vec<usize>> {
        let all = self.resolve_all(data)?;
        Ok(match &self.shard {
            Some(s) => s.pick(&all),
            None => all,
        })
    }

    /// The same selection with its shard (if any) in blocks of `batch_size` samples: the
    /// commands' batches (see [`Shard`]).
    pub fn batched(&self, batch_size: usize) -> Selection {
        Selection {
            shard: self.shard.map(|s| Shard {
                block: batch_size.max(1),
                ..s
            }),
            ..self.clone()
        }
    }

    /// The same selection without its shard.
    pub fn unsharded(&self) -> Selection {
        Selection {
            shard: None,
            ..self.clone()
        }
    }

    /// The data-set indices selected, whatever the shard: ascending and distinct. Refuses a
    /// limit of 0, an empty data set and an indices file with a line that is not an index of
    /// `data`, or that repeats one (the error names the file and the line).
    pub fn resolve_all(&self, data: &dyn Dataset) -> Result<Vec<usize>> {
        let len = crate::run::total(data, None)?;
        let candidates = match &self.indices {
            Some(path) => read_indices(path, len)?,
            None => (0..len).collect(),
        };
        pick(candidates, data, self.limit, self.subset, self.seed)
    }

    /// What the run record says about the selection of `all` (the list
    /// [`Selection::resolve_all`] returned): the settings and the list's SHA-256, so that a
    /// changed indices file, data set or subset is a different run, never a silent resume.
    /// A shard adds `shard` and its own part's count and SHA-256 (`shard_samples`,
    /// `shard_sha256`); without those keys the description is the unsharded run's, which is
    /// how `merge` finds it.
    pub fn describe(&self, all: &[usize]) -> serde_json::Value {
        let mut d = serde_json::json!({
            "limit": self.limit,
            "subset": self.subset,
            "subset_seed": (self.subset == Subset::Random).then_some(self.seed),
            "indices": self.indices,
            "samples": all.len(),
            "samples_sha256": indices_sha256(all),
        });
        if let Some(s) = &self.shard {
            let part = s.pick(all);
            d["shard"] = serde_json::json!(s);
            d["shard_samples"] = serde_json::json!(part.len());
            d["shard_sha256"] = serde_json::json!(indices_sha256(&part));
        }
        d
    }
}

/// The SHA-256 (hex) of an index list written one index per line, each line ending in `\n`
/// (`sort -n FILE | sha256sum` of a clean indices file).
pub fn indices_sha256(indices: &[usize]) -> String {
    let mut h = Sha256::new();
    for i in indices {
        h.update(format!("{i}\n").as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads an indices file: one data-set index below `len` per line, blank lines and `#`
/// comments ignored, no index twice. Returns them ascending.
pub fn read_indices(path: &Path, len: usize) -> Result<Vec<usize>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let at = |line: usize, why: String| {
        Error::Invalid(format!("--indices {}, line {line}: {why}", path.display()))
    };
    let mut first_seen = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let i: usize = line
            .parse()
            .map_err(|_| at(n + 1, format!("'{line}' is not a sample index")))?;
        if i >= len {
            return Err(at(
                n + 1,
                format!(
                    "index {i} is past the last sample of the data set ({len} samples, indices 0 to {})",
                    len - 1
                ),
            ));
        }
        if let Some(prev) = first_seen.insert(i, n + 1) {
            return Err(at(
                n + 1,
                format!("index {i} is listed twice (first on line {prev})"),
            ));
        }
        out.push(i);
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!(
            "--indices {}: the file lists no sample index",
            path.display()
        )));
    }
    out.sort_unstable();
    Ok(out)
}

/// The indices (ascending) of the samples of `data` that `limit` selects by `how`; all of them
/// without a limit. Refuses a limit of 0 and an empty data set.
pub fn select(
    data: &dyn Dataset,
    limit: Option<usize>,
    how: Subset,
    seed: u64,
) -> Result<Vec<usize>> {
    let len = crate::run::total(data, None)?;
    pick((0..len).collect(), data, limit, how, seed)
}

/// `limit` of the ascending `candidates` (indices of `data`) picked by `how`, ascending.
fn pick(
    candidates: Vec<usize>,
    data: &dyn Dataset,
    limit: Option<usize>,
    how: Subset,
    seed: u64,
) -> Result<Vec<usize>> {
    let len = candidates.len();
    let n = match limit {
        Some(0) => return Err(setting("--limit", "0 selects no samples")),
        Some(l) if l < len => l,
        _ => return Ok(candidates),
    };
    let mut picked = match how {
        Subset::First => candidates[..n].to_vec(),
        Subset::Stratified => {
            let labels = data.labels()?;
            let label = |i: usize| labels.get(i).copied().unwrap_or(0);
            let classes = candidates.iter().map(|&i| label(i) + 1).max().unwrap_or(0);
            let mut by_class: Vec<std::collections::VecDeque<usize>> =
                vec![Default::default(); classes];
            for &i in &candidates {
                by_class[label(i)].push_back(i);
            }
            let mut picked = Vec::with_capacity(n);
            while picked.len() < n {
                for q in by_class.iter_mut() {
                    if picked.len() < n {
                        if let Some(i) = q.pop_front() {
                            picked.push(i);
                        }
                    }
                }
            }
            picked
        }
        Subset::Random => {
            // A partial Fisher–Yates shuffle driven by the seed's own stream.
            let mut all = candidates;
            let mut state = faultline_seed::derive(seed, 0, "subset");
            for i in 0..n {
                state = faultline_seed::mix64(state.wrapping_add(0x9e37_79b9_7f4a_7c15));
                let j = i + (state % (len - i) as u64) as usize;
                all.swap(i, j);
            }
            all.truncate(n);
            all
        }
    };
    picked.sort_unstable();
    Ok(picked)
}

/// The samples `indices` of `data` in batches of `batch_size`, in list order: a run of
/// consecutive indices streams through [`Dataset::batches`], any other list is read chunk by
/// chunk with [`Dataset::read`].
pub fn read_batches<'a>(
    data: &'a dyn Dataset,
    indices: &'a [usize],
    batch_size: usize,
) -> Result<Box<dyn Iterator<Item = Result<Batch>> + Send + 'a>> {
    let batch_size = batch_size.max(1);
    let contiguous = indices.windows(2).all(|w| w[1] == w[0] + 1);
    match (indices.first(), indices.last()) {
        (Some(&a), Some(&b)) if contiguous => Ok(Box::new(
            data.batches(batch_size, a..b + 1)?
                .map(|r| r.map_err(Error::from)),
        )),
        _ => Ok(Box::new(
            indices
                .chunks(batch_size)
                .map(move |c| data.read(c).map_err(Error::from)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Batch, DatasetInfo, Format};

    /// 10 samples: labels 0,0,0,0,0,0,1,1,2,2 (class 0 first, as an image folder lists them).
    struct Fake(DatasetInfo, Vec<usize>);
    impl Dataset for Fake {
        fn info(&self) -> &DatasetInfo {
            &self.0
        }
        fn batches(
            &self,
            _batch_size: usize,
            range: std::ops::Range<usize>,
        ) -> faultline_data::Result<
            Box<dyn Iterator<Item = faultline_data::Result<Batch>> + Send + '_>,
        > {
            let b = Batch {
                indices: range.clone().collect(),
                images: vec![0.0; range.len()],
                labels: self.1[range].to_vec(),
                channels: 1,
                height: 1,
                width: 1,
            };
            Ok(Box::new(std::iter::once(Ok(b))))
        }
    }
    fn fake() -> Fake {
        let labels = vec![0, 0, 0, 0, 0, 0, 1, 1, 2, 2];
        Fake(
            DatasetInfo {
                len: labels.len(),
                channels: 1,
                height: 1,
                width: 1,
                class_names: vec!["a".into(), "b".into(), "c".into()],
                format: Format::Npy,
                source: "fake".into(),
            },
            labels,
        )
    }

    #[test]
    fn stratified_takes_every_class_in_turn_and_first_takes_the_head() {
        let d = fake();
        assert_eq!(
            select(&d, Some(6), Subset::Stratified, 0).unwrap(),
            [0, 1, 6, 7, 8, 9]
        );
        // Classes that run out leave their turn to the others.
        assert_eq!(
            select(&d, Some(8), Subset::Stratified, 0).unwrap(),
            [0, 1, 2, 3, 6, 7, 8, 9]
        );
        assert_eq!(select(&d, Some(3), Subset::First, 0).unwrap(), [0, 1, 2]);
        assert_eq!(select(&d, None, Subset::First, 0).unwrap().len(), 10);
        assert_eq!(
            select(&d, Some(50), Subset::Stratified, 0).unwrap().len(),
            10
        );
        assert!(select(&d, Some(0), Subset::Stratified, 0).is_err());
    }

    #[test]
    fn random_is_seeded_distinct_and_sorted() {
        let d = fake();
        let a = select(&d, Some(5), Subset::Random, 7).unwrap();
        assert_eq!(a, select(&d, Some(5), Subset::Random, 7).unwrap());
        let mut u = a.clone();
        u.dedup();
        assert_eq!(u.len(), 5);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        let others: Vec<Vec<usize>> = (0..8)
            .map(|s| select(&d, Some(5), Subset::Random, s).unwrap())
            .collect();
        assert!(others.iter().any(|o| *o != a), "the seed changes the draw");
        assert!(Subset::parse("nope").is_err());
    }

    #[test]
    fn an_indices_file_is_read_checked_and_then_limited() {
        let d = fake();
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("idx.txt");
        let sel = |text: &str, limit: Option<usize>, subset: Subset| {
            std::fs::write(&f, text).unwrap();
            Selection {
                limit,
                subset,
                seed: 0,
                indices: Some(f.clone()),
                shard: None,
            }
            .resolve(&d)
        };
        // Ascending whatever the file's order; comments and blank lines skipped.
        assert_eq!(
            sel("9\n# c\n\n 2 \n7 # b\n0\n", None, Subset::Stratified).unwrap(),
            [0, 2, 7, 9]
        );
        // Stratified among the listed (classes 0: 0, 2; 1: 7; 2: 9): one per class first.
        assert_eq!(
            sel("9\n2\n7\n0\n", Some(3), Subset::Stratified).unwrap(),
            [0, 7, 9]
        );
        assert_eq!(
            sel("9\n2\n7\n0\n", Some(3), Subset::First).unwrap(),
            [0, 2, 7]
        );
        let r = sel("9\n2\n7\n0\n", Some(2), Subset::Random).unwrap();
        assert!(r.len() == 2 && r.iter().all(|i| [0, 2, 7, 9].contains(i)));
        let err = |text: &str| sel(text, None, Subset::Stratified).unwrap_err().to_string();
        let e = err("1\n\nfour\n");
        assert!(e.contains("idx.txt, line 3") && e.contains("'four'"), "{e}");
        let e = err("1\n10\n");
        assert!(
            e.contains("line 2") && e.contains("index 10 is past"),
            "{e}"
        );
        let e = err("1\n2\n1\n");
        assert!(e.contains("line 3") && e.contains("first on line 1"), "{e}");
        assert!(err("# none\n").contains("lists no sample index"));
        assert!(sel("1\n", Some(0), Subset::First).is_err());
        // Without a file: the whole data set, or `select`'s picks.
        assert_eq!(Selection::all().resolve(&d).unwrap().len(), 10);
        assert_eq!(
            Selection::limit(6).resolve(&d).unwrap(),
            select(&d, Some(6), Subset::Stratified, 0).unwrap()
        );
    }

    #[test]
    fn the_description_hashes_the_resolved_list() {
        let s = Selection::limit(3);
        let a = s.describe(&[0, 6, 8]);
        assert_eq!(a["samples"], 3);
        assert_eq!(a["subset"], "stratified");
        assert!(a["subset_seed"].is_null());
        assert_ne!(
            a["samples_sha256"],
            s.describe(&[0, 6, 9])["samples_sha256"]
        );
        // The hash of "0\n6\n8\n".
        assert_eq!(
            indices_sha256(&[0, 6, 8]),
            Sha256::digest(b"0\n6\n8\n")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
    }

    #[test]
    fn shards_partition_the_selection_round_robin() {
        let d = fake();
        let all = Selection::limit(6).resolve(&d).unwrap();
        let mut union = Vec::new();
        for i in 1..=4 {
            let s = Selection {
                shard: Some(Shard::new(i, 4).unwrap()),
                ..Selection::limit(6)
            };
            let part = s.resolve(&d).unwrap();
            assert_eq!(
                part,
                Shard::new(i, 4)
                    .unwrap()
                    .positions(all.len())
                    .map(|p| all[p])
                    .collect::<Vec<_>>()
            );
            let desc = s.describe(&all);
            assert_eq!(desc["samples"], 6);
            assert_eq!(desc["shard_samples"], part.len());
            assert_eq!(desc["shard"]["index"], i);
            union.extend(part);
        }
        union.sort_unstable();
        assert_eq!(union, all, "every sample in exactly one shard");
        // In blocks (batches) of 3 over 10 positions: blocks 0..3, 3..6, 6..9, 9..10 dealt to
        // shards 1, 2, 1, 2.
        let s = |i| Shard {
            block: 3,
            ..Shard::new(i, 2).unwrap()
        };
        assert_eq!(s(1).positions(10).collect::<Vec<_>>(), [0, 1, 2, 6, 7, 8]);
        assert_eq!(s(2).positions(10).collect::<Vec<_>>(), [3, 4, 5, 9]);
        for q in 0..10 {
            let (k, row) = Shard::locate(2, 3, q);
            assert_eq!(s(k + 1).positions(10).nth(row), Some(q));
        }
        let b = Selection {
            shard: Some(Shard::new(2, 2).unwrap()),
            ..Selection::all()
        };
        assert_eq!(b.batched(4).shard.unwrap().block, 4);
        assert!(Selection::all().batched(4).shard.is_none());
        // Without a shard the description has no shard keys (an unsharded run's hash).
        assert!(Selection::limit(6).describe(&all).get("shard").is_none());
        assert!(Shard::new(0, 2).is_err() && Shard::new(3, 2).is_err());
        assert!(Shard::new(1, 0).is_err());
    }

    #[test]
    fn shard_specs_and_scheduler_environments() {
        let none = |_: &str| None;
        assert_eq!(
            Shard::parse("2/4", &none).unwrap(),
            Shard {
                index: 2,
                count: 4,
                block: 1
            }
        );
        for bad in ["2", "x/4", "5/4", "0/4", "1/0", "auto/x"] {
            assert!(Shard::parse(bad, &none).is_err(), "{bad}");
        }
        let e = Shard::parse("auto", &none).unwrap_err().to_string();
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID") && e.contains("JOB_COMPLETION_INDEX"),
            "{e}"
        );
        // (environment, spec, expected shard): --array=1-4 task 3, --array=0-3 task 0,
        // --array=10-16:2 task 14; a Kubernetes pod (0-based index, the count from the flag or
        // the manifest's variable).
        type Env = &'static [(&'static str, &'static str)];
        let slurm: Env = &[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        type Case = (Env, &'static str, Option<(usize, usize)>);
        let cases: [Case; 9] = [
            (slurm, "auto", Some((3, 4))),
            (slurm, "auto/3", None),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "0"),
                    ("SLURM_ARRAY_TASK_COUNT", "4"),
                    ("SLURM_ARRAY_TASK_MIN", "0"),
                ],
                "auto",
                Some((1, 4)),
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "14"),
                    ("SLURM_ARRAY_TASK_COUNT", "4"),
                    ("SLURM_ARRAY_TASK_MIN", "10"),
                    ("SLURM_ARRAY_TASK_STEP", "2"),
                ],
                "auto",
                Some((3, 4)),
            ),
            (&[("SLURM_ARRAY_TASK_ID", "1")], "auto", None),
            (&[("JOB_COMPLETION_INDEX", "1")], "auto/2", Some((2, 2))),
            (&[("JOB_COMPLETION_INDEX", "1")], "auto", None),
            (
                &[
                    ("JOB_COMPLETION_INDEX", "2"),
                    ("FAULTLINE_SHARD_COUNT", "3"),
                ],
                "auto",
                Some((3, 3)),
            ),
            (
                &[
                    ("JOB_COMPLETION_INDEX", "3"),
                    ("FAULTLINE_SHARD_COUNT", "3"),
                ],
                "auto",
                None,
            ),
        ];
        for (env, spec, want) in cases {
            let get = |k: &str| {
                env.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            };
            let got = Shard::parse(spec, &get);
            match want {
                Some((i, n)) => assert_eq!(got.unwrap(), Shard::new(i, n).unwrap(), "{env:?}"),
                None => assert!(got.is_err(), "{env:?} {spec}"),
            }
        }
        let get = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "1".to_string());
        let e = Shard::parse("auto", &get).unwrap_err().to_string();
        assert!(e.contains("FAULTLINE_SHARD_COUNT"), "{e}");
    }

    #[test]
    fn batches_follow_the_list() {
        let d = fake();
        let got: Vec<Vec<usize>> = read_batches(&d, &[0, 6, 7, 9], 3)
            .unwrap()
            .map(|b| b.unwrap().indices)
            .collect();
        assert_eq!(got, [vec![0, 6, 7], vec![9]]);
        let labels: Vec<usize> = read_batches(&d, &[2, 3, 4, 5, 6, 7], 4)
            .unwrap()
            .flat_map(|b| b.unwrap().labels)
            .collect();
        assert_eq!(labels, [0, 0, 0, 0, 1, 1]);
        assert_eq!(read_batches(&d, &[], 4).unwrap().count(), 0);
    }
}
