//! `faultline classwise`: per-class accuracy, confusion, CFPS/CFNS, flip rate and worst-class
//! figures for the clean data, an attack (per ε), common corruptions (per family × severity)
//! and targeted attacks toward each class; latent-space structure of the penultimate features;
//! SVG heatmaps and bar charts; a terminal ranking of the classes. The clean/corruption pass and
//! each attack run in their own sub-directories of DIR and resume or reuse what is already there.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use faultline::attack::{eps_label, AttackRecord};
use faultline::classwise::{classwise, latent, ClasswiseReport, TargetReport};
use faultline::eval::EvalRecord;
use faultline::plot;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::attack::AttackArgs;
use crate::common::{load, DataArgs, ModelArgs};
use crate::eval::EvalArgs;

/// Arguments of `faultline classwise`.
#[derive(Args, Debug)]
pub struct ClasswiseArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Attack: fgsm, pgd or mifgsm; none to skip attacks
    #[arg(long, default_value = "pgd", value_parser = ["fgsm", "pgd", "mifgsm", "none"])]
    pub attack: String,
    /// Attack radius or radii (the first one is used for targeted attacks)
    #[arg(
        long,
        default_value = "8/255",
        value_delimiter = ',',
        value_name = "EPS"
    )]
    pub eps: Vec<String>,
    /// Attack iterations
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub steps: usize,
    /// Also attack toward every class (one targeted PGD run per class)
    #[arg(long)]
    pub targeted: bool,
    /// Common corruptions to include: all, standard, extra or a list [default: none]
    #[arg(long, value_name = "LIST")]
    pub corruptions: Option<String>,
    /// Corruption severities
    #[arg(long, default_value = "1-5", value_name = "S")]
    pub severities: String,
    /// Seed of the random choices
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,
    /// Images per batch
    #[arg(long, default_value_t = 128, value_name = "B")]
    pub batch_size: usize,
    /// Run directory (earlier results there are reused) [default: runs/classwise]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace runs in DIR that used other settings
    #[arg(long)]
    pub overwrite: bool,
}

fn read_records<R: DeserializeOwned>(dir: &Path) -> Result<Vec<R>> {
    let p = dir.join("samples.jsonl");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("parsing {}", p.display())))
        .collect()
}

fn attack_args(
    a: &ClasswiseArgs,
    out: PathBuf,
    eps: Vec<String>,
    target: Option<usize>,
) -> AttackArgs {
    AttackArgs {
        model: a.model.clone(),
        data: a.data.clone(),
        attack: a.attack.clone(),
        preset: None,
        no_sanity: false,
        norm: None,
        eps: Some(eps),
        steps: Some(a.steps),
        step_size: None,
        restarts: None,
        random_start: false,
        loss: Default::default(),
        seed: a.seed,
        batch_size: a.batch_size,
        out: Some(out),
        overwrite: a.overwrite,
        save_adv: false,
        target,
        quiet: true,
    }
}

pub fn run(a: &ClasswiseArgs, threads: usize) -> Result<()> {
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/classwise"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let loaded = load(&a.model, &a.data)?;
    let info = loaded.data.info().clone();
    let k = loaded.model.card.num_classes;
    let mut names = info.class_names.clone();
    names.resize_with(k, String::new);
    for (i, n) in names.iter_mut().enumerate() {
        if n.is_empty() {
            *n = i.to_string();
        }
    }
    // 1. Clean (and corrupted) predictions.
    eprintln!(
        "classwise: clean{} predictions → {}/eval",
        if a.corruptions.is_some() {
            " and corrupted"
        } else {
            ""
        },
        out.display()
    );
    let eval = EvalArgs {
        model: a.model.clone(),
        data: a.data.clone(),
        batch_size: a.batch_size,
        out: Some(out.join("eval")),
        overwrite: a.overwrite,
        corruptions: a.corruptions.clone(),
        severities: a.severities.clone(),
        seed: a.seed,
        table: None,
        baseline: None,
        quiet: true,
    };
    crate::eval::run(&eval, threads)?;
    let evals: Vec<EvalRecord> = read_records(&out.join("eval"))?;
    let clean: Vec<&EvalRecord> = evals.iter().filter(|r| r.is_clean()).collect();
    let clean_pred: std::collections::HashMap<usize, usize> =
        clean.iter().map(|r| (r.index, r.prediction)).collect();
    let mut reports: Vec<ClasswiseReport> = Vec::new();
    let pairs: Vec<(usize, usize)> = clean.iter().map(|r| (r.label, r.prediction)).collect();
    reports.push(classwise("clean", &pairs, k, None));
    // 2. Untargeted attack.
    if a.attack != "none" {
        eprintln!(
            "classwise: {} attack at {} → {}/attack",
            a.attack,
            a.eps.join(", "),
            out.display()
        );
        crate::attack::run(
            &attack_args(a, out.join("attack"), a.eps.clone(), None),
            threads,
        )?;
        let recs: Vec<AttackRecord> = read_records(&out.join("attack"))?;
        let mut eps: Vec<f32> = recs.iter().filter_map(|r| r.eps).collect();
        eps.sort_by(f32::total_cmp);
        eps.dedup();
        for e in eps {
            let sel: Vec<&AttackRecord> = recs.iter().filter(|r| r.eps == Some(e)).collect();
            let pairs: Vec<(usize, usize)> = sel.iter().map(|r| (r.label, r.prediction)).collect();
            let cp: Vec<usize> = sel.iter().map(|r| r.clean_prediction).collect();
            reports.push(classwise(
                &format!("{} {}", a.attack, eps_label(e)),
                &pairs,
                k,
                Some(&cp),
            ));
        }
    }
    // 3. Corruptions: per family × severity, and per family over all severities.
    let mut fams: Vec<(String, u8)> = evals
        .iter()
        .filter_map(|r| r.corruption.clone().zip(r.severity))
        .collect();
    fams.sort();
    fams.dedup();
    let mut family_reports = Vec::new();
    for (f, s) in &fams {
        let sel: Vec<&EvalRecord> = evals
            .iter()
            .filter(|r| r.corruption.as_deref() == Some(f) && r.severity == Some(*s))
            .collect();
        let pairs: Vec<(usize, usize)> = sel.iter().map(|r| (r.label, r.prediction)).collect();
        let cp: Vec<usize> = sel
            .iter()
            .map(|r| clean_pred.get(&r.index).copied().unwrap_or(usize::MAX))
            .collect();
        reports.push(classwise(&format!("{f} s{s}"), &pairs, k, Some(&cp)));
    }
    let mut family_names: Vec<String> = fams.iter().map(|f| f.0.clone()).collect();
    family_names.dedup();
    for f in &family_names {
        let sel: Vec<&EvalRecord> = evals
            .iter()
            .filter(|r| r.corruption.as_deref() == Some(f))
            .collect();
        let pairs: Vec<(usize, usize)> = sel.iter().map(|r| (r.label, r.prediction)).collect();
        family_reports.push(classwise(f, &pairs, k, None));
    }
    // 4. Targeted attacks toward each class.
    let mut targeted = Vec::new();
    let mut target_reports = Vec::new();
    if a.targeted && a.attack != "none" {
        for (t, name) in names.iter().enumerate() {
            let dir = out.join(format!("targeted-{t}"));
            eprintln!(
                "classwise: targeted {} toward {name} ({}/{k}) → {}",
                a.attack,
                t + 1,
                dir.display()
            );
            crate::attack::run(
                &attack_args(a, dir.clone(), vec![a.eps[0].clone()], Some(t)),
                threads,
            )?;
            let recs: Vec<AttackRecord> = read_records(&dir)?;
            let others: Vec<&AttackRecord> = recs.iter().filter(|r| r.label != t).collect();
            // The class-wise counters measured against the target label (methods.md §2.3).
            let pairs: Vec<(usize, usize)> = others.iter().map(|r| (t, r.prediction)).collect();
            let cp: Vec<usize> = others.iter().map(|r| r.clean_prediction).collect();
            target_reports.push(classwise(
                &format!("{} toward {name}", a.attack),
                &pairs,
                k,
                Some(&cp),
            ));
            let hit = others.iter().filter(|r| r.prediction == t).count();
            let wrong = others.iter().filter(|r| r.prediction != r.label).count();
            targeted.push(TargetReport {
                target: t,
                attacked: others.len(),
                success_rate: hit as f64 / others.len().max(1) as f64,
                misclassified_rate: wrong as f64 / others.len().max(1) as f64,
            });
        }
    }
    // 5. Latent space of the clean images.
    let main = reports.get(1).unwrap_or(&reports[0]).clone();
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    let total = a.data.limit.map_or(info.len, |l| l.min(info.len));
    let mut dim = 0;
    for b in loaded.data.batches(a.batch_size.max(1), 0..total)? {
        let b = b?;
        let (_, f) = loaded.model.model.features(&b.images, &["penultimate"])?;
        dim = f[0].len() / b.len().max(1);
        feats.extend_from_slice(f[0].as_f32()?);
        labels.extend_from_slice(&b.labels);
    }
    let lat = latent(
        &feats,
        dim,
        &labels,
        k,
        &reports[0].confusion,
        main.cfps.as_deref(),
    );
    // 6. Records, plots, ranking.
    let cfps: serde_json::Map<String, Value> = reports
        .iter()
        .chain(&family_reports)
        .map(|r| {
            let per: serde_json::Map<String, Value> = names
                .iter()
                .enumerate()
                .map(|(c, n)| (n.clone(), json!(r.cfps.as_ref().map(|v| v[c]))))
                .collect();
            (r.condition.clone(), Value::Object(per))
        })
        .collect();
    let ranking = rank(&reports, &family_reports, &targeted, &names);
    let mut run = json!({
        "schema_version": faultline::record::SCHEMA_VERSION,
        "command": "classwise",
        "versions": { "faultline": env!("CARGO_PKG_VERSION") },
        "settings": { "model": loaded.model_path, "data": loaded.data_path, "limit": a.data.limit, "attack": a.attack,
                      "eps": a.eps, "steps": a.steps, "targeted": a.targeted, "corruptions": a.corruptions,
                      "severities": a.severities, "seed": a.seed },
        "status": "complete",
        "class_names": names,
        "cfps": cfps,
        "classwise": reports,
        "corruption_families": family_reports,
        "targeted": targeted,
        "targeted_counters": target_reports,
        "latent": lat,
        "ranking": ranking,
    });
    if let Some(m) = run.as_object_mut() {
        m.insert("model".into(), json!(loaded.model.card));
    }
    let p = out.join("run.json");
    std::fs::write(&p, serde_json::to_string_pretty(&run)? + "\n")
        .with_context(|| format!("writing {}", p.display()))?;
    write_plots(&out, &reports, &family_reports, &targeted, &lat, &names)?;
    print_ranking(&ranking, &reports, &out).context("writing to stdout")
}

/// Classes from most to least vulnerable: by accuracy under the attack (first ε), then CFPS
/// under it, then accuracy under corruptions (mean over families), then clean accuracy.
fn rank(
    reports: &[ClasswiseReport],
    families: &[ClasswiseReport],
    targeted: &[TargetReport],
    names: &[String],
) -> Vec<Value> {
    let clean = &reports[0];
    let attack = reports.iter().skip(1).find(|r| !r.condition.contains(" s"));
    let corr_mean = |c: usize| -> Option<f64> {
        let v: Vec<f64> = families
            .iter()
            .filter_map(|f| f.class_accuracy[c])
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    // Lexicographic: attack accuracy, then its CFPS (descending: classes that attract errors are
    // the ones an attacker exploits), then corruption accuracy, then clean accuracy.
    let key = |c: usize| -> [f64; 4] {
        [
            attack.and_then(|a| a.class_accuracy[c]).unwrap_or(1.0),
            -attack
                .and_then(|a| a.cfps.as_ref().map(|v| v[c]))
                .unwrap_or(0.0),
            corr_mean(c).unwrap_or(1.0),
            clean.class_accuracy[c].unwrap_or(1.0),
        ]
    };
    let mut rows: Vec<usize> = (0..names.len()).collect();
    rows.sort_by(|&a, &b| {
        let (ka, kb) = (key(a), key(b));
        ka.iter()
            .zip(&kb)
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(a.cmp(&b))
    });
    rows.iter()
        .map(|&c| {
            json!({
                "class": c,
                "name": names[c],
                "clean_accuracy": clean.class_accuracy[c],
                "attack": attack.map(|a| a.condition.clone()),
                "attack_accuracy": attack.and_then(|a| a.class_accuracy[c]),
                "attack_cfps": attack.and_then(|a| a.cfps.as_ref().map(|v| v[c])),
                "corruption_accuracy": corr_mean(c),
                "targeted_success_rate": targeted.iter().find(|t| t.target == c).map(|t| t.success_rate),
            })
        })
        .collect()
}

fn write_plots(
    out: &Path,
    reports: &[ClasswiseReport],
    families: &[ClasswiseReport],
    targeted: &[TargetReport],
    lat: &faultline::classwise::LatentReport,
    names: &[String],
) -> Result<()> {
    let write = |name: &str, svg: String| -> Result<()> {
        let p = out.join(name);
        std::fs::write(&p, svg).with_context(|| format!("writing {}", p.display()))
    };
    let to_f = |m: &[Vec<u64>]| -> Vec<Vec<f64>> {
        m.iter()
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect()
    };
    for r in reports.iter().filter(|r| !r.condition.contains(" s")) {
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
    let rows: Vec<&ClasswiseReport> = reports
        .iter()
        .chain(families)
        .filter(|r| r.cfps.is_some())
        .collect();
    if !rows.is_empty() {
        let m: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| r.cfps.clone().unwrap_or_default())
            .collect();
        let labels: Vec<String> = rows.iter().map(|r| r.condition.clone()).collect();
        write(
            "cfps.svg",
            plot::heatmap(
                "CFPS (share of all errors predicted as the class)",
                &m,
                &labels,
                names,
                "perturbation",
                "class",
                names.len() <= 12,
            ),
        )?;
    }
    let mut series: Vec<(String, Vec<f64>)> = reports
        .iter()
        .filter(|r| !r.condition.contains(" s"))
        .map(|r| {
            (
                r.condition.clone(),
                r.class_accuracy.iter().map(|a| a.unwrap_or(0.0)).collect(),
            )
        })
        .collect();
    if !families.is_empty() {
        let mean: Vec<f64> = (0..names.len())
            .map(|c| {
                families
                    .iter()
                    .filter_map(|f| f.class_accuracy[c])
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
    if !targeted.is_empty() {
        let s = vec![(
            "targeted success".to_string(),
            targeted.iter().map(|t| t.success_rate).collect(),
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
    )?;
    Ok(())
}

fn print_ranking(
    ranking: &[Value],
    reports: &[ClasswiseReport],
    out: &Path,
) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    let pct = |v: &Value| {
        v.as_f64()
            .map_or("-".to_string(), |x| format!("{:.1}", 100.0 * x))
    };
    let attack = ranking
        .first()
        .and_then(|r| r["attack"].as_str())
        .unwrap_or("");
    writeln!(
        o,
        "classes from most to least vulnerable{}",
        if attack.is_empty() {
            String::new()
        } else {
            format!(" (by accuracy under {attack})")
        }
    )?;
    writeln!(
        o,
        "{:>4}  {:<14} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "rank", "class", "clean %", "attack %", "CFPS %", "corr. %", "reached %"
    )?;
    for (i, r) in ranking.iter().enumerate() {
        writeln!(
            o,
            "{:>4}  {:<14} {:>8} {:>8} {:>8} {:>8} {:>9}",
            i + 1,
            r["name"]
                .as_str()
                .unwrap_or("?")
                .chars()
                .take(14)
                .collect::<String>(),
            pct(&r["clean_accuracy"]),
            pct(&r["attack_accuracy"]),
            pct(&r["attack_cfps"]),
            pct(&r["corruption_accuracy"]),
            pct(&r["targeted_success_rate"]),
        )?;
    }
    writeln!(o)?;
    for r in reports.iter().filter(|r| !r.condition.contains(" s")) {
        let worst = r.worst_class.map_or("-".into(), |(c, a)| {
            format!("class {c} at {:.1} %", 100.0 * a)
        });
        writeln!(
            o,
            "{:<16} accuracy {:5.1} %, worst {worst}, flip rate {}",
            r.condition,
            100.0 * r.accuracy,
            r.flip_rate
                .map_or("-".into(), |f| format!("{:.1} %", 100.0 * f))
        )?;
    }
    writeln!(o, "\nwrote {}/run.json and SVG charts (confusion, cfps, class_accuracy, centroid_distance, latent_pca)", out.display())?;
    Ok(())
}
