//! `compare`: the headline metrics of several `metrics` runs (models, or a model and its defended
//! versions) side by side — one row per key of [`crate::metrics::SUITE`] present in any run, one
//! column per run, and which run is best by the metric's direction ([`Better`]). Written as
//! `compare.csv` and `compare.svg` (bars scaled per metric by its largest absolute value across
//! the runs, so keys of different ranges share one chart) when an output directory is given.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{io, Error, Result};
use crate::metrics::{Better, SUITE};
use crate::plot;
use crate::run::metrics::read_metrics;
use crate::run::write_file;

/// One metric across the runs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// The key.
    pub metric: String,
    /// Which way is better.
    pub better: Better,
    /// Its value in each run (per-layer metrics: their `mean`; None where missing or null).
    pub values: Vec<Option<f64>>,
    /// Index of the best run (None for metrics without a direction, or fewer than two values).
    pub best: Option<usize>,
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// The run directories, in column order.
    pub runs: Vec<PathBuf>,
    /// A short label per run (its model's file stem).
    pub labels: Vec<String>,
    /// One row per metric.
    pub rows: Vec<Row>,
}

/// A metric's number: the value, or the `mean` of a per-layer object.
fn number(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.get("mean").and_then(Value::as_f64))
}

/// Compares the metric tables `tables` (one per run, labelled).
pub fn compare_tables(tables: &[serde_json::Map<String, Value>]) -> Vec<Row> {
    SUITE
        .iter()
        .filter(|m| tables.iter().any(|t| t.contains_key(m.key)))
        .map(|m| {
            let values: Vec<Option<f64>> = tables
                .iter()
                .map(|t| t.get(m.key).and_then(number))
                .collect();
            let present: Vec<(usize, f64)> = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i, v)))
                .collect();
            let pick = |f: fn(f64, f64) -> bool| {
                present
                    .iter()
                    .copied()
                    .reduce(|a, b| if f(b.1, a.1) { b } else { a })
                    .map(|p| p.0)
            };
            let best = if present.len() < 2 {
                None
            } else {
                match m.better {
                    Better::Higher => pick(|a, b| a > b),
                    Better::Lower => pick(|a, b| a < b),
                    Better::Neither => None,
                }
            };
            // A tie for the best value has no winner.
            let best = best.filter(|&b| {
                present
                    .iter()
                    .filter(|p| p.1 == values[b].unwrap_or(f64::NAN))
                    .count()
                    == 1
            });
            Row {
                metric: m.key.to_string(),
                better: m.better,
                values,
                best,
            }
        })
        .collect()
}

/// Reads the `metrics` runs in `dirs` and compares them; with `out`, writes `compare.csv` and
/// `compare.svg` there.
pub fn run(dirs: &[PathBuf], out: Option<&Path>) -> Result<CompareReport> {
    if dirs.len() < 2 {
        return Err(Error::Invalid(
            "compare needs at least two run directories".into(),
        ));
    }
    let mut tables = Vec::new();
    let mut labels = Vec::new();
    for d in dirs {
        let path = d.join("run.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: not a run record ({e})", path.display())))?;
        let m = read_metrics(&v).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: no `metrics` object (run `faultline metrics` there)",
                path.display()
            ))
        })?;
        tables.push(m.clone());
        let model = v
            .pointer("/model/path")
            .and_then(Value::as_str)
            .map(|p| {
                Path::new(p)
                    .file_stem()
                    .map_or(p.to_string(), |s| s.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| d.display().to_string());
        labels.push(model);
    }
    // Two runs of one model (e.g. different attacks) are told apart by their folders.
    for i in 0..labels.len() {
        if labels.iter().filter(|l| **l == labels[i]).count() > 1 {
            labels[i] = format!("{} ({})", labels[i], dirs[i].display());
        }
    }
    let rows = compare_tables(&tables);
    let report = CompareReport {
        runs: dirs.to_vec(),
        labels,
        rows,
    };
    if let Some(o) = out {
        std::fs::create_dir_all(o).map_err(io(o))?;
        write_file(&o.join("compare.csv"), &csv(&report))?;
        write_file(&o.join("compare.svg"), &svg(&report))?;
    }
    Ok(report)
}

/// The comparison as CSV: `metric,better,<label>…,best`.
pub fn csv(r: &CompareReport) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut s = format!(
        "metric,better,{},best\n",
        r.labels.iter().map(|l| q(l)).collect::<Vec<_>>().join(",")
    );
    for row in &r.rows {
        let vals: Vec<String> = row
            .values
            .iter()
            .map(|v| v.map_or(String::new(), |v| format!("{v}")))
            .collect();
        let best = row.best.map_or(String::new(), |b| q(&r.labels[b]));
        let better = serde_json::to_value(row.better)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        s.push_str(&format!(
            "{},{better},{},{best}\n",
            row.metric,
            vals.join(",")
        ));
    }
    s
}

/// Grouped bars, one group per metric, each scaled by its largest absolute value.
pub fn svg(r: &CompareReport) -> String {
    let cats: Vec<String> = r.rows.iter().map(|row| row.metric.clone()).collect();
    let series: Vec<(String, Vec<f64>)> = r
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let v = r
                .rows
                .iter()
                .map(|row| {
                    let max = row
                        .values
                        .iter()
                        .flatten()
                        .fold(0.0f64, |a, v| a.max(v.abs()));
                    row.values[i].map_or(0.0, |v| if max > 0.0 { v.abs() / max } else { 0.0 })
                })
                .collect();
            (l.clone(), v)
        })
        .collect();
    plot::bars(
        "metrics, each scaled by its largest value across runs",
        &cats,
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn best_follows_each_metrics_direction() {
        let a = json!({"ccv": 0.5, "aaw": 0.1, "asr": 0.9, "nc": 0.5, "neuron_sensitivity": {"mean": 2.0}, "mce": null});
        let b = json!({"ccv": 0.5, "aaw": 0.6, "asr": 0.4, "nc": 0.7, "neuron_sensitivity": {"mean": 1.0}, "mce": 0.8});
        let t = [
            a.as_object().unwrap().clone(),
            b.as_object().unwrap().clone(),
        ];
        let rows = compare_tables(&t);
        let get = |k: &str| rows.iter().find(|r| r.metric == k).unwrap();
        assert_eq!(get("aaw").best, Some(1));
        assert_eq!(get("asr").best, Some(1));
        assert_eq!(get("nc").best, None);
        assert_eq!(get("ccv").best, None, "a tie has no winner");
        assert_eq!(get("neuron_sensitivity").values, vec![Some(2.0), Some(1.0)]);
        assert_eq!(get("neuron_sensitivity").best, Some(1));
        assert_eq!(get("mce").values, vec![None, Some(0.8)]);
        assert_eq!(get("mce").best, None);
        assert!(rows.iter().all(|r| r.metric != "ca"));
        let rep = CompareReport {
            runs: vec![],
            labels: vec!["m1".into(), "m2".into()],
            rows,
        };
        let c = csv(&rep);
        assert!(c.starts_with("metric,better,\"m1\",\"m2\",best\n"));
        assert!(c.contains("aaw,higher,0.1,0.6,\"m2\"\n"));
        assert!(svg(&rep).contains("<svg"));
    }
}
