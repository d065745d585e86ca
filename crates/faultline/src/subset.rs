//! Which samples a run covers. Image folders list their classes one after the other, so the
//! first N samples of one are a few classes only; a representative subset takes the same number
//! from every class. A [`Selection`] (`--limit`, `--subset`, `--subset-seed`, `--indices`)
//! resolves to the ascending list of data-set indices every per-sample command walks through,
//! in batches read by [`read_batches`].

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

    /// The data-set indices selected, ascending and distinct. Refuses a limit of 0, an empty
    /// data set and an indices file with a line that is not an index of `data`, or that
    /// repeats one (the error names the file and the line).
    pub fn resolve(&self, data: &dyn Dataset) -> Result<Vec<usize>> {
        let len = crate::run::total(data, None)?;
        let candidates = match &self.indices {
            Some(path) => read_indices(path, len)?,
            None => (0..len).collect(),
        };
        pick(candidates, data, self.limit, self.subset, self.seed)
    }

    /// What the run record says about the selection of `indices` (the list
    /// [`Selection::resolve`] returned): the settings and the list's SHA-256, so that a changed
    /// indices file, data set or subset is a different run, never a silent resume.
    pub fn describe(&self, indices: &[usize]) -> serde_json::Value {
        serde_json::json!({
            "limit": self.limit,
            "subset": self.subset,
            "subset_seed": (self.subset == Subset::Random).then_some(self.seed),
            "indices": self.indices,
            "samples": indices.len(),
            "samples_sha256": indices_sha256(indices),
        })
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
