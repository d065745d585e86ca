"""faultline from Python: where an image classifier (ONNX) breaks.

Every function here calls the same library function as the ``faultline`` command of the same
name (``faultline eval`` → :func:`evaluate`, ``attack`` → :func:`attack`, ``classwise``,
``margins``), with the GIL released while it runs, and returns the same report the command
writes to ``run.json``, as a dict (:class:`Report`). Images are float32 NCHW numpy arrays in
[0, 1] (uint8 arrays are divided by 255); C-contiguous float32 input is read in place.

Example::

    import faultline
    model = faultline.Model("demo/cifar10-resnet20.onnx")
    report = faultline.evaluate(model, "demo/cifar10-test")
    print(report["clean_accuracy"])
    x, y = next(iter(faultline.load_data("demo/cifar10-test", limit=100, batch_size=100)))
    adv = faultline.attack(model, x, y, attack="apgd-ce", eps="8/255")
    print(adv.robust_accuracy, adv.norms.max())
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _faultline as _native
from ._errors import Error, FileNotFound, InvalidInput

__version__: str = _native.__version__

#: Registered attack names (``faultline list``).
ATTACKS: Tuple[str, ...] = tuple(_native.attack_names())
#: Corruption family names (the 15 of CIFAR-10-C and 4 extra).
CORRUPTIONS: Tuple[str, ...] = tuple(_native.corruption_names())

__all__ = [
    "ATTACKS",
    "CORRUPTIONS",
    "AttackResult",
    "DataLoader",
    "Error",
    "FileNotFound",
    "InvalidInput",
    "Model",
    "Report",
    "attack",
    "calibrate",
    "classwise",
    "corrupt",
    "evaluate",
    "from_torch",
    "load_data",
    "margins",
]

PathLike = Union[str, "os.PathLike[str]"]
Radius = Union[float, str]


class Report(dict):
    """A run report (the body of ``run.json``) as a dict, with :meth:`to_pandas`."""

    def to_pandas(self, key: Optional[str] = None) -> Any:
        """A pandas DataFrame of the report: one row of every scalar field (nested fields
        joined with dots), or with ``key`` (a dotted path such as ``"results.per_class"``) one
        row per entry of that list. Needs pandas."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("Report.to_pandas needs pandas: pip install pandas") from e
        if key is None:
            return pd.json_normalize(dict(self))
        value: Any = self
        for part in key.split("."):
            value = value[part]
        return pd.DataFrame(value)


def _images(x: Any) -> np.ndarray:
    """Float32 C-contiguous NCHW images in [0, 1]; no copy when ``x`` already is one."""
    a = np.asarray(x)
    if a.ndim != 4:
        raise InvalidInput(f"images of shape {a.shape}: expected an N x C x H x W batch")
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / np.float32(255)
    return np.ascontiguousarray(a, dtype=np.float32)


def _labels(y: Any) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise InvalidInput(f"labels of shape {a.shape}: expected one label per image")
    if a.dtype.kind not in "iu":
        raise InvalidInput(f"labels of dtype {a.dtype}: expected integer class indices")
    return np.ascontiguousarray(a, dtype=np.int64)


class Model:
    """An ONNX image classifier run by faultline's engine.

    Args:
        path: the ``.onnx`` file.
        mean: per-channel means subtracted outside the graph, for models that expect
            normalized input but do not normalize inside their graph (``--mean``)
            [default: None].
        std: per-channel standard deviations to divide by, with ``mean`` [default: None].
        threads: worker threads for this model [default: None, all cores].

    The model is bound to the image shape it declares, or to the shape of the first batch it
    sees; a batch of another shape loads it again for that shape.
    """

    def __init__(
        self,
        path: PathLike,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        threads: Optional[int] = None,
    ) -> None:
        self._native = _native.Model(
            os.fspath(path),
            None if mean is None else [float(v) for v in mean],
            None if std is None else [float(v) for v in std],
            threads,
        )
        self._keep: Any = None  # a temporary directory holding an exported model

    def __repr__(self) -> str:
        return f"faultline.Model({str(self.path)!r})"

    @property
    def path(self) -> Path:
        """The ONNX file."""
        return Path(self._native.path)

    @property
    def image_shape(self) -> Optional[Tuple[int, int, int]]:
        """``(C, H, W)`` the model is bound to (None before it has seen a batch)."""
        return self._native.image_shape

    @property
    def card(self) -> Optional[Dict[str, Any]]:
        """The model card of run records (path, sha256, opset, classes, layout, …)."""
        text = self._native.card_json()
        return None if text is None else json.loads(text)

    @property
    def num_classes(self) -> Optional[int]:
        """Number of classes (logits per image), once bound to a shape."""
        card = self.card
        return None if card is None else card["num_classes"]

    @property
    def tap_names(self) -> List[str]:
        """Activations :meth:`features` can tap (after load-time fusion), once bound."""
        return self._native.tap_names()

    def logits(self, x: Any) -> np.ndarray:
        """Logits ``[N, K]`` (float32) of images ``x`` ``[N, C, H, W]``."""
        return self._native.logits(_images(x))

    def predict(self, x: Any) -> np.ndarray:
        """Predicted classes ``[N]`` (the first maximal logit, as the CLI's records)."""
        return np.argmax(self.logits(x), axis=1)

    def input_grad(self, x: Any, y: Any, loss: str = "ce") -> np.ndarray:
        """Gradient ``[N, C, H, W]`` of the per-sample loss with respect to the input.

        Args:
            x: images ``[N, C, H, W]``.
            y: labels ``[N]``.
            loss: ``ce`` (cross-entropy), ``dlr`` (difference of logits ratio) or ``margin``
                (``z_y − max_{j≠y} z_j``) [default: ``ce``].
        """
        grad, _ = self._native.input_grad(_images(x), _labels(y), loss)
        return grad

    def loss(self, x: Any, y: Any, loss: str = "ce") -> np.ndarray:
        """Per-sample loss values ``[N]`` (see :meth:`input_grad`)."""
        _, values = self._native.input_grad(_images(x), _labels(y), loss)
        return values

    def features(self, x: Any, tap: str = "penultimate") -> np.ndarray:
        """Activations of ``tap`` for images ``x``: ``penultimate`` (the input of the final
        Gemm/MatMul) or a name from :attr:`tap_names` [default: ``penultimate``]."""
        return self._native.features(_images(x), tap)


def from_torch(
    module: Any,
    example: Any,
    path: Optional[PathLike] = None,
    opset: int = 17,
    **model_args: Any,
) -> Model:
    """Exports a torch module with ``torch.onnx.export`` and loads it as a :class:`Model`.

    Args:
        module: the ``torch.nn.Module`` (exported in eval mode).
        example: an example input batch ``[N, C, H, W]`` (tensor or array); the batch dimension
            is exported as dynamic.
        path: where to write the ``.onnx`` file [default: a temporary file kept while the
            model lives].
        opset: ONNX opset [default: 17].
        **model_args: ``mean``, ``std``, ``threads`` as for :class:`Model`.
    """
    try:
        import torch
    except ImportError as e:
        raise ImportError("from_torch needs torch: pip install torch onnx") from e
    keep = None
    if path is None:
        keep = tempfile.TemporaryDirectory(prefix="faultline-torch-")
        path = os.path.join(keep.name, "model.onnx")
    if not isinstance(example, torch.Tensor):
        example = torch.as_tensor(np.asarray(example, dtype=np.float32))
    was_training = module.training
    module.eval()
    kwargs: Dict[str, Any] = dict(
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=opset,
    )
    import inspect

    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter: one self-contained file
    try:
        with torch.no_grad():
            torch.onnx.export(module, (example,), os.fspath(path), **kwargs)
    finally:
        module.train(was_training)
    model = Model(path, **model_args)
    model._keep = keep
    return model


def _model(model: Union[Model, PathLike]) -> Any:
    if isinstance(model, Model):
        return model._native
    return _native.Model(os.fspath(model), None, None, None)


def _data(
    data: Any,
    labels: Any = None,
    classes: Optional[Sequence[str]] = None,
    format: Optional[str] = None,
    labels_file: Optional[PathLike] = None,
    split: str = "test",
    resize: Optional[int] = None,
    center_crop: Optional[int] = None,
    classes_file: Optional[PathLike] = None,
) -> Any:
    """A data set: a path (any format the CLI reads) or images with ``labels``."""
    if isinstance(data, DataLoader):
        return data._data
    if isinstance(data, (str, os.PathLike)):
        if labels is not None:
            raise InvalidInput("labels go with image arrays; for a path use labels_file")
        return _native.Data.open(
            os.fspath(data),
            format,
            None if classes_file is None else os.fspath(classes_file),
            None if labels_file is None else os.fspath(labels_file),
            split,
            resize,
            center_crop,
        )
    if labels is None:
        raise InvalidInput("image arrays need their labels")
    names = None if classes is None else [str(c) for c in classes]
    return _native.Data.from_arrays(_images(data), _labels(labels), names)


class _Progress:
    """Turns the library's progress events into a tqdm bar (``tqdm.auto``: terminals and
    notebooks) when tqdm is installed, else into a few lines on stderr."""

    def __init__(self) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        self._tqdm = tqdm
        self._bar: Any = None
        self._what = ""
        self._total = 0

    def __call__(self, event: str, text: str, a: int, b: int) -> None:
        if event == "start":
            self._what, self._total = text, a
            if self._tqdm is not None:
                self._bar = self._tqdm(total=a, initial=b, desc=text, leave=False)
        elif event == "advance":
            if self._bar is not None:
                self._bar.update(a - self._bar.n)
        elif event == "message":
            if self._bar is not None:
                self._bar.set_postfix_str(text, refresh=False)
        elif event == "note":
            if self._tqdm is not None:
                self._tqdm.write(text, file=sys.stderr)
            else:
                print(text, file=sys.stderr)
        elif event == "finish":
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            elif self._tqdm is None:
                print(f"{self._what}: {self._total} done", file=sys.stderr)


class _RunDir:
    """The run directory: ``out`` as given, or a temporary one removed after the call."""

    def __init__(self, out: Optional[PathLike]) -> None:
        self._tmp = None if out is not None else tempfile.TemporaryDirectory(prefix="faultline-")
        self.path = os.fspath(out) if out is not None else os.path.join(self._tmp.name, "run")

    def __enter__(self) -> "_RunDir":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _radii(eps: Union[None, Radius, Sequence[Radius]]) -> List[Radius]:
    if eps is None:
        return []
    if isinstance(eps, (str, float, int)):
        return [eps]
    return list(eps)


_SELECTION_DOC = """
        limit: use N samples picked by ``subset`` [default: None, all].
        subset: how ``limit`` picks: ``stratified`` (the first of each class), ``first`` or
            ``random`` [default: ``stratified``].
        subset_seed: seed of ``subset="random"`` [default: 0].
        indices: file of data-set indices to use, one per line [default: None].
        batch_size: images per batch [default: 128].
        out: run directory for run.json and samples.jsonl [default: None, a temporary one];
            an interrupted run with the same settings resumes there.
        overwrite: replace a different run already in ``out`` [default: False].
        progress: show a progress bar (tqdm if installed) [default: True].
        **data_options: for a path: ``format``, ``classes_file``, ``labels_file``, ``split``,
            ``resize``, ``center_crop`` (the CLI's data flags); for arrays: ``classes`` (class
            names)."""


def evaluate(
    model: Union[Model, PathLike],
    data: Any,
    labels: Any = None,
    *,
    corruptions: Optional[str] = None,
    severities: str = "1-5",
    seed: int = 0,
    table: Optional[str] = None,
    baseline: Optional[PathLike] = None,
    limit: Optional[int] = None,
    subset: str = "stratified",
    subset_seed: int = 0,
    indices: Optional[PathLike] = None,
    batch_size: int = 128,
    out: Optional[PathLike] = None,
    overwrite: bool = False,
    progress: bool = True,
    **data_options: Any,
) -> Report:
    """``faultline eval``: clean accuracy, per-class accuracy, confusion matrix and logit
    margins, and with ``corruptions`` the accuracy under each corruption × severity.

    Args:
        model: a :class:`Model` or an ONNX path.
        data: a data set path (CIFAR binary, IDX, image folder, .npy/.npz) or images
            ``[N, C, H, W]``.
        labels: the labels ``[N]`` of image arrays.
        corruptions: ``all``, ``standard``, ``extra`` or a list such as ``"fog,snow"``
            [default: None].
        severities: a range such as ``1-5`` or a list such as ``1,3,5`` [default: ``1-5``].
        seed: seed of the random corruption families [default: 0].
        table: corruption parameter table ``cifar`` or ``imagenet`` [default: by image size].
        baseline: an earlier ``eval`` run directory with corruptions, for CE and mCE
            [default: None].
    """
    with _RunDir(out) as rd:
        text = _native.eval_run(
            _model(model),
            _data(data, labels, **data_options),
            limit,
            subset,
            subset_seed,
            None if indices is None else os.fspath(indices),
            batch_size,
            corruptions,
            severities,
            seed,
            table,
            None if baseline is None else os.fspath(baseline),
            rd.path,
            overwrite,
            _Progress() if progress else None,
        )
    return Report(json.loads(text))


evaluate.__doc__ = (evaluate.__doc__ or "") + _SELECTION_DOC


class AttackResult:
    """What :func:`attack` returns.

    Attributes:
        adversarial: the returned images, ``[N, C, H, W]`` float32 (``[E, N, C, H, W]`` with
            several radii), row ``j`` the ``j``-th selected sample.
        success: whether the attack met its goal on each sample (re-checked on the returned
            image), ``[N]`` (``[E, N]``).
        norms: the perturbation's norm in the attack's norm, ``[N]`` (``[E, N]``).
        indices: data-set index of each row.
        labels: label of each row.
        report: the report (``run.json``).
        records: the per-sample records (``samples.jsonl``).
    """

    def __init__(
        self,
        adversarial: np.ndarray,
        success: np.ndarray,
        norms: np.ndarray,
        indices: np.ndarray,
        labels: np.ndarray,
        report: Report,
        records: List[Dict[str, Any]],
    ) -> None:
        self.adversarial = adversarial
        self.success = success
        self.norms = norms
        self.indices = indices
        self.labels = labels
        self.report = report
        self.records = records

    @property
    def robust_accuracy(self) -> Any:
        """Robust accuracy: a number for one radius, a dict radius → number for several."""
        return self.report["robust_accuracy"]

    @property
    def clean_accuracy(self) -> float:
        return self.report["clean_accuracy"]

    def __repr__(self) -> str:
        return (
            f"AttackResult(attack={self.report['attack']!r}, n={len(self.indices)}, "
            f"clean_accuracy={self.clean_accuracy:.4f}, robust_accuracy={self.robust_accuracy})"
        )


def attack(
    model: Union[Model, PathLike],
    x: Any,
    y: Any = None,
    attack: str = "apgd-ce",
    eps: Union[None, Radius, Sequence[Radius]] = None,
    norm: Optional[str] = None,
    *,
    preset: Optional[str] = None,
    steps: Optional[int] = None,
    step_size: Optional[Radius] = None,
    restarts: Optional[int] = None,
    random_start: bool = False,
    loss: Optional[str] = None,
    seed: int = 0,
    target: Optional[int] = None,
    sanity: bool = True,
    limit: Optional[int] = None,
    subset: str = "stratified",
    subset_seed: int = 0,
    indices: Optional[PathLike] = None,
    batch_size: int = 128,
    out: Optional[PathLike] = None,
    overwrite: bool = False,
    progress: bool = True,
    **data_options: Any,
) -> AttackResult:
    """``faultline attack --save-adv``: robust accuracy under an attack, with the adversarial
    images, success flags and perturbation norms.

    Args:
        model: a :class:`Model` or an ONNX path.
        x: images ``[N, C, H, W]`` or a data set path.
        y: the labels ``[N]`` of image arrays.
        attack: a name from :data:`ATTACKS` [default: ``apgd-ce``].
        eps: a radius or radii on the [0, 1] scale, numbers or text such as ``"8/255"``
            [default: None, the CLI's: 8/255 L∞, 0.5 L2, 12 L1 for CIFAR-sized images].
        norm: ``linf``, ``l2`` or ``l1`` [default: None, the attack's first].
        preset: an ensemble instead of ``attack`` (``standard``: AutoAttack) [default: None].
        steps: iterations [default: None, the attack's].
        step_size: absolute step size [default: None, the attack's].
        restarts: runs per sample [default: None, the attack's].
        random_start: start the first run at a random point [default: False].
        loss: ``ce``, ``dlr`` or ``margin`` for pgd/mifgsm/fgsm [default: None, ``ce``].
        seed: seed of all random choices [default: 0].
        target: targeted attack toward this class [default: None, untargeted].
        sanity: run the gradient-masking sanity checks [default: True].
    """
    with _RunDir(out) as rd:
        data = _data(x, y, **data_options)
        rows = data.select(
            limit, subset, subset_seed, None if indices is None else os.fspath(indices)
        )
        report_text, records_text = _native.attack_run(
            _model(model),
            data,
            limit,
            subset,
            subset_seed,
            None if indices is None else os.fspath(indices),
            attack,
            preset,
            norm,
            _radii(eps),
            steps,
            step_size,
            restarts,
            random_start,
            loss,
            seed,
            target,
            sanity,
            batch_size,
            rd.path,
            overwrite,
            _Progress() if progress else None,
        )
        report = Report(json.loads(report_text))
        files = report["adversarial_files"]
        adv = [np.load(os.path.join(rd.path, f)) for f in files]
    records = json.loads(records_text)
    row = {int(i): j for j, i in enumerate(rows)}
    radii = sorted({r["condition"]["attack"].get("eps") for r in records}, key=lambda e: -1 if e is None else e)
    level = {e: k for k, e in enumerate(radii)}
    norm_key = report["norm"]
    success = np.zeros((len(files), len(rows)), dtype=bool)
    norms = np.zeros((len(files), len(rows)), dtype=np.float32)
    labels = np.zeros(len(rows), dtype=np.int64)
    for r in records:
        k, j = level[r["condition"]["attack"].get("eps")], row[r["index"]]
        success[k, j] = r["success"]
        norms[k, j] = r[norm_key]
        labels[j] = r["label"]
    if len(files) == 1:
        return AttackResult(adv[0], success[0], norms[0], np.asarray(rows), labels, report, records)
    return AttackResult(np.stack(adv), success, norms, np.asarray(rows), labels, report, records)


attack.__doc__ = (attack.__doc__ or "") + _SELECTION_DOC


def classwise(
    model: Union[Model, PathLike],
    data: Any,
    labels: Any = None,
    *,
    attack: Optional[str] = "pgd",
    eps: Union[Radius, Sequence[Radius]] = "8/255",
    steps: Optional[int] = None,
    targeted: bool = False,
    corruptions: Optional[str] = None,
    severities: str = "1-5",
    seed: int = 0,
    limit: Optional[int] = None,
    subset: str = "stratified",
    subset_seed: int = 0,
    indices: Optional[PathLike] = None,
    batch_size: int = 128,
    out: Optional[PathLike] = None,
    overwrite: bool = False,
    progress: bool = True,
    **data_options: Any,
) -> Report:
    """``faultline classwise``: per-class accuracy, confusion, CFPS/CFNS, flip rate and
    worst-class figures for the clean data, an attack and corruptions, latent structure of the
    penultimate features and a ranking of the classes.

    Args:
        model: a :class:`Model` or an ONNX path.
        data: a data set path or images ``[N, C, H, W]``.
        labels: the labels ``[N]`` of image arrays.
        attack: the attack, or None for none [default: ``pgd``].
        eps: radius or radii [default: ``8/255``].
        steps: attack iterations [default: None, the attack's].
        targeted: also attack toward every class [default: False].
        corruptions: corruption families to include [default: None].
        severities: corruption severities [default: ``1-5``].
        seed: seed of the attack and corruptions [default: 0].
    """
    with _RunDir(out) as rd:
        text = _native.classwise_run(
            _model(model),
            _data(data, labels, **data_options),
            limit,
            subset,
            subset_seed,
            None if indices is None else os.fspath(indices),
            None if attack in (None, "none") else attack,
            _radii(eps),
            steps,
            targeted,
            corruptions,
            severities,
            seed,
            batch_size,
            rd.path,
            overwrite,
            _Progress() if progress else None,
        )
    return Report(json.loads(text))


classwise.__doc__ = (classwise.__doc__ or "") + _SELECTION_DOC


def margins(
    model: Union[Model, PathLike],
    data: Any,
    labels: Any = None,
    *,
    attack: str = "fab",
    norm: Optional[str] = None,
    eps: Optional[Radius] = None,
    steps: Optional[int] = None,
    restarts: Optional[int] = None,
    attack_subset: Optional[int] = None,
    estimate_size: int = 100,
    pseudo_margin: Optional[str] = None,
    fit_fraction: float = 0.5,
    epochs: int = 500,
    lr: float = 1e-4,
    pseudo_loss: str = "mse",
    recall: float = 0.95,
    bootstrap: int = 1000,
    seed: int = 0,
    limit: Optional[int] = None,
    subset: str = "stratified",
    subset_seed: int = 0,
    indices: Optional[PathLike] = None,
    batch_size: int = 128,
    out: Optional[PathLike] = None,
    overwrite: bool = False,
    progress: bool = True,
    **data_options: Any,
) -> Report:
    """``faultline margins``: input margins from a minimum-norm attack, clean scores, their
    rank agreement, detection of the non-robust samples and the estimated robust accuracy.

    Args:
        model: a :class:`Model` or an ONNX path.
        data: a data set path or images ``[N, C, H, W]``.
        labels: the labels ``[N]`` of image arrays.
        attack: ``fab``, ``deepfool`` or ``cw`` [default: ``fab``].
        norm: ``linf``, ``l2`` or ``l1`` [default: None, linf; cw: l2].
        eps: non-robust threshold on the input margin [default: None, the norm's].
        steps: iterations per run [default: None, the attack's].
        restarts: runs per sample for fab [default: None, 5].
        attack_subset: attack only this many samples [default: None, all].
        estimate_size: attacked samples per round of the estimate [default: 100].
        pseudo_margin: learn a pseudo-margin from ``logits`` or ``features`` [default: None].
        fit_fraction: share of attacked samples it is fitted on [default: 0.5].
        epochs: its training epochs [default: 500].
        lr: its learning rate [default: 1e-4].
        pseudo_loss: ``mse`` or ``ranking`` [default: ``mse``].
        recall: share of non-robust samples the threshold must flag [default: 0.95].
        bootstrap: bootstrap resamples [default: 1000].
        seed: seed of all random choices [default: 0].
    """
    with _RunDir(out) as rd:
        text = _native.margins_run(
            _model(model),
            _data(data, labels, **data_options),
            limit,
            subset,
            subset_seed,
            None if indices is None else os.fspath(indices),
            attack,
            norm,
            eps,
            steps,
            restarts,
            attack_subset,
            estimate_size,
            pseudo_margin,
            fit_fraction,
            epochs,
            lr,
            pseudo_loss,
            recall,
            bootstrap,
            seed,
            batch_size,
            rd.path,
            overwrite,
            _Progress() if progress else None,
        )
    return Report(json.loads(text))


margins.__doc__ = (margins.__doc__ or "") + _SELECTION_DOC


def corrupt(
    x: Any, name: str, severity: int, seed: int = 0, table: Optional[str] = None
) -> np.ndarray:
    """One corruption family at one severity, as ``faultline eval --corruptions`` applies it:
    float32 ``[N, C, H, W]`` in [0, 1] (image ``i`` uses the random stream of sample ``i``).

    Args:
        x: images ``[N, C, H, W]``.
        name: a family from :data:`CORRUPTIONS`.
        severity: 1 to 5.
        seed: seed of the random families [default: 0].
        table: parameter table ``cifar`` or ``imagenet`` [default: None, by image size].
    """
    if not 1 <= int(severity) <= 5:
        raise InvalidInput(f"severity {severity}: use 1 to 5")
    return _native.corrupt(_images(x), name, int(severity), seed, table)


class DataLoader:
    """A data set read batch by batch as numpy arrays: iterating yields ``(images, labels)``,
    images float32 ``[B, C, H, W]`` in [0, 1], labels int64 ``[B]``."""

    def __init__(self, data: Any, indices: Sequence[int], batch_size: int) -> None:
        if batch_size < 1:
            raise InvalidInput("batch_size: must be at least 1")
        self._data = data
        self.indices = list(indices)
        self.batch_size = batch_size

    def __len__(self) -> int:
        """Number of batches."""
        return -(-len(self.indices) // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.indices)

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        return self._data.image_shape

    @property
    def class_names(self) -> List[str]:
        return self._data.class_names

    def __iter__(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        for s in range(0, len(self.indices), self.batch_size):
            images, labels = self._data.read(self.indices[s : s + self.batch_size])
            yield images, np.asarray(labels, dtype=np.int64)


def load_data(
    path: PathLike,
    *,
    batch_size: int = 128,
    limit: Optional[int] = None,
    subset: str = "stratified",
    subset_seed: int = 0,
    indices: Optional[PathLike] = None,
    format: Optional[str] = None,
    classes_file: Optional[PathLike] = None,
    labels_file: Optional[PathLike] = None,
    split: str = "test",
    resize: Optional[int] = None,
    center_crop: Optional[int] = None,
) -> DataLoader:
    """Opens a data set the way the CLI's ``--data`` does and returns a :class:`DataLoader`.

    Args:
        path: CIFAR binary file or folder, MNIST IDX, image folder, or .npy/.npz.
        batch_size: images per batch [default: 128].
        limit, subset, subset_seed, indices: which samples, as in :func:`evaluate`
            [default: all].
        format: ``cifar10``, ``cifar100``, ``idx``, ``folder``, ``npy`` [default: detected].
        classes_file: file with one class name per line [default: None].
        labels_file: labels array for a .npy image file [default: None, found beside it].
        split: ``test`` or ``train`` for folders holding both [default: ``test``].
        resize: image folders: resize the shorter side to this many pixels [default: None].
        center_crop: image folders: centre-crop to this size [default: None].
    """
    data = _data(
        path,
        format=format,
        classes_file=classes_file,
        labels_file=labels_file,
        split=split,
        resize=resize,
        center_crop=center_crop,
    )
    rows = data.select(limit, subset, subset_seed, None if indices is None else os.fspath(indices))
    return DataLoader(data, rows, batch_size)


def _names(v: Union[None, str, Sequence[str]]) -> List[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [n.strip() for n in v.split(",") if n.strip()]
    return list(v)


def calibrate(
    model: Union[Model, PathLike],
    data: Any,
    test: Any,
    *,
    out: PathLike,
    labels: Any = None,
    test_labels: Any = None,
    test_limit: Optional[int] = 1000,
    seen: Union[None, str, Sequence[str]] = None,
    unseen: Union[None, str, Sequence[str]] = None,
    severities: str = "1-5",
    corrupt_prob: float = 0.8,
    eps: Radius = 0.2,
    width: int = 16,
    blocks: int = 2,
    epochs: int = 3,
    lr: float = 0.001,
    quantized: Optional[PathLike] = None,
    seed: int = 0,
    limit: Optional[int] = None,
    subset: str = "stratified",
    subset_seed: int = 0,
    indices: Optional[PathLike] = None,
    batch_size: int = 128,
    overwrite: bool = False,
    progress: bool = True,
    **data_options: Any,
) -> Report:
    """``faultline calibrate``: a small calibrator network trained in front of the frozen
    model on ``data`` (corrupted by the *seen* families), and the accuracy without and with it
    on ``test`` under the *unseen* families. Writes ``out/calibrator.onnx`` and
    ``out/combined.onnx`` (calibrator then model, one graph).

    Args:
        model: a :class:`Model` or an ONNX path.
        data: the training data (a path or images ``[N, C, H, W]`` with ``labels``).
        test: the test data (a path, read with ``data_options`` but its test split, or images
            with ``test_labels``).
        out: run directory (required: it holds the calibrator).
        test_limit: test samples, class-stratified [default: 1000].
        seen: families trained on [default: None, ``extra``].
        unseen: families tested only [default: None, every other family].
        severities: corruption severities [default: ``1-5``].
        corrupt_prob: probability that a training image is corrupted [default: 0.8].
        eps: bound of the perturbation on the [0, 1] scale [default: 0.2].
        width: hidden channels of the calibrator [default: 16].
        blocks: its residual blocks [default: 2].
        epochs: passes over the training samples [default: 3].
        lr: Adam's learning rate [default: 0.001].
        quantized: a quantized copy of the model to calibrate too [default: None].
        seed: seed of every random choice [default: 0].
    """
    test_options = {k: v for k, v in data_options.items() if k not in ("labels_file", "split")}
    text = _native.calibrate_run(
        _model(model),
        _data(data, labels, **data_options),
        _data(test, test_labels, **test_options),
        limit,
        subset,
        subset_seed,
        None if indices is None else os.fspath(indices),
        test_limit,
        _names(seen),
        _names(unseen),
        severities,
        corrupt_prob,
        eps,
        width,
        blocks,
        epochs,
        batch_size,
        lr,
        None if quantized is None else os.fspath(quantized),
        seed,
        os.fspath(out),
        overwrite,
        _Progress() if progress else None,
    )
    return Report(json.loads(text))


calibrate.__doc__ = (calibrate.__doc__ or "") + _SELECTION_DOC.replace(
    """        out: run directory for run.json and samples.jsonl [default: None, a temporary one];
            an interrupted run with the same settings resumes there.
""",
    "",
)
