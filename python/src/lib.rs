//! `faultline._faultline`: the native half of the Python package. Each function here turns its
//! arguments into the library's typed configuration and calls the same `faultline::run::*`
//! function the CLI calls (or the engine method `faultline bench` times), with the GIL released;
//! the Python half (`faultline/__init__.py`) adds defaults, docstrings, progress bars and result
//! types. Reports cross as JSON text (the body of `run.json`), images as numpy arrays: inputs
//! are read in place when C-contiguous float32, outputs hand their buffers to numpy.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use faultline::attacks::registry::Settings;
use faultline::attacks::{AttackLoss, Norm};
use faultline::corruption::CorruptionPlan;
use faultline::data::{self, Batch, Dataset, DatasetInfo, LoadOptions, MemoryDataset, Split};
use faultline::engine::{Loss, Normalization};
use faultline::eps::parse_fraction;
use faultline::margin::pseudo::{PseudoInput, PseudoParams};
use faultline::model::{load_model, LoadedModel};
use faultline::run::attack::AttackConfig;
use faultline::run::calibrate::CalibrateConfig;
use faultline::run::classwise::ClasswiseConfig;
use faultline::run::eval::EvalConfig;
use faultline::run::finetune::Validation;
use faultline::run::margins::MarginsConfig;
use faultline::run::{DataCard, Loaded, Output, Progress};
use faultline::subset::{Selection, Subset};
use numpy::ndarray::{Array2, ArrayD, IxDyn};
use numpy::{
    IntoPyArray, PyArray2, PyArrayDyn, PyReadonlyArray1, PyReadonlyArray4, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyType;

/// A library error on its way to Python: the class (defined in `faultline/_errors.py`) and the
/// library's one-line message, the text the CLI prints after `error:`.
struct Failure {
    class: &'static str,
    message: String,
}

impl From<faultline::Error> for Failure {
    fn from(e: faultline::Error) -> Self {
        use faultline::Error as E;
        let not_found = |k: std::io::ErrorKind| k == std::io::ErrorKind::NotFound;
        let class = match &e {
            E::Io { error, .. } if not_found(error.kind()) => "FileNotFound",
            E::Data(data::Error::NotFound { .. }) => "FileNotFound",
            E::Onnx(faultline::onnx::Error::Io { error, .. }) if not_found(error.kind()) => {
                "FileNotFound"
            }
            // Unreadable files, run directories holding something else, engine failures.
            E::Io { .. } | E::RunDir { .. } | E::Data(data::Error::Io { .. }) => "Error",
            E::Onnx(faultline::onnx::Error::Io { .. }) => "Error",
            E::Engine(faultline::engine::Error::Input(_)) => "InvalidInput",
            E::Engine(_) => "Error",
            // Settings, data and models that do not fit: bad input.
            _ => "InvalidInput",
        };
        Failure {
            class,
            message: e.to_string(),
        }
    }
}

impl From<data::Error> for Failure {
    fn from(e: data::Error) -> Self {
        faultline::Error::from(e).into()
    }
}

impl From<faultline::engine::Error> for Failure {
    fn from(e: faultline::engine::Error) -> Self {
        faultline::Error::from(e).into()
    }
}

/// Bad input found here rather than by the library (argument types the library never sees).
fn invalid(message: impl Into<String>) -> Failure {
    Failure {
        class: "InvalidInput",
        message: message.into(),
    }
}

impl Failure {
    fn raise(self, py: Python<'_>) -> PyErr {
        let class = py
            .import("faultline._errors")
            .and_then(|m| m.getattr(self.class))
            .and_then(|c| Ok(c.cast_into::<PyType>()?));
        match class {
            Ok(c) => PyErr::from_type(c, self.message),
            Err(e) => e,
        }
    }
}

type Fallible<T> = std::result::Result<T, Failure>;

/// A float32 numpy array of any shape.
type Array<'py> = Bound<'py, PyArrayDyn<f32>>;

/// Progress reported to a Python callable `callback(event, text, a, b)`: `("start", what,
/// total, done)`, `("advance", "", done, 0)`, `("message", msg, 0, 0)`, `("note", line, 0, 0)`,
/// `("finish", "", 0, 0)`. The GIL is taken for each call only.
struct Callback(Option<Py<PyAny>>);

impl Callback {
    fn call(&self, event: &str, text: &str, a: usize, b: usize) {
        if let Some(cb) = &self.0 {
            Python::attach(|py| {
                if let Err(e) = cb.call1(py, (event, text, a, b)) {
                    e.print(py);
                }
            });
        }
    }
}

impl Progress for Callback {
    fn start(&self, what: &str, total: usize, done: usize) {
        self.call("start", what, total, done);
    }
    fn advance(&self, done: usize) {
        self.call("advance", "", done, 0);
    }
    fn message(&self, msg: &str) {
        self.call("message", msg, 0, 0);
    }
    fn note(&self, line: &str) {
        self.call("note", line, 0, 0);
    }
    fn finish(&self) {
        self.call("finish", "", 0, 0);
    }
}

/// A data set shared between the Python object and the runs that read it.
#[derive(Clone)]
struct Shared(Arc<dyn Dataset>);

impl Dataset for Shared {
    fn info(&self) -> &DatasetInfo {
        self.0.info()
    }
    fn batches(
        &self,
        batch_size: usize,
        range: std::ops::Range<usize>,
    ) -> data::Result<Box<dyn Iterator<Item = data::Result<Batch>> + Send + '_>> {
        self.0.batches(batch_size, range)
    }
    fn sample_source(&self, index: usize) -> Option<PathBuf> {
        self.0.sample_source(index)
    }
    fn labels(&self) -> data::Result<Vec<usize>> {
        self.0.labels()
    }
    fn read(&self, indices: &[usize]) -> data::Result<Batch> {
        self.0.read(indices)
    }
}

/// The shape `[c, h, w]` of an NCHW batch, refusing an empty one.
fn image_shape(shape: &[usize]) -> Fallible<(usize, [usize; 3])> {
    match shape {
        &[n, c, h, w] if n > 0 && c * h * w > 0 => Ok((n, [c, h, w])),
        _ => Err(invalid(format!(
            "images of shape {shape:?}: expected a non-empty N x C x H x W batch"
        ))),
    }
}

/// Labels as class indices, refusing negative ones.
fn labels(y: &PyReadonlyArray1<'_, i64>) -> Fallible<Vec<usize>> {
    let y = y.as_array();
    y.iter()
        .enumerate()
        .map(|(i, &v)| {
            usize::try_from(v).map_err(|_| invalid(format!("label {v} of sample {i} is negative")))
        })
        .collect()
}

/// A radius given as a number or as text such as `8/255` (parsed as the CLI parses it).
#[derive(FromPyObject)]
enum Radius {
    Number(f64),
    Text(String),
}

impl Radius {
    fn value(&self, flag: &'static str) -> Fallible<f32> {
        match self {
            Radius::Number(v) => Ok(*v as f32),
            Radius::Text(s) => Ok(parse_fraction(flag, s)?),
        }
    }
}

fn radii(eps: &[Radius], flag: &'static str) -> Fallible<Vec<f32>> {
    eps.iter().map(|e| e.value(flag)).collect()
}

fn parse<T: std::str::FromStr<Err = String>>(what: &str, s: Option<&str>) -> Fallible<Option<T>> {
    s.map(|s| s.parse::<T>().map_err(|e| invalid(format!("{what}: {e}"))))
        .transpose()
}

/// The samples a run covers, as the shared `--limit/--subset/--subset-seed/--indices` flags.
fn selection(
    limit: Option<usize>,
    subset: &str,
    seed: u64,
    indices: Option<PathBuf>,
) -> Fallible<Selection> {
    Ok(Selection {
        limit,
        subset: Subset::parse(subset)?,
        seed,
        indices,
        shard: None,
    })
}

fn output(out: PathBuf, overwrite: bool) -> Output {
    Output {
        dir: out,
        overwrite,
        scratch: false,
    }
}

fn json<T: serde::Serialize>(v: &T) -> Fallible<String> {
    serde_json::to_string(v).map_err(|e| invalid(format!("serializing the report: {e}")))
}

/// An ONNX classifier, loaded once and bound to an image shape (the declared one, or that of
/// the first batch it sees; another shape loads it again for that shape).
#[pyclass(module = "faultline._faultline", name = "Model", frozen)]
struct PyModel {
    path: PathBuf,
    norm: Option<Normalization>,
    pool: Option<Arc<rayon::ThreadPool>>,
    loaded: Mutex<Option<LoadedModel>>,
}

/// The image shape a model declares (`[N, C, H, W]` with C 1 or 3, or NHWC), if fixed.
fn declared_shape(path: &Path) -> Fallible<Option<[usize; 3]>> {
    let (probe, _) = faultline::onnx::load(path).map_err(faultline::Error::from)?;
    Ok(match probe.declared_input() {
        [_, Some(c), Some(h), Some(w)] if *c == 1 || *c == 3 => Some([*c, *h, *w]),
        [_, Some(h), Some(w), Some(c)] if *c == 1 || *c == 3 => Some([*c, *h, *w]),
        _ => None,
    })
}

impl PyModel {
    /// Runs `f` in the model's thread pool (rayon's global one without `threads`).
    fn install<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// The model bound to `shape`, loading it again when bound to another.
    fn ensure(&self, slot: &mut Option<LoadedModel>, shape: [usize; 3]) -> Fallible<()> {
        if slot.as_ref().and_then(|m| m.model.image_shape()) != Some(shape) {
            *slot = None;
            *slot = Some(load_model(&self.path, shape, self.norm.clone())?);
        }
        Ok(())
    }

    /// Runs `f` on the model bound to `shape`, without the GIL. The model is locked on the
    /// calling thread, before entering the pool: a pool thread waiting inside a parallel loop
    /// may pick up another caller's job, which would block on a lock taken in the pool.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        shape: [usize; 3],
        f: impl FnOnce(&LoadedModel) -> Fallible<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut slot = self
                .loaded
                .lock()
                .map_err(|_| invalid("model lock poisoned"))?;
            let slot = &mut *slot;
            self.install(|| {
                self.ensure(slot, shape)?;
                match slot.as_ref() {
                    Some(m) => f(m),
                    None => Err(invalid("model not loaded")),
                }
            })
        })
        .map_err(|e| e.raise(py))
    }

    /// Runs `f` on the model bound to `data` (the library's [`Loaded`], as `faultline::run::load`
    /// makes it), without the GIL; the model is kept loaded afterwards.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        data: &PyData,
        progress: &Callback,
        f: impl FnOnce(&Loaded) -> Fallible<T> + Send,
    ) -> PyResult<T> {
        self.run_owned(py, data, progress, |loaded| {
            let r = f(&loaded);
            (Some(loaded.model), r)
        })
    }

    /// [`PyModel::run`] for a library function that takes the [`Loaded`] itself; `f` hands the
    /// model back to be kept loaded, or None (it is loaded again when next needed).
    fn run_owned<T: Send>(
        &self,
        py: Python<'_>,
        data: &PyData,
        progress: &Callback,
        f: impl FnOnce(Loaded) -> (Option<LoadedModel>, Fallible<T>) + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut slot = self
                .loaded
                .lock()
                .map_err(|_| invalid("model lock poisoned"))?;
            let slot = &mut *slot;
            self.install(|| {
                let info = data.data.info();
                self.ensure(slot, [info.channels, info.height, info.width])?;
                let model = slot.take().ok_or_else(|| invalid("model not loaded"))?;
                let loaded = Loaded::bind(
                    model,
                    Box::new(Shared(data.data.clone())),
                    &self.path,
                    &data.path,
                    &data.options,
                )?;
                for n in &loaded.notes {
                    progress.note(&format!("note: {n}"));
                }
                let (model, r) = f(loaded);
                *slot = model;
                r
            })
        })
        .map_err(|e| e.raise(py))
    }
}

#[pymethods]
impl PyModel {
    #[new]
    #[pyo3(signature = (path, mean, std, threads))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        mean: Option<Vec<f32>>,
        std: Option<Vec<f32>>,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        let made = py.detach(|| -> Fallible<PyModel> {
            let norm = match (mean, std) {
                (Some(mean), Some(std)) => Some(Normalization { mean, std }),
                (None, None) => None,
                _ => return Err(invalid("mean and std go together: pass both or neither")),
            };
            let pool = match threads {
                Some(0) => return Err(invalid("threads: must be at least 1")),
                Some(n) => Some(Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(n)
                        .build()
                        .map_err(|e| invalid(format!("threads: {e}")))?,
                )),
                None => None,
            };
            let model = PyModel {
                norm,
                pool,
                loaded: Mutex::new(None),
                path,
            };
            // Load now when the input shape is declared, so a bad file fails here.
            if let Some(shape) = declared_shape(&model.path)? {
                let mut slot = model.loaded.lock().map_err(|_| invalid("lock poisoned"))?;
                let slot = &mut *slot;
                model.install(|| model.ensure(slot, shape))?;
            }
            Ok(model)
        });
        made.map_err(|e| e.raise(py))
    }

    /// The ONNX file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// `(C, H, W)` the model is bound to, or None before it has seen a batch.
    #[getter]
    fn image_shape(&self) -> Option<(usize, usize, usize)> {
        let slot = self.loaded.lock().ok()?;
        let [c, h, w] = slot.as_ref()?.model.image_shape()?;
        Some((c, h, w))
    }

    /// The model card of run records (JSON), once bound to a shape.
    fn card_json(&self) -> PyResult<Option<String>> {
        let slot = self.loaded.lock().ok();
        let card = slot
            .as_ref()
            .and_then(|s| s.as_ref())
            .map(|m| m.card.clone());
        Python::attach(|py| card.map(|c| json(&c)).transpose().map_err(|e| e.raise(py)))
    }

    /// Names of the activations `features` can tap, once bound to a shape.
    fn tap_names(&self) -> Vec<String> {
        let slot = self.loaded.lock().ok();
        slot.as_ref()
            .and_then(|s| s.as_ref())
            .map(|m| m.model.tap_names().into_iter().map(String::from).collect())
            .unwrap_or_default()
    }

    /// Logits `[N, K]` of an NCHW float32 batch in [0, 1].
    fn logits<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray4<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (n, shape) = image_shape(x.shape()).map_err(|e| e.raise(py))?;
        let xs = x.as_slice()?;
        let z = self.with(py, shape, |m| Ok(m.model.logits(xs)?))?;
        let k = z.len() / n;
        let z = Array2::from_shape_vec((n, k), z).map_err(|e| invalid(e.to_string()).raise(py))?;
        Ok(z.into_pyarray(py))
    }

    /// Input gradient `[N, C, H, W]` of the per-sample loss (`ce`, `dlr` or `margin`) at labels
    /// `y`, and the loss values `[N]`.
    fn input_grad<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray4<'py, f32>,
        y: PyReadonlyArray1<'py, i64>,
        loss: &str,
    ) -> PyResult<(Array<'py>, Array<'py>)> {
        let (n, shape) = image_shape(x.shape()).map_err(|e| e.raise(py))?;
        let y = labels(&y).map_err(|e| e.raise(py))?;
        let loss = match loss {
            "ce" => Loss::CrossEntropy { labels: &y },
            "dlr" => Loss::Dlr { labels: &y },
            "margin" => Loss::Margin { labels: &y },
            o => {
                let m = format!("loss: unknown loss '{o}': use ce, dlr or margin");
                return Err(invalid(m).raise(py));
            }
        };
        let xs = x.as_slice()?;
        let g = self.with(py, shape, |m| Ok(m.model.loss_grad(xs, &loss)?))?;
        let dims = [n, shape[0], shape[1], shape[2]];
        Ok((array(py, &dims, g.grad)?, array(py, &[n], g.loss)?))
    }

    /// Activations of `tap` (`penultimate` or a name from `tap_names`) for the batch, with the
    /// shape the graph gives them.
    fn features<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray4<'py, f32>,
        tap: &str,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let (_, shape) = image_shape(x.shape()).map_err(|e| e.raise(py))?;
        let xs = x.as_slice()?;
        let t = self.with(py, shape, |m| {
            let (_, mut feats) = m.model.features(xs, &[tap])?;
            let t = feats
                .pop()
                .ok_or_else(|| invalid("no activation returned"))?;
            let dims = t.shape().to_vec();
            Ok((dims, t.into_f32()?))
        })?;
        array(py, &t.0, t.1)
    }
}

/// A numpy array of `dims` owning `v` (no copy).
fn array<'py>(
    py: Python<'py>,
    dims: &[usize],
    v: Vec<f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let a = ArrayD::from_shape_vec(IxDyn(dims), v).map_err(|e| invalid(e.to_string()).raise(py))?;
    Ok(a.into_pyarray(py))
}

/// A data set: opened from a path (any format the CLI reads) or held in memory (arrays).
#[pyclass(module = "faultline._faultline", name = "Data", frozen)]
struct PyData {
    data: Arc<dyn Dataset>,
    path: PathBuf,
    options: LoadOptions,
}

#[pymethods]
impl PyData {
    /// Opens a data set as the CLI's `--data` and its options do.
    #[staticmethod]
    #[pyo3(signature = (path, format, classes, labels, split, resize, center_crop))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        format: Option<String>,
        classes: Option<PathBuf>,
        labels: Option<PathBuf>,
        split: &str,
        resize: Option<u32>,
        center_crop: Option<u32>,
    ) -> PyResult<PyData> {
        py.detach(|| -> Fallible<PyData> {
            let options = LoadOptions {
                format: format.map(|f| f.parse()).transpose()?,
                resize,
                center_crop,
                classes_file: classes,
                labels,
                split: match split {
                    "test" => Split::Test,
                    "train" => Split::Train,
                    o => return Err(invalid(format!("split: '{o}' is not test or train"))),
                },
            };
            let d = data::open(&path, &options)?;
            Ok(PyData {
                data: Arc::from(d),
                path,
                options,
            })
        })
        .map_err(|e| e.raise(py))
    }

    /// Float32 NCHW images in [0, 1] and integer labels, with optional class names.
    #[staticmethod]
    #[pyo3(signature = (x, y, classes))]
    fn from_arrays(
        py: Python<'_>,
        x: PyReadonlyArray4<'_, f32>,
        y: PyReadonlyArray1<'_, i64>,
        classes: Option<Vec<String>>,
    ) -> PyResult<PyData> {
        let (n, shape) = image_shape(x.shape()).map_err(|e| e.raise(py))?;
        let y = labels(&y).map_err(|e| e.raise(py))?;
        if y.len() != n {
            let m = format!("{n} images but {} labels", y.len());
            return Err(invalid(m).raise(py));
        }
        let images = x.as_slice()?.to_vec();
        let path = PathBuf::from("<numpy array>");
        py.detach(|| -> Fallible<PyData> {
            let d =
                MemoryDataset::new(images, y, shape, classes.unwrap_or_default(), path.clone())?;
            Ok(PyData {
                data: Arc::new(d),
                path,
                options: LoadOptions::default(),
            })
        })
        .map_err(|e| e.raise(py))
    }

    fn __len__(&self) -> usize {
        self.data.info().len
    }

    /// `(C, H, W)`.
    #[getter]
    fn image_shape(&self) -> (usize, usize, usize) {
        let i = self.data.info();
        (i.channels, i.height, i.width)
    }

    #[getter]
    fn class_names(&self) -> Vec<String> {
        self.data.info().class_names.clone()
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The data-set indices the shared selection flags pick (ascending).
    #[pyo3(signature = (limit, subset, seed, indices))]
    fn select(
        &self,
        py: Python<'_>,
        limit: Option<usize>,
        subset: &str,
        seed: u64,
        indices: Option<PathBuf>,
    ) -> PyResult<Vec<usize>> {
        py.detach(|| -> Fallible<Vec<usize>> {
            Ok(selection(limit, subset, seed, indices)?.resolve(self.data.as_ref())?)
        })
        .map_err(|e| e.raise(py))
    }

    /// The samples `indices` as (images `[N, C, H, W]`, labels `[N]`).
    fn read<'py>(
        &self,
        py: Python<'py>,
        indices: Vec<usize>,
    ) -> PyResult<(Bound<'py, PyArrayDyn<f32>>, Vec<usize>)> {
        let b = py
            .detach(|| -> Fallible<Batch> { Ok(self.data.read(&indices)?) })
            .map_err(|e| e.raise(py))?;
        let dims = [b.len(), b.channels, b.height, b.width];
        Ok((array(py, &dims, b.images)?, b.labels))
    }
}

/// `faultline eval` on a model and data set: the report (JSON).
#[pyfunction]
#[pyo3(signature = (model, data, limit, subset, subset_seed, indices, batch_size, corruptions,
    severities, seed, table, baseline, out, overwrite, progress))]
#[allow(clippy::too_many_arguments)]
fn eval_run(
    py: Python<'_>,
    model: &PyModel,
    data: &PyData,
    limit: Option<usize>,
    subset: &str,
    subset_seed: u64,
    indices: Option<PathBuf>,
    batch_size: usize,
    corruptions: Option<String>,
    severities: &str,
    seed: u64,
    table: Option<String>,
    baseline: Option<PathBuf>,
    out: PathBuf,
    overwrite: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let progress = Callback(progress);
    model.run(py, data, &progress, |loaded| {
        let info = loaded.data.info();
        let image = (info.height, info.width);
        let cfg = EvalConfig {
            selection: selection(limit, subset, subset_seed, indices)?,
            batch_size,
            corruptions: corruptions
                .as_deref()
                .map(|k| CorruptionPlan::parse(k, severities, table.as_deref(), seed, image))
                .transpose()?,
            baseline,
            // Brittleness flags (`faultline eval --flag-brittle`) are not exposed in Python yet.
            flag_brittle: None,
            robust_attack: None,
        };
        let r = faultline::run::eval::run(&cfg, loaded, &output(out, overwrite), &progress)?;
        json(&r)
    })
}

/// The settings of an attack as the CLI's attack flags give them.
#[allow(clippy::too_many_arguments)]
fn attack_settings(
    norm: Option<&str>,
    steps: Option<usize>,
    step_size: Option<Radius>,
    restarts: Option<usize>,
    random_start: bool,
    loss: Option<&str>,
    seed: u64,
) -> Fallible<Settings> {
    Ok(Settings {
        norm: parse::<Norm>("norm", norm)?,
        steps,
        step_size: step_size.map(|s| s.value("--step-size")).transpose()?,
        restarts,
        random_start,
        loss: parse::<AttackLoss>("loss", loss)?,
        seed,
        params: Vec::new(),
    })
}

/// `faultline attack --save-adv`: the report and the per-sample records (JSON); the images are
/// in `out/adv_<k>.npy`.
#[pyfunction]
#[pyo3(signature = (model, data, limit, subset, subset_seed, indices, attack, preset, norm, eps,
    steps, step_size, restarts, random_start, loss, seed, target, sanity, batch_size, out,
    overwrite, progress))]
#[allow(clippy::too_many_arguments)]
fn attack_run(
    py: Python<'_>,
    model: &PyModel,
    data: &PyData,
    limit: Option<usize>,
    subset: &str,
    subset_seed: u64,
    indices: Option<PathBuf>,
    attack: String,
    preset: Option<String>,
    norm: Option<String>,
    eps: Vec<Radius>,
    steps: Option<usize>,
    step_size: Option<Radius>,
    restarts: Option<usize>,
    random_start: bool,
    loss: Option<String>,
    seed: u64,
    target: Option<usize>,
    sanity: bool,
    batch_size: usize,
    out: PathBuf,
    overwrite: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<(String, String)> {
    let progress = Callback(progress);
    let cfg = (|| -> Fallible<AttackConfig> {
        let settings = attack_settings(
            norm.as_deref(),
            steps,
            step_size,
            restarts,
            random_start,
            loss.as_deref(),
            seed,
        )?;
        let cfg = AttackConfig {
            attack,
            preset,
            settings,
            eps: radii(&eps, "--eps")?,
            target,
            sanity,
            selection: selection(limit, subset, subset_seed, indices)?,
            batch_size,
            save_adv: true,
            stages: None,
        };
        // Refuse a misconfigured attack before loading anything, as the CLI does.
        cfg.build()?;
        Ok(cfg)
    })()
    .map_err(|e| e.raise(py))?;
    model.run(py, data, &progress, |loaded| {
        let out = output(out, overwrite);
        let (r, records) = faultline::run::attack::run_records(&cfg, loaded, &out, &progress)?;
        Ok((json(&r)?, json(&records)?))
    })
}

/// `faultline classwise`: the report (JSON).
#[pyfunction]
#[pyo3(signature = (model, data, limit, subset, subset_seed, indices, attack, eps, steps,
    targeted, corruptions, severities, seed, batch_size, out, overwrite, progress))]
#[allow(clippy::too_many_arguments)]
fn classwise_run(
    py: Python<'_>,
    model: &PyModel,
    data: &PyData,
    limit: Option<usize>,
    subset: &str,
    subset_seed: u64,
    indices: Option<PathBuf>,
    attack: Option<String>,
    eps: Vec<Radius>,
    steps: Option<usize>,
    targeted: bool,
    corruptions: Option<String>,
    severities: &str,
    seed: u64,
    batch_size: usize,
    out: PathBuf,
    overwrite: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let progress = Callback(progress);
    model.run(py, data, &progress, |loaded| {
        let info = loaded.data.info();
        let attack = attack
            .map(|a| -> Fallible<AttackConfig> {
                let cfg = AttackConfig {
                    attack: a,
                    settings: Settings {
                        steps,
                        seed,
                        ..Settings::default()
                    },
                    eps: radii(&eps, "--eps")?,
                    ..AttackConfig::default()
                };
                cfg.build()?;
                Ok(cfg)
            })
            .transpose()?;
        let image = (info.height, info.width);
        let cfg = ClasswiseConfig {
            attack,
            targeted,
            targeted_attack: None,
            corruptions: corruptions
                .as_deref()
                .map(|k| CorruptionPlan::parse(k, severities, None, seed, image))
                .transpose()?,
            selection: selection(limit, subset, subset_seed, indices)?,
            batch_size,
        };
        let shape = [info.channels, info.height, info.width];
        cfg.check(loaded.model.card.num_classes, shape)?;
        let r = faultline::run::classwise::run(&cfg, loaded, &output(out, overwrite), &progress)?;
        json(&r)
    })
}

/// `faultline margins`: the report (JSON).
#[pyfunction]
#[pyo3(signature = (model, data, limit, subset, subset_seed, indices, attack, norm, eps, steps,
    restarts, attack_subset, estimate_size, pseudo_margin, fit_fraction, epochs, lr,
    pseudo_loss, recall, bootstrap, seed, batch_size, out, overwrite, progress))]
#[allow(clippy::too_many_arguments)]
fn margins_run(
    py: Python<'_>,
    model: &PyModel,
    data: &PyData,
    limit: Option<usize>,
    subset: &str,
    subset_seed: u64,
    indices: Option<PathBuf>,
    attack: String,
    norm: Option<String>,
    eps: Option<Radius>,
    steps: Option<usize>,
    restarts: Option<usize>,
    attack_subset: Option<usize>,
    estimate_size: usize,
    pseudo_margin: Option<String>,
    fit_fraction: f64,
    epochs: usize,
    lr: f32,
    pseudo_loss: &str,
    recall: f64,
    bootstrap: usize,
    seed: u64,
    batch_size: usize,
    out: PathBuf,
    overwrite: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let progress = Callback(progress);
    let cfg = (|| -> Fallible<MarginsConfig> {
        if !(fit_fraction > 0.0 && fit_fraction < 1.0) {
            return Err(invalid("--fit-fraction: must lie in (0, 1)"));
        }
        let pseudo = match pseudo_margin.as_deref() {
            None => None,
            Some(from @ ("logits" | "features")) => Some(PseudoParams {
                input: if from == "features" {
                    PseudoInput::Features
                } else {
                    PseudoInput::Logits
                },
                fit_fraction,
                epochs,
                lr,
                ranking: pseudo_loss == "ranking",
                seed,
                ..PseudoParams::default()
            }),
            Some(o) => {
                return Err(invalid(format!(
                    "pseudo_margin: '{o}' is not logits or features"
                )))
            }
        };
        Ok(MarginsConfig {
            settings: Settings {
                // L∞ unless asked otherwise, as the paper (and the CLI); C&W works in L2 only.
                norm: parse::<Norm>("norm", norm.as_deref())?
                    .or((attack != "cw").then_some(Norm::Linf)),
                steps,
                restarts,
                seed,
                ..Settings::default()
            },
            attack,
            eps: eps.map(|e| e.value("--eps")).transpose()?,
            attack_subset,
            estimate_size,
            pseudo,
            recall,
            bootstrap,
            selection: selection(limit, subset, subset_seed, indices)?,
            batch_size,
            // Fitting on other data or applying a saved pseudo-margin (`--fit-data`,
            // `--pseudo-margin-from`) is not exposed in Python yet.
            ..MarginsConfig::default()
        })
    })()
    .map_err(|e| e.raise(py))?;
    model.run(py, data, &progress, |loaded| {
        let r = faultline::run::margins::run(&cfg, loaded, &output(out, overwrite), &progress)?;
        json(&r)
    })
}

/// One corruption family at one severity applied to an NCHW batch (sample `i`'s random stream
/// is seeded by `seed` and `i`, as sample `i` of a data set in `faultline eval`).
#[pyfunction]
#[pyo3(signature = (x, name, severity, seed, table))]
fn corrupt<'py>(
    py: Python<'py>,
    x: PyReadonlyArray4<'py, f32>,
    name: &str,
    severity: u8,
    seed: u64,
    table: Option<String>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (n, shape) = image_shape(x.shape()).map_err(|e| e.raise(py))?;
    let images = x.as_slice()?.to_vec();
    let done = py.detach(|| -> Fallible<Vec<f32>> {
        let image = (shape[1], shape[2]);
        let plan =
            CorruptionPlan::parse(name, &severity.to_string(), table.as_deref(), seed, image)?;
        let [kind] = plan.kinds[..] else {
            return Err(invalid(format!(
                "name: '{name}' names {} corruptions; pass one",
                plan.kinds.len()
            )));
        };
        let source = PathBuf::from("<numpy array>");
        let data = MemoryDataset::new(images, vec![0; n], shape, vec![], source)?;
        let batch = data.read(&(0..n).collect::<Vec<_>>())?;
        Ok(plan.corrupt(&batch, kind, severity)?)
    });
    let v = done.map_err(|e| e.raise(py))?;
    array(py, &[n, shape[0], shape[1], shape[2]], v)
}

/// The registered attack names.
/// `faultline calibrate`: a calibrator trained in front of the model on `data`, tested on
/// `test`; the report (JSON). The calibrator and the combined model are written into `out`.
#[pyfunction]
#[pyo3(signature = (model, data, test, limit, subset, subset_seed, indices, test_limit, seen,
    unseen, severities, corrupt_prob, eps, width, blocks, epochs, batch_size, lr, quantized, seed,
    out, overwrite, progress))]
#[allow(clippy::too_many_arguments)]
fn calibrate_run(
    py: Python<'_>,
    model: &PyModel,
    data: &PyData,
    test: &PyData,
    limit: Option<usize>,
    subset: &str,
    subset_seed: u64,
    indices: Option<PathBuf>,
    test_limit: Option<usize>,
    seen: Vec<String>,
    unseen: Vec<String>,
    severities: &str,
    corrupt_prob: f32,
    eps: Radius,
    width: usize,
    blocks: usize,
    epochs: usize,
    batch_size: usize,
    lr: f32,
    quantized: Option<PathBuf>,
    seed: u64,
    out: PathBuf,
    overwrite: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let progress = Callback(progress);
    let test_card = DataCard::of(test.data.as_ref(), &test.path);
    model.run_owned(py, data, &progress, |loaded| {
        let report = (|| {
            let cfg = CalibrateConfig {
                seen,
                unseen,
                severities: faultline::corruption::parse_severities(severities)?,
                corrupt_prob,
                eps: eps.value("--eps")?,
                width,
                blocks,
                epochs,
                batch_size,
                lr,
                selection: selection(limit, subset, subset_seed, indices)?,
                test_limit,
                quantized,
                seed,
            };
            let test = Validation {
                data: test.data.as_ref(),
                card: test_card,
            };
            let r = faultline::run::calibrate::run(
                &cfg,
                loaded,
                &test,
                &output(out, overwrite),
                &progress,
            )?;
            json(&r)
        })();
        (None, report)
    })
}

#[pyfunction]
fn attack_names() -> Vec<String> {
    faultline::attacks::registry::names_list()
        .into_iter()
        .map(String::from)
        .collect()
}

/// The corruption family names.
#[pyfunction]
fn corruption_names() -> Vec<String> {
    faultline::corruption::ALL
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[pymodule]
fn _faultline(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyModel>()?;
    m.add_class::<PyData>()?;
    m.add_function(wrap_pyfunction!(eval_run, m)?)?;
    m.add_function(wrap_pyfunction!(attack_run, m)?)?;
    m.add_function(wrap_pyfunction!(classwise_run, m)?)?;
    m.add_function(wrap_pyfunction!(margins_run, m)?)?;
    m.add_function(wrap_pyfunction!(corrupt, m)?)?;
    m.add_function(wrap_pyfunction!(calibrate_run, m)?)?;
    m.add_function(wrap_pyfunction!(attack_names, m)?)?;
    m.add_function(wrap_pyfunction!(corruption_names, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
