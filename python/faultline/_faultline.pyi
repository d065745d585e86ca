"""Type stubs of the native module. The public API, with defaults and docstrings, is
``faultline/__init__.py``; these functions take every argument explicitly."""

from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Radius = Union[float, str]
_Progress = Optional[Callable[[str, str, int, int], None]]
_F32 = npt.NDArray[np.float32]
_I64 = npt.NDArray[np.int64]

class Model:
    def __init__(
        self,
        path: str,
        mean: Optional[Sequence[float]],
        std: Optional[Sequence[float]],
        threads: Optional[int],
    ) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def image_shape(self) -> Optional[Tuple[int, int, int]]: ...
    def card_json(self) -> Optional[str]: ...
    def tap_names(self) -> List[str]: ...
    def logits(self, x: _F32) -> _F32: ...
    def input_grad(self, x: _F32, y: _I64, loss: str) -> Tuple[_F32, _F32]: ...
    def features(self, x: _F32, tap: str) -> _F32: ...

class Data:
    @staticmethod
    def open(
        path: str,
        format: Optional[str],
        classes: Optional[str],
        labels: Optional[str],
        split: str,
        resize: Optional[int],
        center_crop: Optional[int],
    ) -> "Data": ...
    @staticmethod
    def from_arrays(x: _F32, y: _I64, classes: Optional[Sequence[str]]) -> "Data": ...
    def __len__(self) -> int: ...
    @property
    def image_shape(self) -> Tuple[int, int, int]: ...
    @property
    def class_names(self) -> List[str]: ...
    @property
    def path(self) -> str: ...
    def select(
        self, limit: Optional[int], subset: str, seed: int, indices: Optional[str]
    ) -> List[int]: ...
    def read(self, indices: Sequence[int]) -> Tuple[_F32, List[int]]: ...

def eval_run(
    model: Model,
    data: Data,
    limit: Optional[int],
    subset: str,
    subset_seed: int,
    indices: Optional[str],
    batch_size: int,
    corruptions: Optional[str],
    severities: str,
    seed: int,
    table: Optional[str],
    baseline: Optional[str],
    out: str,
    overwrite: bool,
    progress: _Progress,
) -> str: ...
def attack_run(
    model: Model,
    data: Data,
    limit: Optional[int],
    subset: str,
    subset_seed: int,
    indices: Optional[str],
    attack: str,
    preset: Optional[str],
    norm: Optional[str],
    eps: Sequence[_Radius],
    steps: Optional[int],
    step_size: Optional[_Radius],
    restarts: Optional[int],
    random_start: bool,
    loss: Optional[str],
    seed: int,
    target: Optional[int],
    sanity: bool,
    batch_size: int,
    out: str,
    overwrite: bool,
    progress: _Progress,
) -> Tuple[str, str]: ...
def classwise_run(
    model: Model,
    data: Data,
    limit: Optional[int],
    subset: str,
    subset_seed: int,
    indices: Optional[str],
    attack: Optional[str],
    eps: Sequence[_Radius],
    steps: Optional[int],
    targeted: bool,
    corruptions: Optional[str],
    severities: str,
    seed: int,
    batch_size: int,
    out: str,
    overwrite: bool,
    progress: _Progress,
) -> str: ...
def margins_run(
    model: Model,
    data: Data,
    limit: Optional[int],
    subset: str,
    subset_seed: int,
    indices: Optional[str],
    attack: str,
    norm: Optional[str],
    eps: Optional[_Radius],
    steps: Optional[int],
    restarts: Optional[int],
    attack_subset: Optional[int],
    estimate_size: int,
    pseudo_margin: Optional[str],
    fit_fraction: float,
    epochs: int,
    lr: float,
    pseudo_loss: str,
    recall: float,
    bootstrap: int,
    seed: int,
    batch_size: int,
    out: str,
    overwrite: bool,
    progress: _Progress,
) -> str: ...
def corrupt(x: _F32, name: str, severity: int, seed: int, table: Optional[str]) -> _F32: ...
def calibrate_run(
    model: Model,
    data: Data,
    test: Data,
    limit: Optional[int],
    subset: str,
    subset_seed: int,
    indices: Optional[str],
    test_limit: Optional[int],
    seen: List[str],
    unseen: List[str],
    severities: str,
    corrupt_prob: float,
    eps: _Radius,
    width: int,
    blocks: int,
    epochs: int,
    batch_size: int,
    lr: float,
    quantized: Optional[str],
    seed: int,
    out: str,
    overwrite: bool,
    progress: _Progress,
) -> str: ...
def attack_names() -> List[str]: ...
def corruption_names() -> List[str]: ...
