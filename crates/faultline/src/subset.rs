//! Which samples a `--limit N` run covers. Image folders list their classes one after the
//! other, so the first N samples of one are a few classes only; a representative subset takes
//! the same number from every class.

use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::{setting, Result};

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
    let n = match limit {
        Some(0) => return Err(setting("--limit", "0 selects no samples")),
        Some(l) if l < len => l,
        _ => return Ok((0..len).collect()),
    };
    let mut picked = match how {
        Subset::First => (0..n).collect(),
        Subset::Stratified => {
            let labels = data.labels()?;
            let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
            let mut by_class: Vec<std::collections::VecDeque<usize>> =
                vec![Default::default(); classes];
            for (i, &l) in labels.iter().enumerate() {
                by_class[l].push_back(i);
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
            let mut all: Vec<usize> = (0..len).collect();
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
}
