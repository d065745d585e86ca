//! The SVG charts of a `classwise` run: confusion per clean/attack condition, the CFPS heat map,
//! accuracy per class, targeted reachability, centroid distances and the latent PCA.

use crate::classwise::ClasswiseReport;
use crate::error::Result;
use crate::plot;
use crate::run::classwise::ClasswiseRun;
use crate::run::{write_file, Output};

/// Writes every chart of `run` into the run directory.
pub fn write(out: &Output, run: &ClasswiseRun) -> Result<()> {
    let names = &run.class_names;
    let write = |name: &str, svg: String| write_file(&out.file(name), &svg);
    let to_f = |m: &[Vec<u64>]| -> Vec<Vec<f64>> {
        m.iter()
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect()
    };
    // Clean and attack conditions (the corruption conditions follow them).
    let main: &[ClasswiseReport] = &run.classwise[..1 + run.attack_reports];
    for r in main {
        let file = format!("confusion_{}.svg", r.condition.replace([' ', '/'], "_"));
        write(
            &file,
            plot::heatmap(
                &format!("confusion, {}", r.condition),
                &to_f(&r.confusion),
                names,
                names,
                "true class",
                "predicted class",
                true,
            ),
        )?;
    }
    // Per-severity conditions, then each corruption family pooled over its severities; each
    // row names its error count and cells count the errors, so one error is not read as a
    // CFPS of 1.0 without seeing that it is one.
    let rows: Vec<(&ClasswiseReport, bool)> = run
        .classwise
        .iter()
        .map(|r| (r, false))
        .chain(run.corruption_families.iter().map(|r| (r, true)))
        .collect();
    // A condition without errors keeps its row (blank cells, "0 errors"): it is a finding too.
    if rows.iter().any(|(r, _)| r.cfps.is_some()) {
        let k = names.len();
        let m: Vec<Vec<f64>> = rows
            .iter()
            .map(|(r, _)| r.cfps.clone().unwrap_or_else(|| vec![0.0; k]))
            .collect();
        let counts: Vec<Vec<String>> = rows
            .iter()
            .map(|(r, _)| match &r.cfps {
                Some(c) => c
                    .iter()
                    .map(|&v| format!("{:.0}", v * r.errors as f64))
                    .collect(),
                None => vec![String::new(); k],
            })
            .collect();
        let labels: Vec<String> = rows
            .iter()
            .map(|(r, family)| {
                let errors = match r.errors {
                    1 => "1 error".to_string(),
                    e => format!("{e} errors"),
                };
                if *family {
                    format!("{}, all severities ({errors})", r.condition)
                } else {
                    format!("{} ({errors})", r.condition)
                }
            })
            .collect();
        write(
            "cfps.svg",
            plot::heatmap_text(
                "CFPS: share of the errors predicted as each class (colour), error counts (numbers)",
                &m,
                Some(&counts),
                &labels,
                names,
                "perturbation",
                "predicted class",
                names.len() <= 12,
            ),
        )?;
    }
    let mut series: Vec<(String, Vec<f64>)> = main
        .iter()
        .map(|r| {
            (
                r.condition.clone(),
                r.class_accuracy.iter().map(|a| a.unwrap_or(0.0)).collect(),
            )
        })
        .collect();
    let families = &run.corruption_families;
    if !families.is_empty() {
        let mean: Vec<f64> = (0..names.len())
            .map(|c| {
                families
                    .iter()
                    .filter_map(|f| f.class_accuracy.get(c).copied().flatten())
                    .sum::<f64>()
                    / families.len() as f64
            })
            .collect();
        series.push(("corruptions (mean)".into(), mean));
    }
    write(
        "class_accuracy.svg",
        plot::bars("accuracy per class", names, &series),
    )?;
    if !run.targeted.is_empty() {
        let s = vec![(
            "targeted success".to_string(),
            run.targeted.iter().map(|t| t.success_rate).collect(),
        )];
        write(
            "targeted.svg",
            plot::bars(
                "how easily each class is reached (targeted attack success rate)",
                names,
                &s,
            ),
        )?;
    }
    write_shift(out, run)?;
    let lat = &run.latent;
    write(
        "centroid_distance.svg",
        plot::heatmap(
            "distance between class centroids (penultimate features)",
            &lat.centroid_distance,
            names,
            names,
            "class",
            "class",
            names.len() <= 12,
        ),
    )?;
    let groups: Vec<usize> = (0..names.len()).collect();
    let labels: Vec<Option<String>> = names.iter().map(|n| Some(n.clone())).collect();
    write(
        "latent_pca.svg",
        plot::scatter(
            "class centroids, first two principal components",
            &lat.pca_centroids,
            &groups,
            names,
            &labels,
        ),
    )
}

/// The latent-shift charts: mean feature shift and Voronoi-crossing share per class for the
/// attack and the corruptions at their highest severity, and where the attack's crossings land.
fn write_shift(out: &Output, run: &ClasswiseRun) -> Result<()> {
    let names = &run.class_names;
    if run.latent_shift.is_empty() {
        return Ok(());
    }
    let top = |c: &str| -> bool {
        let Some((_, s)) = c.rsplit_once(" s") else {
            return true;
        };
        let max = run
            .latent_shift
            .iter()
            .filter_map(|r| {
                r.condition
                    .rsplit_once(" s")
                    .and_then(|(_, v)| v.parse::<u8>().ok())
            })
            .max();
        s.parse::<u8>().ok() == max
    };
    let shown: Vec<_> = run
        .latent_shift
        .iter()
        .filter(|r| top(&r.condition))
        .collect();
    let series = |f: &dyn Fn(&crate::latent_shift::ClassShift) -> f64| -> Vec<(String, Vec<f64>)> {
        shown
            .iter()
            .map(|r| (r.condition.clone(), r.classes.iter().map(f).collect()))
            .collect()
    };
    write_file(
        &out.file("latent_shift.svg"),
        &plot::bars(
            "latent shift: mean ‖Δ penultimate features‖ per class",
            names,
            &series(&|c| c.mean_shift),
        ),
    )?;
    write_file(
        &out.file("latent_crossed.svg"),
        &plot::bars(
            "share of each class's samples moved into another class's Voronoi cell",
            names,
            &series(&|c| c.crossed.unwrap_or(0.0)),
        ),
    )?;
    let first = &run.latent_shift[0];
    let m: Vec<Vec<f64>> = first
        .classes
        .iter()
        .map(|c| c.crossed_to.iter().map(|&v| v as f64).collect())
        .collect();
    write_file(
        &out.file("latent_crossings.svg"),
        &plot::heatmap(
            &format!(
                "Voronoi crossings of the penultimate features, {}",
                first.condition
            ),
            &m,
            names,
            names,
            "true class",
            "cell entered",
            names.len() <= 12,
        ),
    )
}
