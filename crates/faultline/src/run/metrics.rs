//! `metrics`: the comprehensive metric suite of Guo et al. (methods.md §3.4; definitions in
//! [`crate::metrics`] and the [`crate::metrics::SUITE`] registry) for one model, optionally against
//! its defended version and a baseline model, in two streaming passes over the selected samples:
//!
//! 1. per batch: clean pass with every tapped layer (coverage bounds), the white-box attack (its
//!    images go to `adv.npy` in the run directory), the adversarial pass with the same taps
//!    (behaviour, imperceptibility, eni, neuron sensitivity and uncertainty), blur and JPEG of the
//!    adversarial images (rgb, ric), the black-box attack (aab), the defended model (cav … cos),
//!    corruptions (mce) and perturbation sequences (mfr) for the model and the baseline, and the
//!    boundary scans (ebd, wbd, ebd2) on the first [`MetricsConfig::boundary_limit`] samples;
//! 2. the adversarial images read back batch by batch for coverage against the clean bounds.
//!
//! A partial [`MetricsConfig::suite`] skips the work only the keys it leaves out need (the
//! black-box attack, taps and coverage, corruptions, sequences, boundary scans, blur and JPEG).
//!
//! Memory is bounded by one batch plus per-neuron counters. `samples.jsonl` holds the white-box
//! attack's records; the counters of the first pass are saved after every batch (`state.json`),
//! so a killed run resumes from its last whole batch; the coverage pass is short and reruns.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use faultline_attacks::attack::argmax;
use faultline_attacks::registry::{self, Settings};
use faultline_attacks::{Attack, BatchRef};
use faultline_data::Batch;
use faultline_engine::{Model, Normalization};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::corruption::{
    count, summarize_counts, Baseline, ConditionCounts, CorruptionKind, CorruptionPlan,
    CorruptionSummary, ParamTable,
};
use crate::error::{io, setting, Error, Result};
use crate::eval::check_batch;
use crate::metrics::behaviour::{
    blur_images, jpeg_images, Behaviour, Ratio, RGB_RADIUS, RIC_QUALITY,
};
use crate::metrics::boundary::{
    directions, ebd_of, eni_sample, first_flips, sign_steps, wbd_of, BoundaryParams,
};
use crate::metrics::coverage::{Act, Bounds, Coverage, CoverageParams};
use crate::metrics::defended::Defended;
use crate::metrics::flip::{self, against_first, flips, FlipParams, FAMILIES};
use crate::metrics::imperceptibility::Imperceptibility;
use crate::metrics::neuron::{Sensitivity, Uncertainty};
use crate::metrics::{Suite, SUITE};
use crate::model::{load_model, ModelCard, NormalizationCard};
use crate::robust::{attack_batch, Options};
use crate::run::attack::{default_eps, default_eps_note};
use crate::run::npy::NpyRows;
use crate::run::{check_batch_size, threads, DataCard, Loaded, Output, Progress, Runtime};
use crate::rundir::{settings_hash, RunDir};
use crate::subset::{read_batches, Selection};

/// Settings of `metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsConfig {
    /// An `attack --save-adv` run whose adversarial images (`adv_0.npy`, its first ε) and samples
    /// replace the white-box attack (the selection then is that run's).
    pub from: Option<PathBuf>,
    /// White-box attack (registry name) [default: pgd].
    pub attack: String,
    /// Its settings (norm, steps, seed, …).
    pub settings: Settings,
    /// Radius [default: the norm's default for the image size, see [`default_eps`]].
    pub eps: Option<f32>,
    /// Black-box attack for aab [default: square].
    pub black_box: String,
    /// Its query budget per sample [default: 1000; Square's own default is 5000].
    pub black_box_queries: usize,
    /// The defended model (cav, crr, csr, ccv, cos).
    pub defended: Option<PathBuf>,
    /// Baseline for mce, relative_mce and mfr: an ONNX model (evaluated here) or a run directory
    /// (an `eval --corruptions` run for mce; a `metrics` run for both).
    pub baseline: Option<PathBuf>,
    /// Layers tapped for coverage and neuron metrics [default: every Conv and Gemm/MatMul output].
    pub layers: Option<Vec<String>>,
    /// Coverage parameters.
    pub coverage: CoverageParams,
    /// Boundary parameters.
    pub boundary: BoundaryParams,
    /// Samples (the first of the selection) the boundary metrics scan [default: 200].
    pub boundary_limit: usize,
    /// Perturbation sequences of mfr.
    pub flip: FlipParams,
    /// Corruption families of mce [default: the 15 standard ones].
    #[serde(serialize_with = "crate::corruption::names")]
    pub corruptions: Vec<CorruptionKind>,
    /// Severities of mce [default: 1–5].
    pub severities: Vec<u8>,
    /// Seed of the random corruptions.
    pub corruption_seed: u64,
    /// The metrics computed [default: all]; work no selected key needs is skipped.
    pub suite: Suite,
    /// The samples measured.
    pub selection: Selection,
    /// Images per batch.
    pub batch_size: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            from: None,
            attack: "pgd".into(),
            settings: Settings::default(),
            eps: None,
            black_box: "square".into(),
            black_box_queries: 1000,
            defended: None,
            baseline: None,
            layers: None,
            coverage: CoverageParams::default(),
            boundary: BoundaryParams::default(),
            boundary_limit: 200,
            flip: FlipParams::default(),
            corruptions: CorruptionKind::ALL
                .iter()
                .copied()
                .filter(|k| !k.is_extra())
                .collect(),
            severities: vec![1, 2, 3, 4, 5],
            corruption_seed: 0,
            suite: Suite::default(),
            selection: Selection::default(),
            batch_size: 128,
        }
    }
}

impl MetricsConfig {
    /// The white-box and black-box attacks, built and checked before anything runs.
    pub fn attacks(&self) -> Result<(Attack, Attack)> {
        let white = registry::build(&self.attack, &self.settings)?;
        if white.is_min_norm() {
            return Err(setting(
                "--attack",
                format!("{} is a minimum-norm attack; metrics needs a bounded one (pgd, apgd-ce, fgsm, …)", self.attack),
            ));
        }
        let black = registry::build(
            &self.black_box,
            &Settings {
                norm: Some(white.norm()),
                steps: Some(self.black_box_queries),
                seed: self.settings.seed,
                ..Settings::default()
            },
        )?;
        Ok((white, black))
    }
}

/// What the first pass has accumulated over the samples before `position`. It is written to
/// `DIR/state.json` after every batch, so a killed run resumes from its last whole batch (the
/// white-box records and `adv.npy` rows after it are recomputed), and removed when the run ends.
#[derive(Default, Serialize, Deserialize)]
struct State {
    settings_hash: String,
    position: usize,
    neurons: Vec<usize>,
    bounds: Bounds,
    behaviour: Behaviour,
    black_right: usize,
    imperc: Imperceptibility,
    rgb: Ratio,
    ric: Ratio,
    defended: Defended,
    sensitivity: Sensitivity,
    uncertainty: Uncertainty,
    eni_sum: f64,
    eni_n: u64,
    #[serde(with = "pairs")]
    counts: ConditionCounts,
    #[serde(with = "pairs")]
    base_counts: ConditionCounts,
    fcounts: BTreeMap<String, (u64, u64)>,
    base_fcounts: BTreeMap<String, (u64, u64)>,
    ebd: Vec<f64>,
    wbd: Vec<f64>,
    ebd2: Vec<Option<usize>>,
}

impl State {
    /// The state of an interrupted run in `dir` with settings `hash`, when its `run.json` is
    /// that run's too; any other state file is removed.
    fn resumable(dir: &std::path::Path, hash: &str, overwrite: bool) -> Option<State> {
        let path = dir.join("state.json");
        let run: Option<Value> = std::fs::read(dir.join("run.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let same_run = run
            .as_ref()
            .and_then(|r| r.get("settings_hash")?.as_str().map(|h| h == hash))
            .unwrap_or(false);
        let state = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<State>(&b).ok())
            .filter(|s| !overwrite && same_run && s.settings_hash == hash);
        if state.is_none() {
            let _ = std::fs::remove_file(&path);
        }
        state
    }
}

/// Writes `state` atomically (a temporary file renamed over the old one).
fn save_state(path: &std::path::Path, state: &State) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(state)
        .map_err(|e| Error::Invalid(format!("serializing the metrics state: {e}")))?;
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// A map with non-string keys as a list of pairs (JSON objects need string keys).
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// The body of `metrics`' `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsReport {
    /// Every key of the suite: a number, an object with `mean` (per-layer metrics), or null with
    /// a reason in `notes`.
    pub metrics: Map<String, Value>,
    /// Why a metric is null.
    pub notes: BTreeMap<String, String>,
    /// The white-box attack, its norm and radius; the black-box attack.
    pub attack: Value,
    /// The layers tapped and their neuron counts.
    pub layers: Vec<(String, usize)>,
    /// Corruption accuracy table of the model (mce's inputs).
    pub corruptions: CorruptionSummary,
    /// Flip probability per perturbation family, of the model and of the baseline.
    pub flip_probability: BTreeMap<String, f64>,
    /// The baseline's flip probabilities (when evaluated here or read from a metrics run).
    pub baseline_flip_probability: Option<BTreeMap<String, f64>>,
    /// The model.
    pub model: ModelCard,
    /// The defended model.
    pub defended: Option<ModelCard>,
    /// The baseline (model or run directory).
    pub baseline: Option<PathBuf>,
    /// The data set.
    pub data: DataCard,
    /// Engine settings and timing.
    pub runtime: Runtime,
}

/// What the baseline provides.
enum BaselineSource {
    Model(Box<Model>),
    Run(Option<Baseline>, Option<BTreeMap<String, f64>>),
}

fn open_baseline(
    path: &std::path::Path,
    image: [usize; 3],
    norm: Option<Normalization>,
) -> Result<BaselineSource> {
    if path.is_dir() {
        let run = path.join("run.json");
        let text = std::fs::read_to_string(&run).map_err(io(&run))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: not a run record ({e})", run.display())))?;
        let body = v.get("report").unwrap_or(&v);
        let corr = Baseline::from_run(body).ok();
        let fp = body
            .get("flip_probability")
            .and_then(|f| serde_json::from_value(f.clone()).ok());
        if corr.is_none() && fp.is_none() {
            return Err(setting(
                "--baseline",
                format!(
                    "{} has neither corruption results nor flip probabilities (use an `eval \
                     --corruptions` or a `metrics` run, or an ONNX model)",
                    path.display()
                ),
            ));
        }
        return Ok(BaselineSource::Run(corr, fp));
    }
    Ok(BaselineSource::Model(Box::new(
        load_model(path, image, norm)?.model,
    )))
}

/// An earlier attack run read as the white-box attack.
struct FromRun {
    indices: Vec<usize>,
    adv: NpyRows,
    eps: f32,
    name: String,
}

/// Opens the `attack --save-adv` run in `dir` for images of `d` values.
fn open_from(
    dir: &std::path::Path,
    d: usize,
    sha256: &str,
    progress: &dyn Progress,
) -> Result<FromRun> {
    let bad = |why: String| setting("--from", format!("{}: {why}", dir.display()));
    let run = dir.join("run.json");
    let text = std::fs::read_to_string(&run).map_err(io(&run))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| bad(format!("run.json is not a run record ({e})")))?;
    if v.get("command").and_then(Value::as_str) != Some("attack") {
        return Err(bad("not an `attack` run".into()));
    }
    if v.get("status").and_then(Value::as_str) != Some("complete") {
        return Err(bad("the attack run is not complete".into()));
    }
    let files = v.get("adversarial_files").and_then(Value::as_array);
    if files.is_none_or(|f| f.is_empty()) {
        return Err(bad(
            "no adversarial images (run the attack with --save-adv)".into(),
        ));
    }
    let eps = v
        .pointer("/settings/eps/0")
        .and_then(Value::as_f64)
        .ok_or_else(|| bad("no radius in its settings (a minimum-norm attack?)".into()))?
        as f32;
    if v.pointer("/settings/eps")
        .and_then(Value::as_array)
        .is_some_and(|e| e.len() > 1)
    {
        progress.note(&format!(
            "--from: using the first radius of {}",
            dir.display()
        ));
    }
    if v.pointer("/settings/model_sha256").and_then(Value::as_str) != Some(sha256) {
        progress
            .note("--from: the attack ran on another model; its images act as a transfer attack");
    }
    let name = v
        .get("attack")
        .and_then(Value::as_str)
        .unwrap_or("attack")
        .to_string();
    let samples = dir.join("samples.jsonl");
    let text = std::fs::read_to_string(&samples).map_err(io(&samples))?;
    let mut indices = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: crate::record::SampleRecord =
            serde_json::from_str(line).map_err(|e| bad(format!("samples.jsonl: {e}")))?;
        if indices.last() != Some(&r.index) && !indices.contains(&r.index) {
            indices.push(r.index);
        }
    }
    let adv = NpyRows::existing(&dir.join("adv_0.npy"), d * 4)?;
    Ok(FromRun {
        indices,
        adv,
        eps,
        name,
    })
}

/// The Conv and Gemm/MatMul outputs of `model`, in execution order.
pub fn auto_layers(model: &Model) -> Vec<String> {
    let g = model.graph();
    g.nodes()
        .iter()
        .filter(|n| matches!(n.op.name(), "Conv" | "Gemm" | "MatMul"))
        .map(|n| g.value_name(n.output).to_string())
        .collect()
}

/// A batch's tapped activations as [`Act`]s.
fn acts(tensors: &[faultline_engine::Tensor]) -> Result<Vec<Act<'_>>> {
    tensors
        .iter()
        .map(|t| Ok(Act::new(t.as_f32()?, t.shape())))
        .collect()
}

/// Little-endian `f32` rows as values.
fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Predictions of `images` (rows of a batch).
fn predict(model: &Model, images: &[f32]) -> Result<Vec<usize>> {
    let k = model.num_classes();
    Ok(model.logits(images)?.chunks(k).map(argmax).collect())
}

/// Per-condition counts of one model on a batch under every corruption of `plan` (and clean).
fn corruption_counts(
    model: &Model,
    batch: &Batch,
    plan: &CorruptionPlan,
    counts: &mut ConditionCounts,
) -> Result<()> {
    for (p, y) in predict(model, &batch.images)?.iter().zip(&batch.labels) {
        count(counts, None, p == y);
    }
    for (kind, sev) in plan.conditions() {
        let images = plan.corrupt(batch, kind, sev)?;
        for (p, y) in predict(model, &images)?.iter().zip(&batch.labels) {
            count(counts, Some((kind.name(), sev)), p == y);
        }
    }
    Ok(())
}

/// Flips and comparisons per family of one model on a batch.
fn flip_counts(
    model: &Model,
    batch: &Batch,
    p: &FlipParams,
    counts: &mut BTreeMap<String, (u64, u64)>,
) -> Result<()> {
    let shape = [batch.channels, batch.height, batch.width];
    let frames = p.frames.max(2);
    for fam in FAMILIES {
        let seqs: Vec<f32> = (0..batch.len())
            .flat_map(|i| flip::sequence(fam, batch.image(i), shape, p, batch.indices[i] as u64))
            .collect();
        let preds = predict(model, &seqs)?;
        let e = counts.entry(fam.to_string()).or_default();
        for s in preds.chunks(frames) {
            let (f, c) = flips(s, against_first(fam));
            e.0 += f;
            e.1 += c;
        }
    }
    Ok(())
}

fn probabilities(counts: &BTreeMap<String, (u64, u64)>) -> BTreeMap<String, f64> {
    counts
        .iter()
        .map(|(k, &(f, c))| (k.clone(), f as f64 / c.max(1) as f64))
        .collect()
}

/// Runs `metrics`.
pub fn run(
    cfg: &MetricsConfig,
    loaded: &Loaded,
    out: &Output,
    progress: &dyn Progress,
) -> Result<MetricsReport> {
    check_batch_size(cfg.batch_size)?;
    crate::run::refuse_shard(&cfg.selection, "metrics")?;
    if cfg.flip.frames < 2 {
        return Err(setting("--mfr-frames", "needs at least 2 frames"));
    }
    let (white, black) = cfg.attacks()?;
    let norm = white.norm();
    let info = loaded.data.info();
    let (c, h, w) = (info.channels, info.height, info.width);
    let image = [c, h, w];
    let d = c * h * w;
    let mut from = cfg
        .from
        .as_ref()
        .map(|p| open_from(p, d, &loaded.model.card.sha256, progress))
        .transpose()?;
    let eps = match cfg.eps {
        _ if from.is_some() => from.as_ref().map_or(0.0, |f| f.eps),
        Some(e) if e.is_finite() && e >= 0.0 => e,
        Some(e) => return Err(setting("--eps", format!("{e} is not a radius"))),
        None => {
            progress.note(&default_eps_note(norm, image));
            default_eps(norm, image)
        }
    };
    let suite = &cfg.suite;
    if cfg.defended.is_some() && !suite.module("defended") {
        return Err(setting(
            "--defended",
            format!(
                "--suite {} selects none of cav, crr, csr, ccv, cos",
                suite.name()
            ),
        ));
    }
    if cfg.baseline.is_some() && !suite.any(&["mce", "relative_mce", "mfr"]) {
        return Err(setting(
            "--baseline",
            format!(
                "--suite {} selects none of mce, relative_mce, mfr",
                suite.name()
            ),
        ));
    }
    let need_cov = suite.module("coverage");
    let need_corr = suite.module("corruption");
    let need_flip = suite.module("flip");
    let need_scan = suite.any(&["ebd", "wbd"]);
    let need_ebd2 = suite.has("ebd2");
    let model = &loaded.model.model;
    let k = model.num_classes();
    let norm_of = loaded
        .model
        .card
        .normalization
        .as_ref()
        .map(NormalizationCard::to_normalization);
    let defended = cfg
        .defended
        .as_ref()
        .map(|p| load_model(p, image, norm_of.clone()))
        .transpose()?;
    if let Some(dm) = &defended {
        if dm.model.num_classes() != k {
            return Err(setting(
                "--defended",
                format!(
                    "the defended model has {} outputs, the model {k}",
                    dm.model.num_classes()
                ),
            ));
        }
    }
    let baseline = cfg
        .baseline
        .as_ref()
        .map(|p| open_baseline(p, image, norm_of.clone()))
        .transpose()?;
    let layers = match &cfg.layers {
        _ if !need_cov && !suite.module("neuron") => Vec::new(),
        Some(l) => l.clone(),
        None => auto_layers(model),
    };
    let taps: Vec<&str> = layers.iter().map(String::as_str).collect();
    let plan = CorruptionPlan {
        kinds: cfg.corruptions.clone(),
        severities: cfg.severities.clone(),
        table: ParamTable::for_size(h, w),
        seed: cfg.corruption_seed,
    };
    let indices = match &from {
        Some(f) => f.indices.clone(),
        None => loaded.select(&cfg.selection)?,
    };
    let total = indices.len();
    let mut settings = loaded.settings(&cfg.selection, &indices)?;
    settings["metrics"] = serde_json::to_value(cfg).unwrap_or_default();
    settings["white_box"] = white.describe();
    settings["black_box"] = black.describe();
    settings["eps"] = json!(eps);
    // An interrupted run resumes from the state saved after its last whole batch; the records
    // and adversarial rows written after it are recomputed.
    let hash = settings_hash("metrics", &settings);
    let from_run = from.is_some();
    let state_path = out.file("state.json");
    let mut st = State::resumable(&out.dir, &hash, out.overwrite).unwrap_or(State {
        settings_hash: hash,
        ..State::default()
    });
    let resumed = st.position.min(total);
    let (mut rd, _) = RunDir::open_with(
        &out.dir,
        "metrics",
        settings,
        out.mode(),
        |r: &[Value]| if from_run { 0 } else { resumed.min(r.len()) },
    )?;
    if let Some(line) = rd.replaced() {
        progress.note(line);
    }
    let adv_path = out.file("adv.npy");
    let mut adv_file = NpyRows::open(&adv_path, "<f4", 4, &[total, c, h, w], resumed > 0)?;

    let t0 = Instant::now();
    let dirs = directions(d, cfg.boundary.directions, cfg.boundary.seed);
    let source = loaded.data_path.display().to_string();
    if resumed > 0 {
        progress.note(&format!(
            "resuming {}: {resumed} of {total} samples done",
            out.dir.display()
        ));
    }
    progress.start("metrics", total, resumed);
    let opts = || Options {
        target: None,
        sanity: false,
        unbounded_left: 0,
        progress: None,
        tick: None,
    };
    for batch in read_batches(loaded.data.as_ref(), &indices[resumed..], cfg.batch_size)? {
        let batch = batch?;
        check_batch(&batch, k, &source)?;
        let n = batch.len();
        let (z, clean_acts) = model.features(&batch.images, &taps)?;
        if st.neurons.is_empty() {
            st.neurons = clean_acts
                .iter()
                .map(|t| t.shape().get(1).copied().unwrap_or(1))
                .collect();
        }
        let clean_a = acts(&clean_acts)?;
        for (l, a) in clean_a.iter().enumerate() {
            st.bounds.observe(l, *a);
        }
        let b = BatchRef::new(&batch.images, &batch.indices);
        let adv = match &mut from {
            Some(f) => f32s(&f.adv.read_rows(st.position, n)?),
            None => {
                let (recs, mut advs) =
                    attack_batch(model, b, &batch.labels, &white, &[eps], &mut opts())?;
                rd.append(&recs)?;
                advs.pop().unwrap_or_default()
            }
        };
        let bytes: Vec<u8> = adv.iter().flat_map(|v| v.to_le_bytes()).collect();
        adv_file.write_rows(st.position, &bytes)?;
        let (za, adv_acts) = model.features(&adv, &taps)?;
        let adv_a = acts(&adv_acts)?;
        st.sensitivity.add(&clean_a, &adv_a);
        st.uncertainty.add(&adv_a);
        let adv_pred: Vec<usize> = za.chunks(k).map(argmax).collect();
        let blurred = match suite.has("rgb") {
            true => predict(model, &blur_images(&adv, h, w, RGB_RADIUS))?,
            false => Vec::new(),
        };
        let jpeg = match suite.has("ric") {
            true => predict(model, &jpeg_images(&adv, c, h, w, RIC_QUALITY))?,
            false => Vec::new(),
        };
        for i in 0..n {
            let y = batch.labels[i];
            let (zi, zai) = (&z[i * k..(i + 1) * k], &za[i * k..(i + 1) * k]);
            let (xi, xai) = (&batch.images[i * d..(i + 1) * d], &adv[i * d..(i + 1) * d]);
            st.behaviour.add(y, zi, zai);
            if adv_pred[i] != y {
                st.imperc.add(xi, xai, c, h, w);
            }
            if let Some(&p) = blurred.get(i) {
                st.rgb.add(y, adv_pred[i], p);
            }
            if let Some(&p) = jpeg.get(i) {
                st.ric.add(y, adv_pred[i], p);
            }
            let linf = xi
                .iter()
                .zip(xai)
                .map(|(a, b)| (a - b).abs() as f64)
                .fold(0.0, f64::max);
            if let Some(e) = eni_sample(zi, y, zai, linf) {
                st.eni_sum += e;
                st.eni_n += 1;
            }
        }
        if suite.has("aab") {
            let (brecs, _) = attack_batch(model, b, &batch.labels, &black, &[eps], &mut opts())?;
            st.black_right += brecs.iter().filter(|r| r.prediction == r.label).count();
        }
        if let Some(dm) = &defended {
            let zd = dm.model.logits(&batch.images)?;
            for i in 0..n {
                st.defended.add(
                    batch.labels[i],
                    &z[i * k..(i + 1) * k],
                    &zd[i * k..(i + 1) * k],
                );
            }
        }
        let base_model = match &baseline {
            Some(BaselineSource::Model(bm)) => Some(bm),
            _ => None,
        };
        if need_corr {
            corruption_counts(model, &batch, &plan, &mut st.counts)?;
            if let Some(bm) = base_model {
                corruption_counts(bm, &batch, &plan, &mut st.base_counts)?;
            }
        }
        if need_flip {
            flip_counts(model, &batch, &cfg.flip, &mut st.fcounts)?;
            if let Some(bm) = base_model {
                flip_counts(bm, &batch, &cfg.flip, &mut st.base_fcounts)?;
            }
        }
        let scan = match need_scan || need_ebd2 {
            true => cfg.boundary_limit.saturating_sub(st.position).min(n),
            false => 0,
        };
        if scan > 0 {
            let preds: Vec<usize> = z[..scan * k].chunks(k).map(argmax).collect();
            let imgs = &batch.images[..scan * d];
            let bp = &cfg.boundary;
            if need_scan {
                for f in first_flips(model, imgs, &preds, &dirs, bp.max_level, bp.level_step)? {
                    st.ebd.push(ebd_of(&f, bp.max_level));
                    st.wbd.push(wbd_of(&f));
                }
            }
            if need_ebd2 {
                st.ebd2.extend(sign_steps(
                    model,
                    imgs,
                    &preds,
                    bp.ebd2_step,
                    bp.ebd2_max_steps,
                )?);
            }
        }
        st.position += n;
        save_state(&state_path, &st)?;
        progress.advance(st.position);
        if let Some(f) = st.behaviour.figures() {
            progress.message(&format!("aaw {:.1} %", 100.0 * f.adv_accuracy));
        }
    }
    progress.finish();

    // Pass 2: coverage of the adversarial images against the clean bounds.
    let mut coverage = Coverage::new(cfg.coverage.clone(), st.bounds);
    if need_cov {
        progress.start("coverage", total, 0);
        let mut first = 0;
        while first < total {
            let m = cfg.batch_size.min(total - first);
            let adv = f32s(&adv_file.read_rows(first, m)?);
            let (_, tensors) = model.features(&adv, &taps)?;
            coverage.add(&acts(&tensors)?);
            first += m;
            progress.advance(first);
        }
        progress.finish();
    }

    // Assemble.
    let mut metrics = Map::new();
    let mut notes = BTreeMap::new();
    let mut put = |key: &str, v: Option<Value>, why: &str| {
        if v.is_none() {
            notes.insert(key.to_string(), why.to_string());
        }
        metrics.insert(key.to_string(), v.unwrap_or(Value::Null));
    };
    let num = |v: f64| Some(json!(v));
    let no_s = "no adversarial example succeeded (the successful set S is empty)";
    let bf = st.behaviour.figures();
    put("ca", bf.as_ref().and_then(|f| num(f.ca)), "no samples");
    put(
        "aaw",
        bf.as_ref().and_then(|f| num(f.adv_accuracy)),
        "no samples",
    );
    put("asr", bf.as_ref().and_then(|f| num(f.asr)), "no samples");
    put(
        "acac",
        bf.as_ref().and_then(|f| f.acac).map(|v| json!(v)),
        no_s,
    );
    put(
        "actc",
        bf.as_ref().and_then(|f| f.actc).map(|v| json!(v)),
        no_s,
    );
    put(
        "nte",
        bf.as_ref().and_then(|f| f.nte).map(|v| json!(v)),
        no_s,
    );
    put(
        "aab",
        (total > 0).then(|| json!(st.black_right as f64 / total as f64)),
        "no samples",
    );
    let im = st.imperc.figures();
    put("ald_l0", im.ald_l0.map(|v| json!(v)), no_s);
    put("ald_l2", im.ald_l2.map(|v| json!(v)), no_s);
    put("ald_linf", im.ald_linf.map(|v| json!(v)), no_s);
    put(
        "ass",
        im.ass.map(|v| json!(v)),
        if im.ald_l0.is_some() {
            "images smaller than SSIM's 7×7 window"
        } else {
            no_s
        },
    );
    put("psd", im.psd.map(|v| json!(v)), no_s);
    let cf = coverage.figures();
    put("nc", cf.as_ref().map(|f| json!(f.nc)), "no layer tapped");
    put(
        "kmnc",
        cf.as_ref().map(|f| json!(f.kmnc)),
        "no layer tapped",
    );
    put("nbc", cf.as_ref().map(|f| json!(f.nbc)), "no layer tapped");
    put(
        "snac",
        cf.as_ref().map(|f| json!(f.snac)),
        "no layer tapped",
    );
    put(
        "tknc",
        cf.as_ref().map(|f| json!(f.tknc)),
        "no layer tapped",
    );
    put(
        "tknp",
        cf.as_ref().map(|f| json!(f.tknp)),
        "no layer tapped",
    );
    put("rgb", st.rgb.value().map(|v| json!(v)), no_s);
    put("ric", st.ric.value().map(|v| json!(v)), no_s);
    let base_corr = match &baseline {
        Some(BaselineSource::Model(_)) => Some(Baseline::from_counts(&st.base_counts)),
        Some(BaselineSource::Run(b, _)) => b.clone(),
        None => None,
    };
    let corruptions = summarize_counts(&st.counts, &plan, base_corr.as_ref());
    let no_base = "no baseline (pass --baseline MODEL.onnx or a run directory)";
    let why_mce = if base_corr.is_some() {
        "the baseline loses no accuracy under these corruptions, or shares no standard family"
    } else {
        no_base
    };
    put("mce", corruptions.mce.map(|v| json!(v)), why_mce);
    put(
        "relative_mce",
        corruptions.relative_mce.map(|v| json!(v)),
        why_mce,
    );
    let fp = probabilities(&st.fcounts);
    let base_fp = match &baseline {
        Some(BaselineSource::Model(_)) => Some(probabilities(&st.base_fcounts)),
        Some(BaselineSource::Run(_, f)) => f.clone(),
        None => None,
    };
    let mfr = base_fp.as_ref().and_then(|b| {
        let (m, bb): (Vec<f64>, Vec<f64>) = fp
            .iter()
            .filter_map(|(k, v)| b.get(k).map(|bv| (*v, *bv)))
            .unzip();
        flip::mfr(&m, &bb)
    });
    put(
        "mfr",
        mfr.map(|v| json!(v)),
        if base_fp.is_some() {
            "the baseline never flips"
        } else {
            no_base
        },
    );
    let mean = |v: &[f64]| (!v.is_empty()).then(|| json!(v.iter().sum::<f64>() / v.len() as f64));
    put(
        "ebd",
        mean(&st.ebd),
        "no sample scanned (--boundary-limit 0)",
    );
    put(
        "wbd",
        mean(&st.wbd),
        "no sample scanned (--boundary-limit 0)",
    );
    let steps: Vec<f64> = st.ebd2.iter().flatten().map(|&s| s as f64).collect();
    put(
        "ebd2",
        mean(&steps),
        "no scanned sample changed its prediction within the step cap",
    );
    put(
        "eni",
        (st.eni_n > 0).then(|| json!(st.eni_sum / st.eni_n as f64)),
        "every perturbation is zero",
    );
    put(
        "neuron_sensitivity",
        st.sensitivity.figures(&layers).map(|f| json!(f)),
        "no layer tapped",
    );
    put(
        "neuron_uncertainty",
        st.uncertainty.figures(&layers).map(|f| json!(f)),
        "no layer tapped",
    );
    if let Some(f) = st.defended.figures() {
        put("cav", num(f.cav), "");
        put("crr", num(f.crr), "");
        put("csr", num(f.csr), "");
        let none = "no sample is classified correctly by both models";
        put("ccv", f.ccv.map(|v| json!(v)), none);
        put("cos", f.cos.map(|v| json!(v)), none);
    }
    for (key, v) in metrics.iter_mut() {
        if !suite.has(key) {
            *v = Value::Null;
            notes.insert(key.clone(), format!("not in --suite {}", suite.name()));
        }
    }
    debug_assert!(metrics.keys().all(|k| SUITE.iter().any(|m| m.key == k)));
    let report = MetricsReport {
        metrics,
        notes,
        attack: json!({
            "white_box": from.as_ref().map_or(white.name.clone(), |f| f.name.clone()),
            "from": cfg.from, "norm": norm, "eps": eps,
            "black_box": black.name, "black_box_queries": cfg.black_box_queries,
            "boundary_samples": st.ebd.len(),
            "ebd2_flipped": steps.len(),
        }),
        layers: layers.iter().cloned().zip(st.neurons).collect(),
        corruptions,
        flip_probability: fp,
        baseline_flip_probability: base_fp,
        model: loaded.model.card.clone(),
        defended: defended.map(|m| m.card),
        baseline: cfg.baseline.clone(),
        data: loaded.data_card(),
        runtime: Runtime {
            threads: threads(),
            batch_size: cfg.batch_size,
            seconds: t0.elapsed().as_secs_f64(),
            resumed_from: 0,
            forward_passes: None,
            backward_passes: None,
            img_per_s: None,
        },
    };
    rd.finish(&report)?;
    let _ = std::fs::remove_file(&state_path);
    Ok(report)
}

/// The metrics of a `metrics` run record (its `report.metrics` or `metrics` object).
pub fn read_metrics(run: &Value) -> Option<&Map<String, Value>> {
    run.get("report")
        .unwrap_or(run)
        .get("metrics")
        .and_then(Value::as_object)
}
