//! `margins`: brittle-decision detection (Ngnawé et al., NeurIPS 2024). Input margins from a
//! minimum-norm attack against the predicted label, clean scores (logit margin, probability
//! margin, maximum probability, feature-space margin), their rank agreement (Kendall τ-b,
//! Spearman ρ with bootstrap intervals), detection of the non-robust samples (AUROC, AUPR,
//! FPR@95, a deployable threshold), the robust accuracy estimated from a small attacked subset,
//! and optionally a learned pseudo-margin. Records are appended per batch; a killed run resumes.

use std::path::PathBuf;
use std::time::Instant;

use faultline_attacks::registry::{self, Settings};
use faultline_attacks::{BatchRef, Norm};
use serde::Serialize;
use serde_json::json;

use crate::eps::eps_label;
use crate::error::{setting, Error, Result};
use crate::eval::check_batch;
use crate::margin::measure::{choose_subset, measure_batch_watched, rows};
use crate::margin::pseudo::{
    fit, judge, pseudo_margin, PseudoInput, PseudoMargin, PseudoParams, PseudoReport,
};
use crate::margin::report::{input_margin, report, MarginReport, ReportParams, ScoreReport};
use crate::margin::roc_curve;
use crate::margin::scores::RowGaps;
use crate::model::ModelCard;
use crate::plot::{roc_chart, xy_chart, Series};
use crate::record::SampleRecord;
use crate::run::attack::default_eps;
use crate::run::{
    check_batch_size, open_records, threads, write_file, DataCard, Loaded, Output, Progress,
    Runtime,
};
use crate::subset::{read_batches, Selection};

/// Settings of `margins`.
#[derive(Debug, Clone, Serialize)]
pub struct MarginsConfig {
    /// Minimum-norm attack estimating the input margins (`fab`, `deepfool`, `cw`).
    pub attack: String,
    /// Its norm, steps and restarts (None: the attack's defaults).
    pub settings: Settings,
    /// A sample is non-robust when its input margin is at most ε [default: the norm's].
    pub eps: Option<f32>,
    /// Attack only a random subset of this many of the selected samples [default: all].
    pub attack_subset: Option<usize>,
    /// Attacked samples per round of the robust-accuracy estimate.
    pub estimate_size: usize,
    /// Learn a pseudo-margin from logits or penultimate features, with these parameters.
    pub pseudo: Option<PseudoParams>,
    /// Where the pseudo-margin is fitted, or which saved one is applied.
    pub pseudo_source: PseudoSource,
    /// Keep the penultimate features of every sample in the records even without a
    /// feature pseudo-margin.
    pub keep_features: bool,
    /// Share of the non-robust samples the printed threshold must flag.
    pub recall: f64,
    /// Bootstrap resamples for the confidence intervals.
    pub bootstrap: usize,
    /// The samples measured [default: all].
    pub selection: Selection,
    /// Images per batch.
    pub batch_size: usize,
}

impl Default for MarginsConfig {
    fn default() -> Self {
        MarginsConfig {
            attack: "fab".into(),
            settings: Settings::default(),
            eps: None,
            attack_subset: None,
            estimate_size: 100,
            pseudo: None,
            pseudo_source: PseudoSource::Split,
            keep_features: false,
            recall: 0.95,
            bootstrap: 1000,
            selection: Selection::default(),
            batch_size: 128,
        }
    }
}

/// Where `margins` gets its pseudo-margin.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PseudoSource {
    /// Fitted on `fit_fraction` of this run's attacked samples, judged on the rest.
    Split,
    /// Fitted on every attacked sample of these samples of another data set (passed to
    /// [`run_records`], measured in the `fit/` sub-directory), judged on all of this run's.
    FitData(Selection),
    /// The one saved in this earlier `margins` run directory, applied as is.
    From(PathBuf),
}

/// The body of `margins`' `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct MarginsReport {
    /// The attack that measured the input margins.
    pub attack: String,
    /// Fraction of samples predicted right.
    pub clean_accuracy: f64,
    /// Kendall τ-b between the logit margin and the input margin.
    pub kendall_tau: Option<f64>,
    /// AUROC of the logit margin detecting non-robust samples.
    pub auroc: Option<f64>,
    /// AUPR of the same.
    pub aupr: Option<f64>,
    /// FPR at 95 % TPR of the same.
    pub fpr_at_95_tpr: Option<f64>,
    /// Robust accuracy the input margins imply (attacked samples).
    pub robust_accuracy: Option<f64>,
    /// The norm of the margins.
    pub norm: Norm,
    /// The radius separating robust from non-robust samples.
    pub eps: f32,
    /// The model.
    pub model: ModelCard,
    /// The data set.
    pub data: DataCard,
    /// Engine settings, timing and passes.
    pub runtime: Runtime,
    /// Every figure.
    pub report: MarginReport,
    /// The learned pseudo-margin (held-out figures).
    pub pseudo_margin: Option<PseudoReport>,
    /// Plots written.
    pub plots: Vec<String>,
}

/// Runs `margins`.
pub fn run(
    cfg: &MarginsConfig,
    loaded: &Loaded,
    out: &Output,
    progress: &dyn Progress,
) -> Result<MarginsReport> {
    Ok(run_records(cfg, loaded, None, out, progress)?.0)
}

/// Runs `margins` and also returns every record; `fit_data` is the data set of
/// [`PseudoSource::FitData`] (the same model, other images).
pub fn run_records(
    cfg: &MarginsConfig,
    loaded: &Loaded,
    fit_data: Option<&Loaded>,
    out: &Output,
    progress: &dyn Progress,
) -> Result<(MarginsReport, Vec<SampleRecord>)> {
    check_batch_size(cfg.batch_size)?;
    if !(cfg.recall > 0.0 && cfg.recall <= 1.0) {
        return Err(setting("--recall", "must lie in (0, 1]"));
    }
    if let Some(p) = &cfg.pseudo {
        if !(p.fit_fraction > 0.0 && p.fit_fraction < 1.0) {
            return Err(setting("--fit-fraction", "must lie in (0, 1)"));
        }
        if p.epochs == 0 || !(p.lr.is_finite() && p.lr > 0.0) {
            return Err(setting("--epochs/--lr", "must be positive"));
        }
    }
    if cfg.attack_subset == Some(0) {
        return Err(setting("--attack-subset", "0 attacks no sample"));
    }
    if cfg.estimate_size == 0 {
        return Err(setting("--estimate-size", "must be at least 1"));
    }
    let attack = registry::build(&cfg.attack, &cfg.settings)?;
    if !attack.is_min_norm() {
        return Err(setting(
            "--attack",
            format!(
                "{} is bounded; input margins need fab, deepfool or cw",
                attack.name
            ),
        ));
    }
    let norm = attack.norm();
    let info = loaded.data.info();
    let image = [info.channels, info.height, info.width];
    let eps = cfg.eps.unwrap_or(default_eps(norm, image));
    if cfg.eps.is_none() {
        progress.note(&crate::run::attack::default_eps_note(norm, image));
    }
    // A shard covers whole batches (see `Shard`).
    let selection = cfg.selection.batched(cfg.batch_size);
    let indices = loaded.select(&selection)?;
    let total = indices.len();
    let model = &loaded.model.model;
    let k = model.num_classes();
    let head = model.head();
    let gaps = head.as_ref().map(|h| RowGaps::new(h, norm));
    let saved = match &cfg.pseudo_source {
        PseudoSource::From(dir) => {
            let pm = PseudoMargin::load(dir)?;
            if pm.meta.norm != norm {
                return Err(setting(
                    "--pseudo-margin-from",
                    format!(
                        "{} was fitted on {} margins, this run measures {}",
                        dir.display(),
                        pm.meta.norm.name(),
                        norm.name()
                    ),
                ));
            }
            Some(pm)
        }
        _ => None,
    };
    if matches!(cfg.pseudo_source, PseudoSource::FitData(_)) {
        if fit_data.is_none() {
            return Err(setting("--fit-data", "no data set to fit on was given"));
        }
        if cfg.pseudo.is_none() {
            return Err(setting("--fit-data", "needs --pseudo-margin"));
        }
    }
    let keep_features = cfg.keep_features
        || cfg
            .pseudo
            .as_ref()
            .is_some_and(|p| p.input == PseudoInput::Features)
        || saved
            .as_ref()
            .is_some_and(|p| p.meta.input == PseudoInput::Features);
    if keep_features && model.penultimate_name().is_none() {
        return Err(Error::Invalid(format!(
            "{}: no final Gemm/MatMul found, so there are no penultimate features to learn from; use --pseudo-margin logits",
            loaded.model_path.display()
        )));
    }
    let seed = cfg.settings.seed;
    let mut settings = loaded.settings(&selection, &indices)?;
    settings["attack"] = attack.describe();
    settings["attack_subset"] = json!(cfg.attack_subset);
    settings["keep_features"] = json!(keep_features);
    settings["seed"] = json!(seed);
    let (mut rd, mut records, start) =
        open_records(out, "margins", settings, 1, &indices, progress)?;
    // Which samples are attacked (by position in the selection): all, or the first
    // `attack_subset` of a seeded permutation — of the whole selection, so that a shard
    // attacks the samples the unsharded run would.
    let chosen = match &selection.shard {
        Some(s) => {
            let all = selection.resolve_all(loaded.data.as_ref())?.len();
            let whole = choose_subset(all, cfg.attack_subset, seed);
            s.positions(all).map(|p| whole[p]).collect()
        }
        None => choose_subset(total, cfg.attack_subset, seed),
    };
    progress.start("margins", total, start);
    let t0 = Instant::now();
    let non_robust = |r: &SampleRecord| {
        r.margin
            .as_ref()
            .is_some_and(|m| m.input_margin.is_some_and(|d| d <= eps))
    };
    let (mut attacked, mut nonrobust) = records
        .iter()
        .filter(|r| r.attack.is_some())
        .fold((0usize, 0usize), |(a, b), r| {
            (a + 1, b + usize::from(non_robust(r)))
        });
    let source = loaded.data_path.display().to_string();
    let mut position = start;
    for batch in read_batches(loaded.data.as_ref(), &indices[start..], cfg.batch_size)? {
        let batch = batch?;
        check_batch(&batch, k, &source)?;
        let mask = chosen[position..position + batch.len()].to_vec();
        position += batch.len();
        let b = BatchRef::new(&batch.images, &batch.indices);
        // Per-sample progress within the batch: samples not attacked are done at once, the
        // attacked ones as the attack settles them.
        let before = records.len() + mask.iter().filter(|&&m| !m).count();
        let mut shown = records.len();
        let mut watch = |t: faultline_attacks::Tick| {
            let done = before + t.done().floor() as usize;
            if done > shown {
                shown = done;
                progress.advance(done);
            }
        };
        let recs = measure_batch_watched(
            model,
            b,
            &batch.labels,
            &attack,
            &mask,
            gaps.as_ref(),
            keep_features,
            &mut watch,
        )?;
        rd.append(&recs)?;
        for r in recs.iter().filter(|r| r.attack.is_some()) {
            attacked += 1;
            nonrobust += usize::from(non_robust(r));
        }
        records.extend(recs);
        progress.advance(records.len());
        progress.message(&format!(
            "non-robust {:.1} % at {}",
            100.0 * nonrobust as f64 / attacked.max(1) as f64,
            eps_label(eps)
        ));
    }
    progress.finish();
    let secs = t0.elapsed().as_secs_f64();
    let rp = ReportParams {
        norm,
        eps,
        recall: cfg.recall,
        bootstrap: cfg.bootstrap,
        estimate_size: cfg.estimate_size,
        estimate_rounds: 10,
        seed,
    };
    let view = rows(&records);
    let rep = report(&view, &rp, gaps.as_ref().map(|g| g.range()));
    let refs: Vec<&crate::margin::measure::MarginRow> = view.iter().collect();
    let pseudo = match (&cfg.pseudo_source, &cfg.pseudo, saved) {
        (PseudoSource::From(dir), _, Some(pm)) => {
            let pp = PseudoParams {
                input: pm.meta.input,
                ..cfg.pseudo.clone().unwrap_or_default()
            };
            let source = format!("loaded from {}", dir.display());
            Some(judge(&pm, &source, None, &refs, &pp, &rp)?)
        }
        (PseudoSource::FitData(sel), Some(pp), _) => {
            let fit_cfg = MarginsConfig {
                selection: sel.clone(),
                attack_subset: None,
                pseudo: None,
                pseudo_source: PseudoSource::Split,
                keep_features,
                ..cfg.clone()
            };
            let fit_out = out.sub("fit");
            let fit_loaded = fit_data.ok_or_else(|| setting("--fit-data", "missing"))?;
            progress.note(&format!(
                "margins: input margins of the fit data {} → {}",
                fit_loaded.data_path.display(),
                fit_out.dir.display()
            ));
            let (_, fit_recs) = run_records(&fit_cfg, fit_loaded, None, &fit_out, progress)?;
            let fit_view = rows(&fit_recs);
            let fit_refs: Vec<_> = fit_view.iter().collect();
            let pm = fit(&fit_refs, pp, &rp)?;
            pm.save(&out.dir)?;
            Some(judge(&pm, "fit data", Some(&fit_refs), &refs, pp, &rp)?)
        }
        (_, Some(pp), _) => {
            let (r, pm) = pseudo_margin(&view, pp, &rp)?;
            pm.save(&out.dir)?;
            Some(r)
        }
        _ => None,
    };
    write_plots(out, &view, &rep, pseudo.as_ref(), &rp)?;
    let logit = rep.score("logit_margin");
    // Every sample costs one clean forward pass; attacked ones record theirs with the attack's.
    let outcomes = records.iter().filter_map(|r| r.attack.as_ref());
    let forward = outcomes.clone().map(|a| a.forward as u64).sum::<u64>()
        + records.iter().filter(|r| r.attack.is_none()).count() as u64;
    let backward = outcomes.map(|a| a.backward as u64).sum::<u64>();
    let report = MarginsReport {
        attack: attack.name.clone(),
        clean_accuracy: rep.clean_accuracy,
        kendall_tau: logit.and_then(|s| s.kendall_tau.as_ref()).map(|e| e.value),
        auroc: logit.and_then(|s| s.detection.auroc),
        aupr: logit.and_then(|s| s.detection.aupr),
        fpr_at_95_tpr: logit.and_then(|s| s.detection.fpr_at_95_tpr),
        robust_accuracy: rep.robust_accuracy,
        norm,
        eps,
        model: loaded.model.card.clone(),
        data: loaded.data_card(),
        runtime: Runtime {
            threads: threads(),
            batch_size: cfg.batch_size,
            seconds: secs,
            resumed_from: start,
            forward_passes: Some(forward),
            backward_passes: Some(backward),
            img_per_s: None,
        },
        report: rep,
        pseudo_margin: pseudo,
        plots: vec!["margins_scatter.svg".into(), "roc.svg".into()],
    };
    rd.finish(&report)?;
    Ok((report, records))
}

/// The scatter of input margin against logit margin, and the ROC curve of each score.
fn write_plots(
    out: &Output,
    records: &[crate::margin::measure::MarginRow],
    rep: &MarginReport,
    pseudo: Option<&PseudoReport>,
    rp: &ReportParams,
) -> Result<()> {
    let pts = |correct: bool| -> Vec<[f64; 2]> {
        records
            .iter()
            .filter(|r| {
                r.attacked && r.input_margin.is_some() && (r.prediction == r.label) == correct
            })
            .map(|r| [r.scores.logit_margin as f64, input_margin(r)])
            .collect()
    };
    let eps = rp.eps as f64;
    let max_m = records
        .iter()
        .map(|r| r.scores.logit_margin as f64)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let tau = rep
        .score("logit_margin")
        .and_then(|s| s.kendall_tau.as_ref())
        .map_or("n/a".into(), |e| format!("{:.3}", e.value));
    let scatter = xy_chart(
        &format!(
            "input margin ({}) vs logit margin, τ = {tau}",
            rp.norm.name()
        ),
        "logit margin (top-1 − top-2)",
        &format!("input margin d_in ({})", rp.norm.name()),
        &[
            Series {
                name: "correct".into(),
                points: pts(true),
                line: false,
            },
            Series {
                name: "misclassified".into(),
                points: pts(false),
                line: false,
            },
            Series {
                name: format!("ε = {}", eps_label(rp.eps)),
                points: vec![[0.0, eps], [max_m, eps]],
                line: true,
            },
        ],
        None,
    );
    write_file(&out.file("margins_scatter.svg"), &scatter)?;
    let att: Vec<_> = records.iter().filter(|r| r.attacked).collect();
    let pos: Vec<bool> = att.iter().map(|r| input_margin(r) <= eps).collect();
    let mut series: Vec<Series> = rep
        .scores
        .iter()
        .map(|s| {
            let score: Vec<f64> = att
                .iter()
                .map(|r| -(r.scores.get(&s.name).unwrap_or(f32::NAN) as f64))
                .collect();
            Series {
                name: auroc_label(s),
                points: roc_curve(&score, &pos),
                line: true,
            }
        })
        .collect();
    if let Some(p) = pseudo {
        series.push(Series {
            name: format!("{} (held out)", auroc_label(&p.after)),
            points: p.roc.clone(),
            line: true,
        });
    }
    let non_robust = pos.iter().filter(|&&p| p).count();
    let roc = roc_chart(
        &format!(
            "detecting non-robust samples (d_in ≤ {}): {non_robust} non-robust, {} robust",
            eps_label(rp.eps),
            pos.len() - non_robust
        ),
        series,
    );
    write_file(&out.file("roc.svg"), &roc)
}

/// A score's name with its AUROC, for plot legends.
pub fn auroc_label(s: &ScoreReport) -> String {
    format!(
        "{} {}",
        s.name,
        s.detection
            .auroc
            .map_or("".into(), |v| format!("({:.3})", v))
    )
}
