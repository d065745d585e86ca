//! Evaluation under common corruptions (Hendrycks & Dietterich, ICLR 2019): which families and
//! severities to apply, applying them to a batch on the fly, and the summary figures — accuracy
//! per family × severity, mean corruption accuracy, and the corruption error against a baseline
//! model: `CE_f = Σ_s E_{f,s} / Σ_s E^base_{f,s}`, `mCE` = mean of `CE_f` over the 15 standard
//! families, relative `CE_f = Σ_s (E_{f,s} − E_clean) / Σ_s (E^base_{f,s} − E^base_clean)`.

use std::collections::BTreeMap;

use faultline_data::Batch;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

pub use faultline_corruptions::{CorruptionKind, ImageU8, ParamTable, ALL};

use crate::error::{setting, Error, Result};
use crate::record::{Condition, SampleRecord};

/// Which corruptions to apply, at which severities, with which parameter table and seed.
#[derive(Debug, Clone, Serialize)]
pub struct CorruptionPlan {
    /// Families, in registry order.
    #[serde(serialize_with = "names")]
    pub kinds: Vec<CorruptionKind>,
    /// Severities, ascending, each 1–5.
    pub severities: Vec<u8>,
    /// Parameter table (CIFAR or ImageNet).
    #[serde(serialize_with = "table_name")]
    pub table: ParamTable,
    /// Seed of the random families (per-sample streams are derived from it).
    pub seed: u64,
}

pub(crate) fn names<S: serde::Serializer>(
    k: &[CorruptionKind],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(k.iter().map(|k| k.name()))
}

fn table_name<S: serde::Serializer>(t: &ParamTable, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(t.name())
}

/// Parses `all` (19 families), `standard` (the 15 of CIFAR-10-C), `extra` (the 4 others) or a
/// comma-separated list of names.
pub fn parse_kinds(spec: &str) -> Result<Vec<CorruptionKind>> {
    parse_kinds_for("--corruptions", spec)
}

/// [`parse_kinds`] for the flag `flag` (named in errors).
pub fn parse_kinds_for(flag: &'static str, spec: &str) -> Result<Vec<CorruptionKind>> {
    let all = CorruptionKind::ALL;
    let mut v: Vec<CorruptionKind> = match spec.trim() {
        "all" => all.to_vec(),
        "standard" => all.iter().copied().filter(|k| !k.is_extra()).collect(),
        "extra" => all.iter().copied().filter(|k| k.is_extra()).collect(),
        list => list
            .split(',')
            .map(|n| {
                n.trim().parse::<CorruptionKind>().map_err(|_| {
                    setting(
                        flag,
                        format!(
                            "unknown corruption '{}'; choose all, standard, extra or names from: {}",
                            n.trim(),
                            faultline_corruptions::ALL.join(", ")
                        ),
                    )
                })
            })
            .collect::<Result<_>>()?,
    };
    v.sort();
    v.dedup();
    Ok(v)
}

/// Parses severities: `1-5`, `3`, or `1,3,5`.
pub fn parse_severities(spec: &str) -> Result<Vec<u8>> {
    let bad = || {
        setting(
            "--severities",
            format!("'{spec}': use a range like 1-5 or a list like 1,3,5 of values 1 to 5"),
        )
    };
    let mut v = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (u8, u8) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            v.extend(a..=b);
        } else {
            v.push(part.parse().map_err(|_| bad())?);
        }
    }
    if v.is_empty() || v.iter().any(|s| !(1..=5).contains(s)) {
        return Err(bad());
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// A float CHW image in [0, 1] as an HWC byte image (values rounded to the nearest level, so
/// images that came from bytes return exactly to them).
pub fn to_image(chw: &[f32], c: usize, h: usize, w: usize) -> Result<ImageU8> {
    let mut hwc = vec![0u8; c * h * w];
    for ch in 0..c {
        for p in 0..h * w {
            hwc[p * c + ch] = (chw[ch * h * w + p] * 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
    ImageU8::new(h, w, c, hwc).map_err(|e| Error::Invalid(e.to_string()))
}

/// An HWC byte image as float CHW in [0, 1].
pub fn to_chw(img: &ImageU8) -> Vec<f32> {
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let d = img.as_slice();
    let mut out = vec![0.0f32; c * h * w];
    for ch in 0..c {
        for p in 0..h * w {
            out[ch * h * w + p] = d[p * c + ch] as f32 / 255.0;
        }
    }
    out
}

impl CorruptionPlan {
    /// The plan of a family list (see [`parse_kinds`]), severities (see [`parse_severities`]),
    /// a parameter table name (`cifar`, `imagenet`; by default by image size, CIFAR's up to
    /// 84 px) and a seed, for images of `image` = `(height, width)`: what `--corruptions`,
    /// `--severities`, `--table` and `--seed` describe.
    pub fn parse(
        kinds: &str,
        severities: &str,
        table: Option<&str>,
        seed: u64,
        image: (usize, usize),
    ) -> Result<CorruptionPlan> {
        Ok(CorruptionPlan {
            kinds: parse_kinds(kinds)?,
            severities: parse_severities(severities)?,
            table: match table {
                Some(t) => t.parse::<ParamTable>()?,
                None => ParamTable::for_size(image.0, image.1),
            },
            seed,
        })
    }

    /// Every (family, severity) pair, family-major.
    pub fn conditions(&self) -> Vec<(CorruptionKind, u8)> {
        self.kinds
            .iter()
            .flat_map(|&k| self.severities.iter().map(move |&s| (k, s)))
            .collect()
    }

    /// The batch's images under one corruption, as byte images (in parallel; each sample's
    /// random stream depends only on the seed and its index).
    pub fn corrupt_bytes(
        &self,
        batch: &Batch,
        kind: CorruptionKind,
        severity: u8,
    ) -> Result<Vec<ImageU8>> {
        let (c, h, w) = (batch.channels, batch.height, batch.width);
        (0..batch.len())
            .into_par_iter()
            .map(|i| {
                let img = to_image(batch.image(i), c, h, w)?;
                faultline_corruptions::corrupt(
                    kind,
                    severity,
                    self.table,
                    &img,
                    self.seed,
                    batch.indices[i] as u64,
                )
                .map_err(|e| {
                    Error::Invalid(format!(
                        "{} severity {severity}, sample {}: {e}",
                        kind.name(),
                        batch.indices[i]
                    ))
                })
            })
            .collect()
    }

    /// The batch's images under one corruption, as float CHW in [0, 1], ready for the model.
    pub fn corrupt(&self, batch: &Batch, kind: CorruptionKind, severity: u8) -> Result<Vec<f32>> {
        Ok(self
            .corrupt_bytes(batch, kind, severity)?
            .iter()
            .flat_map(to_chw)
            .collect())
    }
}

/// Accuracy under one corruption at one severity.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConditionAccuracy {
    /// Family name.
    pub corruption: String,
    /// Severity 1–5.
    pub severity: u8,
    /// Samples.
    pub n: usize,
    /// Fraction classified correctly.
    pub accuracy: f64,
}

/// Per-family figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FamilySummary {
    /// Family name.
    pub corruption: String,
    /// Mean accuracy over the evaluated severities.
    pub mean_accuracy: f64,
    /// Corruption error relative to the baseline (None without a baseline).
    pub ce: Option<f64>,
    /// Relative corruption error (None without a baseline or when the baseline loses nothing).
    pub relative_ce: Option<f64>,
}

/// Everything `eval --corruptions` reports.
#[derive(Debug, Clone, Serialize)]
pub struct CorruptionSummary {
    /// Clean accuracy on the same samples.
    pub clean_accuracy: f64,
    /// Accuracy per family × severity.
    pub table: Vec<ConditionAccuracy>,
    /// Per-family means and errors.
    pub families: Vec<FamilySummary>,
    /// Mean accuracy over all evaluated families and severities.
    pub mean_corruption_accuracy: f64,
    /// Mean CE over the standard families present in both runs (None without a baseline).
    pub mce: Option<f64>,
    /// Mean relative CE over the same families.
    pub relative_mce: Option<f64>,
}

/// Error rates of a baseline run: clean, and per (family, severity).
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// Clean error.
    pub clean_error: f64,
    /// Error per (family, severity).
    pub errors: BTreeMap<(String, u8), f64>,
}

impl Baseline {
    /// The error rates of a baseline model evaluated in process.
    pub fn from_counts(counts: &ConditionCounts) -> Baseline {
        let err = |&(n, ok): &(usize, usize)| {
            if n == 0 {
                0.0
            } else {
                1.0 - ok as f64 / n as f64
            }
        };
        Baseline {
            clean_error: counts.get(&None).map_or(0.0, err),
            errors: counts
                .iter()
                .filter_map(|(k, v)| k.clone().map(|k| (k, err(v))))
                .collect(),
        }
    }
    /// Reads the corruption table of an earlier `eval --corruptions` run record.
    pub fn from_run(run: &Value) -> Result<Baseline> {
        let c = run.get("corruptions").ok_or_else(|| {
            Error::Invalid(
                "the baseline run has no corruption results (run eval --corruptions there first)"
                    .into(),
            )
        })?;
        let clean = c
            .get("clean_accuracy")
            .and_then(Value::as_f64)
            .ok_or_else(|| Error::Invalid("baseline lacks clean_accuracy".into()))?;
        let mut errors = BTreeMap::new();
        for row in c
            .get("table")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(name), Some(sev), Some(acc)) = (
                row.get("corruption").and_then(Value::as_str),
                row.get("severity").and_then(Value::as_u64),
                row.get("accuracy").and_then(Value::as_f64),
            ) else {
                return Err(Error::Invalid(
                    "malformed corruption table in the baseline run".into(),
                ));
            };
            errors.insert((name.to_string(), sev as u8), 1.0 - acc);
        }
        Ok(Baseline {
            clean_error: 1.0 - clean,
            errors,
        })
    }
}

/// Samples and correct predictions per condition (`None`: clean; `Some((family, severity))`).
pub type ConditionCounts = BTreeMap<Option<(String, u8)>, (usize, usize)>;

/// Adds one prediction to `counts`.
pub fn count(counts: &mut ConditionCounts, condition: Option<(&str, u8)>, correct: bool) {
    let e = counts
        .entry(condition.map(|(n, s)| (n.to_string(), s)))
        .or_default();
    e.0 += 1;
    e.1 += correct as usize;
}

/// Summarizes records of an `eval --corruptions` run.
pub fn summarize_corruptions(
    records: &[SampleRecord],
    plan: &CorruptionPlan,
    baseline: Option<&Baseline>,
) -> CorruptionSummary {
    let mut counts = ConditionCounts::new();
    for r in records {
        let c = match &r.condition {
            Condition::Clean => None,
            c => match c.corruption() {
                Some(c) => Some(c),
                None => continue,
            },
        };
        count(&mut counts, c, r.label == r.prediction);
    }
    summarize_counts(&counts, plan, baseline)
}

/// [`summarize_corruptions`] from counts per condition (what a streaming caller keeps).
pub fn summarize_counts(
    counts: &ConditionCounts,
    plan: &CorruptionPlan,
    baseline: Option<&Baseline>,
) -> CorruptionSummary {
    let acc = |key: Option<(String, u8)>| -> (usize, f64) {
        let (n, ok) = counts.get(&key).copied().unwrap_or((0, 0));
        (n, if n == 0 { 0.0 } else { ok as f64 / n as f64 })
    };
    let (_, clean_accuracy) = acc(None);
    let mut table = Vec::new();
    let mut families = Vec::new();
    for &kind in &plan.kinds {
        let name = kind.name();
        let rows: Vec<ConditionAccuracy> = plan
            .severities
            .iter()
            .map(|&s| {
                let (n, a) = acc(Some((name.to_string(), s)));
                ConditionAccuracy {
                    corruption: name.to_string(),
                    severity: s,
                    n,
                    accuracy: a,
                }
            })
            .collect();
        let mean_accuracy = rows.iter().map(|r| r.accuracy).sum::<f64>() / rows.len().max(1) as f64;
        let (mut ce, mut rce) = (None, None);
        if let Some(b) = baseline {
            let base: Option<Vec<f64>> = rows
                .iter()
                .map(|r| b.errors.get(&(name.to_string(), r.severity)).copied())
                .collect();
            if let Some(base) = base {
                let err: f64 = rows.iter().map(|r| 1.0 - r.accuracy).sum();
                let berr: f64 = base.iter().sum();
                ce = (berr > 0.0).then(|| err / berr);
                let rel = err - rows.len() as f64 * (1.0 - clean_accuracy);
                let brel = berr - rows.len() as f64 * b.clean_error;
                rce = (brel > 0.0).then(|| rel / brel);
            }
        }
        families.push(FamilySummary {
            corruption: name.to_string(),
            mean_accuracy,
            ce,
            relative_ce: rce,
        });
        table.extend(rows);
    }
    let mean_corruption_accuracy =
        table.iter().map(|r| r.accuracy).sum::<f64>() / table.len().max(1) as f64;
    let standard = |f: &&FamilySummary| {
        plan.kinds
            .iter()
            .any(|k| k.name() == f.corruption && !k.is_extra())
    };
    let mean_of = |g: &dyn Fn(&FamilySummary) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = families.iter().filter(standard).filter_map(g).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let mce = baseline.and(mean_of(&|f| f.ce));
    let relative_mce = baseline.and(mean_of(&|f| f.relative_ce));
    CorruptionSummary {
        clean_accuracy,
        table,
        families,
        mean_corruption_accuracy,
        mce,
        relative_mce,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(index: usize, ok: bool, c: Option<(&str, u8)>) -> SampleRecord {
        SampleRecord {
            index,
            label: 0,
            condition: c.map_or(Condition::Clean, |(name, severity)| Condition::Corruption {
                name: name.to_string(),
                severity,
            }),
            prediction: if ok { 0 } else { 1 },
            logit_margin: if ok { 1.0 } else { -1.0 },
            clean_prediction: None,
            attack: None,
            margin: None,
            flag: None,
        }
    }

    #[test]
    fn parses_specs() {
        assert_eq!(parse_kinds("all").unwrap().len(), 19);
        assert_eq!(parse_kinds("standard").unwrap().len(), 15);
        assert_eq!(
            parse_kinds("fog, brightness").unwrap(),
            vec![CorruptionKind::Fog, CorruptionKind::Brightness]
        );
        assert!(parse_kinds("fogg")
            .unwrap_err()
            .to_string()
            .contains("unknown corruption 'fogg'"));
        assert_eq!(parse_severities("1-5").unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(parse_severities("5,1,3").unwrap(), vec![1, 3, 5]);
        assert!(parse_severities("0-2").is_err());
    }

    #[test]
    fn byte_images_round_trip() {
        let chw: Vec<f32> = (0..2 * 3 * 4).map(|i| (i * 10) as f32 / 255.0).collect();
        let img = to_image(&chw, 2, 3, 4).unwrap();
        assert_eq!(img.get(1, 2, 1), 180); // channel 1, pixel 6 → value 12+6 = 18 → 180
        assert_eq!(to_chw(&img), chw);
    }

    /// By hand: model errors fog {s1: .5, s2: .5}, baseline {.25, .5}: CE = 1.0 / .75; clean
    /// errors .25 (model) and .25 (baseline): relative CE = (1.0 − 2·.25) / (.75 − 2·.25) = 2.
    #[test]
    fn corruption_error_against_a_baseline() {
        let mut r = Vec::new();
        for i in 0..4 {
            r.push(rec(i, i != 0, None));
            r.push(rec(i, i % 2 == 0, Some(("fog", 1))));
            r.push(rec(i, i % 2 == 1, Some(("fog", 2))));
        }
        let plan = CorruptionPlan {
            kinds: vec![CorruptionKind::Fog],
            severities: vec![1, 2],
            table: ParamTable::Cifar,
            seed: 0,
        };
        let base = Baseline {
            clean_error: 0.25,
            errors: [
                (("fog".to_string(), 1), 0.25),
                (("fog".to_string(), 2), 0.5),
            ]
            .into_iter()
            .collect(),
        };
        let s = summarize_corruptions(&r, &plan, Some(&base));
        assert_eq!(s.clean_accuracy, 0.75);
        assert_eq!(s.mean_corruption_accuracy, 0.5);
        assert_eq!(s.families[0].ce, Some(1.0 / 0.75));
        assert_eq!(s.families[0].relative_ce, Some((1.0 - 0.5) / (0.75 - 0.5)));
        assert_eq!(s.mce, s.families[0].ce);
        let none = summarize_corruptions(&r, &plan, None);
        assert_eq!(none.mce, None);
    }
}
