//! The audit report: reads run directories (an `audit` directory or individual `eval`, `attack`,
//! `classwise`, `margins`, `metrics`, `weak` runs), derives the headline figures and the
//! recommendations ([`Findings`]) and renders one self-contained HTML page ([`html`]). Data flows
//! one way: this module only reads `run.json`, `samples.jsonl`, the SVG charts the commands wrote
//! and the audit's `gallery/`; it runs no model and no attack.

pub mod html;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::eps::eps_label;
use crate::error::{io, Error, Result};
use crate::record::SampleRecord;
use crate::run::audit::{read_records, section_dirs};

/// One run directory and its `run.json`.
#[derive(Debug, Clone)]
pub struct Run {
    /// The directory.
    pub dir: PathBuf,
    /// Its `run.json`.
    pub json: Value,
}

impl Run {
    /// Reads `dir/run.json`.
    pub fn read(dir: &Path) -> Result<Run> {
        let p = dir.join("run.json");
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| Error::RunDir {
            path: p.clone(),
            why: format!("not a faultline run record ({e})"),
        })?;
        Ok(Run {
            dir: dir.to_path_buf(),
            json,
        })
    }
    /// The command that wrote it.
    pub fn command(&self) -> &str {
        self.json["command"].as_str().unwrap_or("")
    }
    /// Whether it finished.
    pub fn complete(&self) -> bool {
        self.json["status"].as_str() == Some("complete")
    }
    /// Its per-sample records (none when it has no `samples.jsonl`).
    pub fn records(&self) -> Result<Vec<SampleRecord>> {
        let p = self.dir.join("samples.jsonl");
        if !p.exists() {
            return Ok(Vec::new());
        }
        read_records(&p)
    }
    /// A text file of the run (an SVG chart), if present.
    pub fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(name)).ok()
    }
}

/// The run directories a report is built from, by kind.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The audit's own record.
    pub audit: Option<Run>,
    /// Clean and corrupted evaluation.
    pub eval: Option<Run>,
    /// The bounded attack (ensemble) over ε.
    pub attack: Option<Run>,
    /// The audit's escape attack.
    pub escape: Option<Run>,
    /// Class-wise analysis.
    pub classwise: Option<Run>,
    /// Margins.
    pub margins: Option<Run>,
    /// The metric suite.
    pub metrics: Option<Run>,
    /// Weak-robust training samples.
    pub weak: Option<Run>,
    /// The audit's gallery directory.
    pub gallery: Option<PathBuf>,
    /// Records of the attack run.
    pub attack_records: Vec<SampleRecord>,
    /// Records of the escape run.
    pub escape_records: Vec<SampleRecord>,
    /// Records of the margins run.
    pub margin_records: Vec<SampleRecord>,
}

impl Sources {
    /// Reads run directories: an audit directory brings its sections; a `classwise` run its
    /// `eval/` and `attack/` steps unless given separately. A later directory of a kind replaces
    /// an earlier one.
    pub fn read(dirs: &[PathBuf]) -> Result<Sources> {
        let mut s = Sources::default();
        for d in dirs {
            // Absolute paths, so the page does not depend on how the directories were named.
            let d = &d.canonicalize().map_err(io(d))?;
            let run = Run::read(d)?;
            if run.command() == "audit" {
                for sec in section_dirs(d) {
                    s.put(Run::read(&sec)?, sec.file_name().and_then(|n| n.to_str()))?;
                }
                let g = d.join("gallery");
                s.gallery = g.join("gallery.json").exists().then_some(g);
                s.audit = Some(run);
            } else {
                s.put(run, None)?;
            }
        }
        if let Some(c) = s.classwise.clone() {
            for (slot, sub) in [(&mut s.eval, "eval"), (&mut s.attack, "attack")] {
                if slot.is_none() && c.dir.join(sub).join("run.json").exists() {
                    *slot = Some(Run::read(&c.dir.join(sub))?);
                }
            }
        }
        if s.eval.is_none()
            && s.attack.is_none()
            && s.classwise.is_none()
            && s.margins.is_none()
            && s.metrics.is_none()
            && s.weak.is_none()
        {
            return Err(Error::Invalid(format!(
                "{}: no eval, attack, classwise, margins, metrics, weak or audit run to report on",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        s.attack_records = s
            .attack
            .as_ref()
            .map(Run::records)
            .transpose()?
            .unwrap_or_default();
        s.escape_records = s
            .escape
            .as_ref()
            .map(Run::records)
            .transpose()?
            .unwrap_or_default();
        s.margin_records = s
            .margins
            .as_ref()
            .map(Run::records)
            .transpose()?
            .unwrap_or_default();
        Ok(s)
    }

    fn put(&mut self, run: Run, section: Option<&str>) -> Result<()> {
        let slot = match (section, run.command()) {
            (Some("escape"), _) => &mut self.escape,
            (_, "eval") => &mut self.eval,
            (_, "attack") => &mut self.attack,
            (_, "classwise") => &mut self.classwise,
            (_, "margins") => &mut self.margins,
            (_, "metrics") => &mut self.metrics,
            (_, "weak") => &mut self.weak,
            (_, other) => {
                return Err(Error::RunDir {
                    path: run.dir.join("run.json"),
                    why: format!("a `{other}` run; report reads audit, eval, attack, classwise, margins, metrics and weak runs"),
                })
            }
        };
        *slot = Some(run);
        Ok(())
    }

    /// The class names (classwise run, else the data set's, else indices).
    pub fn class_names(&self) -> Vec<String> {
        let from = |v: &Value| -> Option<Vec<String>> {
            let a = v.as_array()?;
            (!a.is_empty()).then(|| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or("").to_string())
                    .collect()
            })
        };
        let runs = [&self.classwise, &self.eval, &self.attack, &self.margins];
        runs.iter()
            .filter_map(|r| r.as_ref())
            .find_map(|r| {
                from(&r.json["class_names"]).or_else(|| from(&r.json["data"]["class_names"]))
            })
            .unwrap_or_default()
    }

    /// The name of class `c`.
    pub fn class_name(&self, c: usize) -> String {
        self.class_names()
            .get(c)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    }
}

/// One point of the robust-accuracy curve.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RobustPoint {
    /// The radius.
    pub eps: f32,
    /// Its label (`8/255`).
    pub label: String,
    /// Robust accuracy of the attack run (after every stage).
    pub robust_accuracy: f64,
}

/// A named figure.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Named {
    /// The name.
    pub name: String,
    /// The figure.
    pub value: f64,
}

/// One of the most vulnerable classes (classwise ranking).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WeakClass {
    /// Class name.
    pub name: String,
    /// Clean accuracy.
    pub clean_accuracy: Option<f64>,
    /// The attack condition of the ranking (its smallest radius).
    pub attack: Option<String>,
    /// Accuracy under the attack at the ranking's radius.
    pub attack_accuracy: Option<f64>,
    /// Mean accuracy over the corruption families.
    pub corruption_accuracy: Option<f64>,
}

/// The logit-margin threshold that flags brittle inputs, and how well it does on the audited
/// samples (margins run: a sample is non-robust when its input margin is at most ε).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Threshold {
    /// Flag an input when its logit margin (top-1 − top-2) is at most this.
    pub flag_below: f64,
    /// Norm and radius of "non-robust".
    pub norm: String,
    /// The radius.
    pub eps: f32,
    /// Attacked samples.
    pub samples: usize,
    /// Non-robust among them.
    pub non_robust: usize,
    /// Flagged among them.
    pub flagged: usize,
    /// Non-robust and flagged.
    pub caught: usize,
    /// caught / flagged.
    pub precision: Option<f64>,
    /// caught / non-robust.
    pub recall: Option<f64>,
    /// AUROC of the logit margin detecting non-robust samples.
    pub auroc: Option<f64>,
    /// Kendall τ-b between the logit and the input margin.
    pub kendall_tau: Option<f64>,
}

/// Samples worth looking at, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LookAt {
    /// Why.
    pub why: String,
    /// Data-set indices.
    pub indices: Vec<usize>,
}

/// The headline figures and the recommendations derived from them.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Findings {
    /// Samples of the evaluation (or the attack).
    pub samples: Option<usize>,
    /// Clean accuracy.
    pub clean_accuracy: Option<f64>,
    /// The attack's name and norm.
    pub attack: Option<String>,
    /// Robust accuracy per ε.
    pub robust: Vec<RobustPoint>,
    /// Samples the escape broke that the ensemble left robust (thorough).
    pub escape_broken: Option<usize>,
    /// Robust accuracy at the largest ε after the escape.
    pub robust_after_escape: Option<f64>,
    /// Mean accuracy over the corruption conditions.
    pub mean_corruption_accuracy: Option<f64>,
    /// The three corruption families with the lowest mean accuracy.
    pub weakest_families: Vec<Named>,
    /// The three most vulnerable classes.
    pub weakest_classes: Vec<WeakClass>,
    /// Gradient-masking warnings of the attack's sanity checks.
    pub masking: Vec<String>,
    /// The deployable threshold.
    pub threshold: Option<Threshold>,
    /// Samples to look at.
    pub look_at: Vec<LookAt>,
    /// What to do.
    pub recommendations: Vec<String>,
}

fn pct(v: f64) -> String {
    format!("{:.1} %", 100.0 * v)
}

impl Findings {
    /// The findings of `s`.
    pub fn of(s: &Sources) -> Findings {
        let mut f = Findings::default();
        if let Some(e) = &s.eval {
            f.samples = e.json["results"]["n"].as_u64().map(|v| v as usize);
            f.clean_accuracy = e.json["clean_accuracy"].as_f64();
            f.mean_corruption_accuracy = e.json["mean_corruption_accuracy"].as_f64();
            let mut fam: Vec<Named> = e.json["corruptions"]["families"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| {
                    Some(Named {
                        name: x["corruption"].as_str()?.to_string(),
                        value: x["mean_accuracy"].as_f64()?,
                    })
                })
                .collect();
            fam.sort_by(|a, b| a.value.total_cmp(&b.value));
            fam.truncate(3);
            f.weakest_families = fam;
        }
        if let Some(a) = &s.attack {
            let j = &a.json;
            f.samples = f.samples.or(j["results"]["n"].as_u64().map(|v| v as usize));
            f.clean_accuracy = f.clean_accuracy.or(j["clean_accuracy"].as_f64());
            f.attack = Some(format!(
                "{} ({})",
                j["attack"].as_str().unwrap_or("?"),
                j["norm"].as_str().unwrap_or("?")
            ));
            f.robust = j["results"]["curve"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let eps = p["eps"].as_f64()? as f32;
                    Some(RobustPoint {
                        eps,
                        label: eps_label(eps),
                        robust_accuracy: p["robust_accuracy"].as_f64()?,
                    })
                })
                .collect();
            f.masking = j["sanity"]["warnings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w.as_str().map(String::from))
                .collect();
        }
        if let (Some(_), Some(last)) = (&s.escape, f.robust.last()) {
            let broken = s.escape_records.iter().filter(|r| r.success()).count();
            let n = s
                .attack_records
                .iter()
                .filter(|r| r.condition.eps() == Some(last.eps))
                .count();
            f.escape_broken = Some(broken);
            if n > 0 {
                f.robust_after_escape = Some(last.robust_accuracy - broken as f64 / n as f64);
            }
        }
        if let Some(c) = &s.classwise {
            f.weakest_classes = c.json["ranking"]
                .as_array()
                .into_iter()
                .flatten()
                .take(3)
                .map(|r| WeakClass {
                    name: r["name"].as_str().unwrap_or("?").to_string(),
                    clean_accuracy: r["clean_accuracy"].as_f64(),
                    attack: r["attack"].as_str().map(String::from),
                    attack_accuracy: r["attack_accuracy"].as_f64(),
                    corruption_accuracy: r["corruption_accuracy"].as_f64(),
                })
                .collect();
        }
        f.threshold = threshold(s);
        f.look_at = look_at(s, &f);
        f.recommendations = recommendations(s, &f);
        f
    }
}

/// The margins run's logit-margin threshold with its precision and recall on its own records.
fn threshold(s: &Sources) -> Option<Threshold> {
    let m = s.margins.as_ref()?;
    let j = &m.json;
    let eps = j["eps"].as_f64()? as f32;
    let logit = j["report"]["scores"]
        .as_array()?
        .iter()
        .find(|x| x["name"] == "logit_margin")?;
    let flag_below = logit["flag_below"].as_f64()?;
    let (mut samples, mut non_robust, mut flagged, mut caught) = (0, 0, 0, 0);
    for r in s.margin_records.iter().filter(|r| r.attack.is_some()) {
        let Some(d) = &r.margin else { continue };
        samples += 1;
        let nr = d.input_margin.is_some_and(|v| v <= eps);
        let fl = (d.scores.logit_margin as f64) <= flag_below;
        non_robust += usize::from(nr);
        flagged += usize::from(fl);
        caught += usize::from(nr && fl);
    }
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    Some(Threshold {
        flag_below,
        norm: j["norm"].as_str().unwrap_or("?").to_string(),
        eps,
        samples,
        non_robust,
        flagged,
        caught,
        precision: ratio(caught, flagged),
        recall: ratio(caught, non_robust),
        auroc: j["auroc"].as_f64(),
        kendall_tau: j["kendall_tau"].as_f64(),
    })
}

/// At most this many indices per reason.
const LOOK_AT: usize = 8;

fn look_at(s: &Sources, f: &Findings) -> Vec<LookAt> {
    let mut v = Vec::new();
    let mut push = |why: String, mut ids: Vec<usize>| {
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(LOOK_AT);
        if !ids.is_empty() {
            v.push(LookAt { why, indices: ids });
        }
    };
    if let Some(first) = f.robust.first() {
        let ids = s
            .attack_records
            .iter()
            .filter(|r| r.condition.eps() == Some(first.eps) && r.clean_correct() && r.success())
            .map(|r| r.index)
            .collect();
        push(
            format!(
                "correct when clean, broken already at the smallest ε = {}",
                first.label
            ),
            ids,
        );
    }
    let zero: Vec<usize> = s
        .attack_records
        .iter()
        .filter(|r| {
            r.attack
                .as_ref()
                .is_some_and(|a| a.gradient_issue.is_some())
        })
        .map(|r| r.index)
        .collect();
    push(
        "zero or non-finite gradient at the clean image (gradient attacks cannot move them)".into(),
        zero,
    );
    let unbroken: Vec<usize> = s
        .attack_records
        .iter()
        .filter(|r| {
            r.attack
                .as_ref()
                .is_some_and(|a| a.unbounded_success == Some(false))
        })
        .map(|r| r.index)
        .collect();
    push(
        "left robust even by the unbounded sanity attack (gradient masking?)".into(),
        unbroken,
    );
    let mut low: Vec<(f32, usize)> = s
        .margin_records
        .iter()
        .filter(|r| r.correct())
        .filter_map(|r| Some((r.margin.as_ref()?.input_margin?, r.index)))
        .collect();
    low.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(m) = &s.margins {
        push(
            format!(
                "correct, with the smallest input margins ({} {})",
                m.json["attack"].as_str().unwrap_or("?"),
                m.json["norm"].as_str().unwrap_or("?")
            ),
            low.iter().take(5).map(|x| x.1).collect(),
        );
    }
    v
}

fn recommendations(s: &Sources, f: &Findings) -> Vec<String> {
    let mut v = Vec::new();
    if let (Some(clean), Some(last)) = (f.clean_accuracy, f.robust.last()) {
        let robust = f.robust_after_escape.unwrap_or(last.robust_accuracy);
        if robust < 0.5 * clean {
            v.push(format!(
                "Not robust at ε = {}: robust accuracy {} against {} clean. Adversarial \
                 fine-tuning (`faultline finetune --adversarial pgd --eps {}`) is the usual remedy; \
                 re-audit after it.",
                last.label,
                pct(robust),
                pct(clean),
                last.label
            ));
        } else {
            v.push(format!(
                "Robust accuracy at ε = {} is {} ({} clean); confirm with `--preset thorough` \
                 before relying on it.",
                last.label,
                pct(robust),
                pct(clean)
            ));
        }
    }
    if !f.weakest_families.is_empty() {
        let names: Vec<String> = f
            .weakest_families
            .iter()
            .map(|n| format!("{} ({})", n.name, pct(n.value)))
            .collect();
        let aug: Vec<String> = f.weakest_families.iter().map(|n| n.name.clone()).collect();
        v.push(format!(
            "Weakest corruption families: {}. Train with them as augmentation \
             (`faultline finetune --augment {}`).",
            names.join(", "),
            aug.join(",")
        ));
    }
    if !f.weakest_classes.is_empty() {
        let names: Vec<String> = f
            .weakest_classes
            .iter()
            .map(|c| match (c.attack_accuracy, &c.attack) {
                (Some(a), Some(at)) => format!("{} ({} under {at})", c.name, pct(a)),
                _ => c.name.clone(),
            })
            .collect();
        let dir = s
            .classwise
            .as_ref()
            .map_or("CLASSWISE_DIR".into(), |c| c.dir.display().to_string());
        v.push(format!(
            "Most vulnerable classes: {}. Weight them in fine-tuning \
             (`faultline finetune --class-weights cfps:{dir}`).",
            names.join(", ")
        ));
    }
    for w in &f.masking {
        v.push(format!(
            "Gradient masking warning: {w} The reported robust accuracy is an upper bound; \
             run `--preset thorough` (gradient-free and random-start escape)."
        ));
    }
    if let Some(b) = f.escape_broken.filter(|&b| b > 0) {
        v.push(format!(
            "The escape broke {b} sample(s) with a vanishing gradient that the gradient \
             attacks left robust: the gradients are masked there."
        ));
    }
    if let Some(t) = &f.threshold {
        if t.samples > 0 && (t.non_robust == 0 || t.non_robust == t.samples) {
            v.push(format!(
                "{} of the {} attacked samples have an input margin at most ε = {} ({}): no margin threshold separates brittle from robust inputs at this radius; audit a {} radius (`--eps`) to choose one.",
                t.non_robust,
                t.samples,
                eps_label(t.eps),
                t.norm,
                if t.non_robust == 0 { "larger" } else { "smaller" }
            ));
        } else if let (Some(p), Some(r)) = (t.precision, t.recall) {
            v.push(format!(
                "Deployable check: flag inputs whose logit margin (top-1 − top-2 logit) is at \
                 most {:.3}. On these {} samples it flags {} and catches {} of the {} \
                 non-robust ones ({} {}): recall {}, precision {}.",
                t.flag_below,
                t.samples,
                t.flagged,
                t.caught,
                t.non_robust,
                t.norm,
                eps_label(t.eps),
                pct(r),
                pct(p)
            ));
        }
        if t.kendall_tau.is_some_and(|k| k < 0.5) {
            v.push(
                "The logit margin tracks the input margin poorly (Kendall τ below 0.5): learn a \
                 pseudo-margin (`faultline margins --pseudo-margin`) before deploying a threshold."
                    .into(),
            );
        }
    }
    if let Some(w) = &s.weak {
        if let Some(list) = w.json["weaknesses"].as_array().filter(|l| !l.is_empty()) {
            let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
            v.push(format!(
                "Weak-robust training samples expose: {}. Harden against them \
                 (`faultline harden --weak {}`).",
                names.join(", "),
                w.dir.display()
            ));
        }
    }
    if !f.look_at.is_empty() {
        v.push("Look at the samples listed below (data-set indices) first.".into());
    }
    v
}
