//! [`Model`]: the engine's public face. A graph plus what it takes to feed it images: the
//! layout the model expects, an optional normalization it expects outside its graph, the
//! number of classes and where its penultimate features are.

use std::ops::Range;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::exec::Values;
use crate::graph::{Graph, ValueId};
use crate::loss::Loss;
use crate::ops::{Binary, BinaryKind, Gemm, Op, Reshape, Transpose};
use crate::passes;
use crate::tensor::Tensor;

/// Per-channel `(x − mean) / std` applied to [0, 1] images before the graph, for models that
/// expect normalized input but do not normalize inside their graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// Per-channel means.
    pub mean: Vec<f32>,
    /// Per-channel standard deviations.
    pub std: Vec<f32>,
}

/// A loaded classifier, run on batches of NCHW float images in [0, 1].
///
/// Two steps make it ready: [`Model::new`] wraps a graph as built, then [`Model::prepare`]
/// (exactly once, and required: every method that runs the model returns an error before it)
/// runs the load-time passes on the graph (constant and BatchNormalization folding, pruning,
/// Conv fusion, weight packing), binds it to an image shape and checks it with one trial pass.
/// Preparing is explicit rather than lazy because it needs the image shape, may fail, and
/// changes the graph, which the running methods only borrow.
///
/// The batch dimension is always free: a model exported with a fixed batch size still runs on
/// any batch (reshape targets that begin with the exported batch size follow the actual one).
#[derive(Debug)]
pub struct Model {
    graph: Graph,
    /// Declared input dimensions including the batch (None where symbolic).
    declared: Vec<Option<usize>>,
    image: Option<[usize; 3]>,
    classes: usize,
    penultimate: Option<ValueId>,
    notes: Vec<String>,
    /// Whether [`Model::prepare`] has begun changing the graph (the load-time passes, then the
    /// input prefix). A prepare that fails after that point leaves a graph that is neither the
    /// one built nor a usable one, so a second prepare is refused instead of running the passes
    /// or prepending the prefix again.
    changed: bool,
    /// How [`Forward::input_grads`] batches several seeds; found on first use.
    tiling: OnceLock<Tiling>,
}

/// How [`Forward::input_grads`] runs the backward passes of several seeds of one forward pass.
#[derive(Debug)]
enum Tiling {
    /// One backward pass over the batch replicated: for each kept value (by `ValueId`), whether
    /// it carries the batch on its first axis (`true`: replicated, the copies one after the
    /// other) or does not depend on the batch (`false`: shared as it is). Found by
    /// [`Model::find_tiling`], which checks that the replicated values are exactly those a
    /// forward pass over the replicated batch computes.
    Replicate(Vec<bool>),
    /// Some value fits neither rule: one backward pass per seed.
    Separate,
}

/// The most activation bytes (of the chunk, times the seeds) one multi-seed backward pass of
/// [`Forward::input_grads`] covers, which is about what its gradients hold: a chunk's seeds are
/// split into groups below this. Measured on LeNet-5 (MNIST) FAB, where 72-row passes (a chunk
/// of 8 samples × 9 seeds, about 15 MiB) ran faster than smaller groups.
const REPLICA_BYTES: usize = 32 << 20;

/// Result of [`Model::loss_grad`].
#[derive(Debug, Clone)]
pub struct LossGrad {
    /// Logits, N·K row-major.
    pub logits: Vec<f32>,
    /// The loss of each sample.
    pub loss: Vec<f32>,
    /// ∂loss_i/∂x_i for each sample, laid out like the input (N·C·H·W).
    pub grad: Vec<f32>,
}

/// A forward pass that kept its activations: read logits, taps and penultimate features, and
/// take as many input gradients of logit combinations as needed without recomputing it.
#[derive(Debug)]
pub struct Forward<'m> {
    model: &'m Model,
    /// The activations of each chunk of the batch (see [`CHUNK`]), with its samples.
    parts: Vec<(Range<usize>, Vec<Option<Tensor>>)>,
    logits: Vec<f32>,
}

/// Samples per chunk. A batch larger than this runs as independent chunks, in parallel, each
/// through the whole graph: the activations of 8 CIFAR samples (about 0.5 MiB per layer for
/// ResNet-20) stay in a core's L2 from one layer to the next, where a whole batch of 128 went
/// out to L3 between layers; measured on ResNet-20 at batch 128 (see the engine-speed note in
/// docs/benchmarks.md). Samples never interact (faultline already relies on that: attacks
/// shrink batches to the samples not yet broken), so the results do not depend on the split.
pub(crate) const CHUNK: usize = 8;

/// Splits `n` samples into balanced consecutive chunks of at most [`CHUNK`].
pub(crate) fn chunks(n: usize) -> Vec<Range<usize>> {
    let k = n.div_ceil(CHUNK).max(1);
    (0..k).map(|i| i * n / k..(i + 1) * n / k).collect()
}

/// `f` of each item, in parallel. A single item (a batch of at most [`CHUNK`] samples) runs on
/// this thread, which leads a team of the pool's threads that share each layer's work
/// (`crate::team`): one chunk cannot occupy them otherwise.
fn par_map<I: Send, T: Send>(
    items: Vec<I>,
    f: impl Fn(I) -> Result<T> + Sync + Send,
) -> Result<Vec<T>> {
    if items.len() == 1 {
        let item = items.into_iter().next().expect("one item");
        return Ok(vec![crate::team::lead(|| f(item))?]);
    }
    items.into_par_iter().map(f).collect()
}

/// Concatenates per-chunk tensors along the batch axis.
fn concat_batch(parts: Vec<Tensor>) -> Result<Tensor> {
    if parts.len() == 1 {
        return Ok(parts.into_iter().next().expect("one part"));
    }
    let mut shape = parts[0].shape().to_vec();
    let mut n = 0;
    for p in &parts {
        if p.shape().get(1..) != shape.get(1..) || p.is_f32() != parts[0].is_f32() {
            return Err(Error::Graph(format!(
                "chunks of one batch gave activations {:?} and {:?}",
                shape,
                p.shape()
            )));
        }
        n += p.shape().first().copied().unwrap_or(1);
    }
    if let Some(first) = shape.first_mut() {
        *first = n;
    }
    if parts[0].is_f32() {
        let mut data = Vec::with_capacity(parts.iter().map(Tensor::len).sum());
        for p in &parts {
            data.extend_from_slice(p.as_f32()?);
        }
        Ok(Tensor::f32(shape, data))
    } else {
        let mut data = Vec::with_capacity(parts.iter().map(Tensor::len).sum());
        for p in &parts {
            data.extend_from_slice(p.as_i64()?);
        }
        Tensor::from_i64(shape, data)
    }
}

impl Model {
    /// Wraps a graph whose input was declared with `declared` dimensions (batch first). The
    /// graph is kept as built; [`Model::prepare`] optimises it.
    pub fn new(graph: Graph, declared: Vec<Option<usize>>) -> Self {
        crate::alloc::keep_freed_memory();
        let penultimate = find_penultimate(&graph);
        Model {
            graph,
            declared,
            image: None,
            classes: 0,
            penultimate,
            notes: Vec::new(),
            changed: false,
            tiling: OnceLock::new(),
        }
    }

    /// The graph: as built before [`Model::prepare`]; after it, optimised by the load-time
    /// passes and preceded by any input adaptation.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Declared input dimensions, batch first (None where symbolic).
    pub fn declared_input(&self) -> &[Option<usize>] {
        &self.declared
    }

    /// Binds the model to images of shape `[c, h, w]`: runs the load-time passes on the graph
    /// (the `passes` module; this is their only caller, so they run once per model), lays the
    /// images out the way the model's input is declared (NCHW as is; NHWC by a transpose; any
    /// shape with the same number of elements, such as a flat 784-vector, by a reshape),
    /// prepends `norm` if given, then runs one trial pass to check the graph and learn the
    /// number of classes. Returns the layout rule applied, if any, so the caller can tell the
    /// user once.
    ///
    /// Call it exactly once, before running the model. Errors in the arguments (a
    /// normalization or image shape that does not fit) leave the model untouched, so it can be
    /// prepared again with other arguments; an error after that (a constant subgraph that
    /// cannot be evaluated, a trial pass that fails) leaves it unusable, and a second call says
    /// so.
    pub fn prepare(
        &mut self,
        image: [usize; 3],
        norm: Option<Normalization>,
    ) -> Result<Option<String>> {
        if self.image.is_some() {
            return Err(Error::Input("model already prepared".into()));
        }
        if self.changed {
            return Err(Error::Input(
                "an earlier Model::prepare failed after changing the graph; build or load the model again"
                    .into(),
            ));
        }
        let (prefix, note) = self.input_prefix(image, norm)?;
        // The arguments fit; from here on the graph changes. The passes run on the graph as
        // built, before the prefix, and the penultimate features are found again on their
        // result (folding can turn the final layer's weights into constants).
        self.changed = true;
        passes::optimise(&mut self.graph)?;
        self.penultimate = find_penultimate(&self.graph);
        self.graph.prepend(prefix);
        self.image = Some(image);
        let [c, h, w] = image;
        let probe = self
            .graph
            .run(Tensor::zeros(vec![1, c, h, w]), false, &[])?;
        let out = probe[self.graph.output]
            .as_ref()
            .ok_or_else(|| Error::Graph("no output".into()))?;
        if !out.is_f32() || out.shape().is_empty() || out.shape()[0] != 1 {
            return Err(Error::Input(format!(
                "model output has shape {:?} for one image; expected [1, classes]",
                out.shape()
            )));
        }
        self.classes = out.len();
        if let Some(n) = &note {
            self.notes.push(n.clone());
        }
        Ok(note)
    }

    /// The operators that [`Model::prepare`] puts in front of the graph for `image`-shaped
    /// NCHW input: `norm` if given, then the layout rule (NHWC transpose, reshape), with a note
    /// saying which layout rule applies. Changes nothing.
    #[allow(clippy::type_complexity)]
    pub(crate) fn input_prefix(
        &self,
        image: [usize; 3],
        norm: Option<Normalization>,
    ) -> Result<(Vec<(String, Box<dyn Op>, Vec<Tensor>)>, Option<String>)> {
        let [c, h, w] = image;
        let mut prefix: Vec<(String, Box<dyn Op>, Vec<Tensor>)> = Vec::new();
        if let Some(n) = norm {
            if n.mean.len() != c || n.std.len() != c {
                return Err(Error::Input(format!(
                    "normalization has {} means and {} stds for {c}-channel images",
                    n.mean.len(),
                    n.std.len()
                )));
            }
            if n.std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
                return Err(Error::Input(
                    "normalization std must be finite and non-zero".into(),
                ));
            }
            prefix.push((
                "normalize_mean".into(),
                Box::new(Binary::new(BinaryKind::Sub)),
                vec![Tensor::f32(vec![1, c, 1, 1], n.mean)],
            ));
            prefix.push((
                "normalize_std".into(),
                Box::new(Binary::new(BinaryKind::Div)),
                vec![Tensor::f32(vec![1, c, 1, 1], n.std)],
            ));
        }
        let per_sample: Vec<Option<usize>> = self.declared.iter().skip(1).copied().collect();
        let fits = |want: &[usize]| {
            per_sample.len() == want.len()
                && per_sample
                    .iter()
                    .zip(want)
                    .all(|(d, &x)| d.is_none_or(|d| d == x))
        };
        let mut note = None;
        if self.declared.is_empty() || fits(&[c, h, w]) {
            // Images already match the declared layout.
        } else if fits(&[h, w, c]) {
            prefix.push((
                "nchw_to_nhwc".into(),
                Box::new(Transpose {
                    perm: Some(vec![0, 2, 3, 1]),
                }),
                vec![],
            ));
            note = Some(format!(
                "model input is NHWC {}: images are transposed from NCHW",
                dims(&self.declared)
            ));
        } else if per_sample.iter().all(|d| d.is_some())
            && per_sample.iter().map(|d| d.unwrap_or(1)).product::<usize>() == c * h * w
        {
            let mut target = vec![-1i64];
            target.extend(per_sample.iter().map(|d| d.unwrap_or(1) as i64));
            prefix.push((
                "reshape_images".into(),
                Box::new(Reshape::default()),
                vec![Tensor::i64(vec![target.len()], target.clone())],
            ));
            note = Some(format!(
                "model input is {}: each {c}x{h}x{w} image is laid out as {:?} (row-major, channels first)",
                dims(&self.declared),
                &target[1..]
            ));
        } else {
            return Err(Error::Input(format!(
                "model input is declared as {} (batch first) but images are {c}x{h}x{w}; no layout fits",
                dims(&self.declared)
            )));
        }
        Ok((prefix, note))
    }

    /// The graph as built and the declared input, for [`crate::train::TrainModel`]; refused
    /// once [`Model::prepare`] has begun changing the graph.
    pub(crate) fn into_graph(self) -> Result<(Graph, Vec<Option<usize>>)> {
        if self.changed || self.image.is_some() {
            return Err(Error::Input(
                "a prepared model cannot be trained: load it again and train that".into(),
            ));
        }
        Ok((self.graph, self.declared))
    }

    /// The image shape `[c, h, w]` the model was prepared for.
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        self.image
    }

    /// Number of classes (logits per sample); 0 before [`Model::prepare`].
    pub fn num_classes(&self) -> usize {
        self.classes
    }

    /// Layout rules applied while preparing (for the run record).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The final affine layer (`z = W·h + b` over the penultimate features `h`), when the model
    /// ends in a Gemm/MatMul with constant weights. Ask after [`Model::prepare`]: before it,
    /// weights still computed from constants (a Transpose of an initializer) are not constants.
    pub fn head(&self) -> Option<LinearHead> {
        find_head(&self.graph).filter(|h| h.classes == self.classes || self.classes == 0)
    }

    /// Name of the penultimate features (the input of the final Gemm/MatMul), if found; looked
    /// up again by [`Model::prepare`] on the optimised graph.
    pub fn penultimate_name(&self) -> Option<&str> {
        self.penultimate.map(|v| self.graph.value_name(v))
    }

    /// Names of every activation that can be tapped, in execution order. The load-time passes
    /// that [`Model::prepare`] runs fold BatchNormalization into Conv and fuse a Conv with the
    /// residual Add and ReLU that follow it, so those intermediate values have no name of their
    /// own: tap the fused result. Before `prepare` the list is that of the graph as built.
    pub fn tap_names(&self) -> Vec<&str> {
        self.graph
            .nodes()
            .iter()
            .map(|n| self.graph.value_name(n.output))
            .collect()
    }

    /// The batch as chunk tensors (see [`CHUNK`]), each with its samples.
    fn parts(&self, images: &[f32]) -> Result<Vec<(Range<usize>, Tensor)>> {
        let (n, [c, h, w]) = self.count(images)?;
        let per = c * h * w;
        Ok(chunks(n)
            .into_iter()
            .map(|r| {
                let x = images[r.start * per..r.end * per].to_vec();
                let t = Tensor::f32(vec![r.len(), c, h, w], x);
                (r, t)
            })
            .collect())
    }

    /// The number of images in `images` and their shape.
    fn count(&self, images: &[f32]) -> Result<(usize, [usize; 3])> {
        let [c, h, w] = self.image.ok_or_else(|| {
            Error::Input("call Model::prepare with the image shape before running".into())
        })?;
        let per = c * h * w;
        if images.is_empty() || !images.len().is_multiple_of(per) {
            return Err(Error::Input(format!(
                "{} values do not form whole {c}x{h}x{w} images",
                images.len()
            )));
        }
        Ok((images.len() / per, [c, h, w]))
    }

    fn logits_of(&self, vals: &[Option<Tensor>], n: usize) -> Result<Vec<f32>> {
        let out = vals[self.graph.output]
            .as_ref()
            .ok_or_else(|| Error::Graph("no output".into()))?;
        if out.len() != n * self.classes {
            return Err(Error::Input(format!(
                "model produced {:?} for a batch of {n}; expected {n}x{} logits",
                out.shape(),
                self.classes
            )));
        }
        Ok(out.fs().to_vec())
    }

    /// Logits (N·K, row-major) of a batch of NCHW images in [0, 1].
    pub fn logits(&self, images: &[f32]) -> Result<Vec<f32>> {
        let logits = par_map(self.parts(images)?, |(r, x)| {
            self.logits_of(&self.graph.run(x, false, &[])?, r.len())
        })?;
        Ok(logits.concat())
    }

    /// Logits and named activations (`taps`, by value name; "penultimate" names the input of the
    /// final Gemm/MatMul) without keeping anything for a backward pass.
    pub fn features(&self, images: &[f32], taps: &[&str]) -> Result<(Vec<f32>, Vec<Tensor>)> {
        let ids = taps
            .iter()
            .map(|t| self.tap_id(t))
            .collect::<Result<Vec<_>>>()?;
        let parts = par_map(self.parts(images)?, |(r, x)| {
            let vals = self.graph.run(x, false, &ids)?;
            let feats = ids
                .iter()
                .map(|&v| self.value(&vals, v))
                .collect::<Result<Vec<_>>>()?;
            Ok((self.logits_of(&vals, r.len())?, feats))
        })?;
        let mut logits = Vec::new();
        let mut per_tap: Vec<Vec<Tensor>> = vec![Vec::new(); ids.len()];
        for (l, feats) in parts {
            logits.extend(l);
            for (t, f) in per_tap.iter_mut().zip(feats) {
                t.push(f);
            }
        }
        let feats = per_tap
            .into_iter()
            .map(concat_batch)
            .collect::<Result<Vec<_>>>()?;
        Ok((logits, feats))
    }

    /// One forward and one backward pass: per-sample `loss` values and their input gradients.
    /// Each chunk of the batch runs its backward pass right after its forward pass and then
    /// drops its activations, so they are still in cache and never held for the whole batch
    /// (where [`Model::forward`] keeps every chunk's for later gradients and taps).
    pub fn loss_grad(&self, images: &[f32], loss: &Loss) -> Result<LossGrad> {
        let (n, _) = self.count(images)?;
        let k = self.classes;
        loss.check(n * k, k)?;
        let done = par_map(self.parts(images)?, |(r, x)| {
            let vals = self.graph.run(x, true, &[])?;
            let z = self.logits_of(&vals, r.len())?;
            let (values, seed) = loss.samples(r, k).evaluate(&z, k)?;
            let grad = self.backward_from(&vals, seed)?;
            Ok((z, values, grad))
        })?;
        let mut out = LossGrad {
            logits: Vec::with_capacity(n * k),
            loss: Vec::with_capacity(n),
            grad: Vec::with_capacity(images.len()),
        };
        for (z, values, grad) in done {
            out.logits.extend(z);
            out.loss.extend(values);
            out.grad.extend(grad);
        }
        Ok(out)
    }

    /// The input gradient of one chunk's activations `vals` for the logit seed `seed`.
    fn backward_from(&self, vals: &Values, seed: Vec<f32>) -> Result<Vec<f32>> {
        let out_shape = vals[self.graph.output]
            .as_ref()
            .map(|t| t.shape().to_vec())
            .ok_or_else(|| Error::Graph("no output".into()))?;
        self.graph
            .backward(vals, Tensor::f32(out_shape, seed))?
            .into_f32()
    }

    /// The input gradients of one chunk's activations `vals` for `copies` seeds at once (`seed`
    /// copy-major), the values flagged in `tile` carrying the batch; see
    /// [`Graph::backward_copies`].
    fn backward_copies(
        &self,
        vals: &Values,
        seed: Vec<f32>,
        copies: usize,
        tile: &[bool],
    ) -> Result<Vec<f32>> {
        let mut shape = vals[self.graph.output]
            .as_ref()
            .map(|t| t.shape().to_vec())
            .ok_or_else(|| Error::Graph("no output".into()))?;
        shape[0] *= copies;
        self.graph
            .backward_copies(vals, Tensor::f32(shape, seed), copies, tile)?
            .into_f32()
    }

    /// A forward pass that keeps its activations for later gradients and taps.
    pub fn forward(&self, images: &[f32]) -> Result<Forward<'_>> {
        let parts = par_map(self.parts(images)?, |(r, x)| {
            Ok((r, self.graph.run(x, true, &[])?))
        })?;
        let mut logits = Vec::new();
        for (r, vals) in &parts {
            logits.extend(self.logits_of(vals, r.len())?);
        }
        Ok(Forward {
            model: self,
            parts,
            logits,
        })
    }

    /// How [`Forward::input_grads`] batches seeds (found once, on first use).
    fn tiling(&self) -> &Tiling {
        self.tiling.get_or_init(|| self.find_tiling())
    }

    /// Runs one image, then the same image twice, keeping every value, and sorts the values:
    /// those whose batch-2 value is the batch-1 value twice over along the first axis carry the
    /// batch (replicated); those equal in both are shared; integer values of equal shape whose
    /// contents differ (shape arithmetic holding the batch size) may only be read by views
    /// (Reshape, Flatten, Squeeze, Unsqueeze), whose gradient takes the shape of their input.
    /// Anything else, or a failed run, means [`Tiling::Separate`]. Floats compare within 1e−5
    /// relative (a kernel may round differently for another batch size); the point is the
    /// layout, which a wrong one would change completely.
    fn find_tiling(&self) -> Tiling {
        let Some([c, h, w]) = self.image else {
            return Tiling::Separate;
        };
        let per = c * h * w;
        // A fixed image with structure (no symmetry a layout mistake could hide behind).
        let img: Vec<f32> = (0..per)
            .map(|i| ((i * 7919 + 13) % 1009) as f32 / 1009.0)
            .collect();
        let one = self
            .graph
            .run(Tensor::f32(vec![1, c, h, w], img.clone()), true, &[]);
        let two = self.graph.run(
            Tensor::f32(vec![2, c, h, w], [img.clone(), img].concat()),
            true,
            &[],
        );
        let (Ok(one), Ok(two)) = (one, two) else {
            return Tiling::Separate;
        };
        let close = |a: f32, b: f32| a == b || (a - b).abs() <= 1e-5 * (1.0 + a.abs().max(b.abs()));
        let mut tile = vec![false; one.len()];
        let mut meta = vec![false; one.len()];
        for v in 0..one.len() {
            let (a, b) = match (&one[v], &two[v]) {
                (None, None) => continue,
                (Some(a), Some(b)) if a.is_f32() == b.is_f32() => (a, b),
                _ => return Tiling::Separate,
            };
            let (sa, sb) = (a.shape(), b.shape());
            let doubled = !sa.is_empty()
                && sa[0] > 0
                && sb.len() == sa.len()
                && sb[0] == 2 * sa[0]
                && sb[1..] == sa[1..];
            if a.is_f32() {
                let (x, y) = (a.fs(), b.fs());
                if sa == sb && x.iter().zip(y).all(|(&p, &q)| close(p, q)) {
                    continue;
                }
                if doubled
                    && y.chunks(x.len())
                        .all(|h| h.iter().zip(x).all(|(&q, &p)| close(p, q)))
                {
                    tile[v] = true;
                    continue;
                }
            } else {
                let (Ok(x), Ok(y)) = (a.as_i64(), b.as_i64()) else {
                    return Tiling::Separate;
                };
                if sa == sb && x == y {
                    continue;
                }
                if doubled && y.chunks(x.len()).all(|h| h == x) {
                    tile[v] = true;
                    continue;
                }
                if sa == sb {
                    meta[v] = true;
                    continue;
                }
            }
            return Tiling::Separate;
        }
        let views = ["Reshape", "Flatten", "Squeeze", "Unsqueeze"];
        for node in self.graph.nodes() {
            let out_float = one[node.output].as_ref().is_some_and(Tensor::is_f32);
            let reads_meta = node.inputs.iter().flatten().any(|&v| meta[v]);
            if out_float && reads_meta && !views.contains(&node.op.name()) {
                return Tiling::Separate;
            }
        }
        Tiling::Replicate(tile)
    }

    fn tap_id(&self, name: &str) -> Result<ValueId> {
        if name == "penultimate" {
            return self.penultimate.ok_or_else(|| {
                Error::Input(
                    "no final Gemm/MatMul found: the model has no penultimate layer".into(),
                )
            });
        }
        self.graph
            .find(name)
            .filter(|&v| {
                v == self.graph.input() || self.graph.nodes().iter().any(|n| n.output == v)
            })
            .ok_or_else(|| {
                Error::Input(format!(
                    "no activation named '{name}' (see Model::tap_names)"
                ))
            })
    }

    fn value(&self, vals: &[Option<Tensor>], v: ValueId) -> Result<Tensor> {
        vals[v].clone().ok_or_else(|| {
            Error::Graph(format!(
                "activation '{}' was not kept",
                self.graph.value_name(v)
            ))
        })
    }
}

impl Forward<'_> {
    /// Logits, N·K row-major.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }
    /// A named activation ("penultimate" for the input of the final Gemm/MatMul).
    pub fn tap(&self, name: &str) -> Result<Tensor> {
        let v = self.model.tap_id(name)?;
        let parts = self
            .parts
            .iter()
            .map(|(_, vals)| self.model.value(vals, v))
            .collect::<Result<Vec<_>>>()?;
        concat_batch(parts)
    }
    /// Input gradient of `loss` (evaluated on this pass's logits) — one backward pass.
    pub fn loss_grad(&self, loss: &Loss) -> Result<(Vec<f32>, Vec<f32>)> {
        let (values, seed) = loss.evaluate(&self.logits, self.model.classes)?;
        Ok((values, self.backward_seed(seed)?))
    }
    /// Input gradient of `Σ_k w[i,k]·z[i,k]` for each sample `i` (a Jacobian row when `w` is a
    /// difference of one-hot vectors) — one backward pass, no forward.
    pub fn input_grad(&self, weights: &[f32]) -> Result<Vec<f32>> {
        if weights.len() != self.logits.len() {
            return Err(Error::Input(format!(
                "{} logit weights for {} logits",
                weights.len(),
                self.logits.len()
            )));
        }
        self.backward_seed(weights.to_vec())
    }
    /// The multi-output vector–Jacobian product: the input gradients of `m` logit combinations
    /// per sample, `Σ_k w[i,j,k]·z[i,k]` for `j < m` — e.g. the Jacobian rows `∇(z_c − z_y)` of
    /// every class `c` that FAB and DeepFool need. `weights` is N·m·K (sample, combination,
    /// logit); the result is N·m·(C·H·W), laid out the same way. Each value equals
    /// [`Forward::input_grad`] of that combination alone (bit for bit on the CPU kernels, which
    /// reduce in the same order at any batch size).
    ///
    /// Where the graph allows it (see `Model::find_tiling`), the combinations of a chunk of
    /// samples run as one backward pass over the chunk replicated `m` times
    /// ([`Graph::backward_copies`]: the gradients carry `m` copies of the batch, the kept
    /// activations are read as they are, and an operator copies them only where it has no rule
    /// of its own, see `Op::backward_copies`), so the kernels see `m` times larger batches than
    /// `m` separate passes would, and each operator runs once instead of `m` times; a chunk's
    /// combinations are split into groups when the replicated activations would pass
    /// [`REPLICA_BYTES`]. Otherwise it runs `m` separate backward passes.
    pub fn input_grads(&self, weights: &[f32], m: usize) -> Result<Vec<f32>> {
        let k = self.model.classes;
        let n = self.logits.len() / k.max(1);
        if m == 0 || weights.len() != n * m * k {
            return Err(Error::Input(format!(
                "{} logit weights for {n} samples × {m} combinations × {k} logits",
                weights.len()
            )));
        }
        let per = self.model.image.map_or(0, |[c, h, w]| c * h * w);
        let mut out = vec![0.0f32; n * m * per];
        let tile = match self.model.tiling() {
            Tiling::Replicate(t) => t,
            Tiling::Separate => {
                let mut seed = vec![0.0f32; n * k];
                for j in 0..m {
                    for i in 0..n {
                        let at = (i * m + j) * k;
                        seed[i * k..(i + 1) * k].copy_from_slice(&weights[at..at + k]);
                    }
                    let g = self.backward_seed(seed.clone())?;
                    for i in 0..n {
                        let at = (i * m + j) * per;
                        out[at..at + per].copy_from_slice(&g[i * per..(i + 1) * per]);
                    }
                }
                return Ok(out);
            }
        };
        // Work units: (chunk, first combination, combinations), in parallel.
        let mut units = Vec::new();
        for (p, (_, vals)) in self.parts.iter().enumerate() {
            let bytes: usize = vals
                .iter()
                .zip(tile)
                .filter(|(_, &t)| t)
                .filter_map(|(v, _)| v.as_ref())
                .map(|t| t.len() * 4)
                .sum();
            let group = (REPLICA_BYTES / bytes.max(1)).clamp(1, m);
            let groups = m.div_ceil(group);
            for q in 0..groups {
                let (j0, j1) = (q * m / groups, (q + 1) * m / groups);
                units.push((p, j0, j1 - j0));
            }
        }
        let done = par_map(units.clone(), |(p, j0, copies)| {
            let (r, vals) = &self.parts[p];
            let rows = r.len();
            // Row `c·rows + s` of the replicated batch is sample `r.start + s` under
            // combination `j0 + c`.
            let mut seed = Vec::with_capacity(copies * rows * k);
            for c in 0..copies {
                for s in r.clone() {
                    let at = (s * m + j0 + c) * k;
                    seed.extend_from_slice(&weights[at..at + k]);
                }
            }
            if copies == 1 {
                return self.model.backward_from(vals, seed);
            }
            self.model.backward_copies(vals, seed, copies, tile)
        })?;
        for (&(p, j0, copies), g) in units.iter().zip(done) {
            let r = &self.parts[p].0;
            let rows = r.len();
            for c in 0..copies {
                for (s, i) in r.clone().enumerate() {
                    let src = (c * rows + s) * per;
                    let at = (i * m + j0 + c) * per;
                    out[at..at + per].copy_from_slice(&g[src..src + per]);
                }
            }
        }
        Ok(out)
    }
    fn backward_seed(&self, seed: Vec<f32>) -> Result<Vec<f32>> {
        let k = self.model.classes;
        let grads = par_map(self.parts.iter().collect(), |(r, vals)| {
            let seed = seed[r.start * k..r.end * k].to_vec();
            self.model.backward_from(vals, seed)
        })?;
        Ok(grads.concat())
    }
}

/// Declared dimensions as `[N, 3, 32, 32]` (`N` where symbolic).
fn dims(d: &[Option<usize>]) -> String {
    let parts: Vec<String> = d
        .iter()
        .map(|x| x.map_or("N".to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The weights of the final affine layer, `z = W·h + b` with `h` the penultimate features: what
/// feature-space margins need (the distance of `h` to the boundary between classes `i` and `j`
/// is `(z_i − z_j)/‖w_i − w_j‖_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearHead {
    /// Classes K.
    pub classes: usize,
    /// Feature dimension D.
    pub dim: usize,
    /// W, K × D row-major (row k maps features to logit k).
    pub weight: Vec<f32>,
    /// b, K values (zeros when the layer has no bias).
    pub bias: Vec<f32>,
}

/// The last Gemm/MatMul before the output, walking back through adds and views; with the
/// constant operand of each Add on the way (None for an Add of two computed values).
fn final_affine(g: &Graph) -> Option<(&crate::graph::Node, Vec<Option<&Tensor>>)> {
    let mut v = g.output();
    let mut adds = Vec::new();
    for _ in 0..8 {
        let node = g.nodes().iter().find(|n| n.output == v)?;
        match node.op.name() {
            "Gemm" | "MatMul" => return Some((node, adds)),
            "Add" | "Identity" | "Flatten" | "Reshape" | "Squeeze" => {
                if node.op.name() == "Add" {
                    adds.push(node.inputs.iter().flatten().find_map(|&i| g.constant(i)));
                }
                v = node
                    .inputs
                    .iter()
                    .flatten()
                    .copied()
                    .find(|&i| g.constant(i).is_none())?;
            }
            _ => return None,
        }
    }
    None
}

/// The final affine layer with constant weights ([`final_affine`]), with at most one constant
/// bias add after it.
fn find_head(g: &Graph) -> Option<LinearHead> {
    let (node, adds) = final_affine(g)?;
    let bias: Option<Vec<f32>> = match adds.as_slice() {
        [] => None,
        [Some(c)] if c.is_f32() => Some(c.fs().to_vec()),
        _ => return None,
    };
    let konst = |i: usize| {
        node.inputs
            .get(i)
            .copied()
            .flatten()
            .and_then(|v| g.constant(v))
    };
    let b = konst(1)?;
    if b.shape().len() != 2 || !b.is_f32() {
        return None;
    }
    let (alpha, beta, trans_a, trans_b) = match node.op.as_any().downcast_ref::<Gemm>() {
        Some(gm) => (gm.alpha, gm.beta, gm.trans_a, gm.trans_b),
        None => (1.0, 1.0, false, false),
    };
    if trans_a {
        return None;
    }
    let (r, c) = (b.shape()[0], b.shape()[1]);
    let (k, d) = if trans_b { (r, c) } else { (c, r) };
    let bw = b.fs();
    let weight: Vec<f32> = (0..k * d)
        .map(|i| {
            let (row, col) = (i / d, i % d);
            alpha
                * if trans_b {
                    bw[row * c + col]
                } else {
                    bw[col * c + row]
                }
        })
        .collect();
    let mut total = bias.unwrap_or_else(|| vec![0.0; k]);
    if let Some(cb) = konst(2).filter(|_| node.op.name() == "Gemm") {
        if !cb.is_f32() || (cb.len() != k && cb.len() != 1) {
            return None;
        }
        let cv = cb.fs();
        for (j, t) in total.iter_mut().enumerate() {
            *t += beta * cv[if cv.len() == 1 { 0 } else { j }];
        }
    }
    (total.len() == k).then_some(LinearHead {
        classes: k,
        dim: d,
        weight,
        bias: total,
    })
}

/// The input of the last Gemm/MatMul before the output, looking through bias adds and views.
fn find_penultimate(g: &Graph) -> Option<ValueId> {
    final_affine(g).and_then(|(node, _)| node.inputs.first().copied().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;
    use crate::ops::{Flatten, Unary, UnaryKind};

    /// `x → (Transpose there and back) → Relu → Flatten → Gemm` on 2×3×3 images.
    fn model(transposed: bool) -> Model {
        let mut b = GraphBuilder::new();
        b.input("x");
        let w: Vec<f32> = (0..18 * 4).map(|i| (i % 7) as f32 - 3.0).collect();
        b.constant("w", Tensor::f32(vec![18, 4], w));
        let mut at = "x";
        if transposed {
            for (i, out) in ["t1", "t2"].into_iter().enumerate() {
                let perm = Transpose {
                    perm: Some(vec![1, 0, 2, 3]),
                };
                b.node(&format!("t{i}"), Box::new(perm), &[Some(at)], out);
                at = out;
            }
        }
        b.node("r", Box::new(Unary::new(UnaryKind::Relu)), &[Some(at)], "r");
        b.node("f", Box::new(Flatten { axis: 1 }), &[Some("r")], "f");
        b.node("z", Box::new(Gemm::default()), &[Some("f"), Some("w")], "z");
        let mut m = Model::new(b.build("z").unwrap(), vec![]);
        m.prepare([2, 3, 3], None).unwrap();
        m
    }

    #[test]
    fn seeds_are_batched_where_the_batch_axis_comes_first() {
        assert!(matches!(model(false).tiling(), Tiling::Replicate(_)));
        // [C, N, H, W] in between: no value may be replicated along its first axis.
        assert!(matches!(model(true).tiling(), Tiling::Separate));
    }
}
