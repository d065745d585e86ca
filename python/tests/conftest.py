"""Shared fixtures: the demo model and data of the repository, the CLI binary to compare with."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import faultline

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "demo" / "cifar10-resnet20.onnx"
DEMO_DATA = REPO / "demo" / "cifar10-test"


@pytest.fixture(scope="session")
def cli():
    """The `faultline` binary: FAULTLINE_CLI (then it must exist; .ci/run sets it), else the
    release build of this checkout, else the tests comparing with it are skipped."""
    given = os.environ.get("FAULTLINE_CLI")
    path = Path(given) if given else REPO / "target" / "release" / "faultline"
    if not path.is_file():
        if given:
            pytest.fail(f"FAULTLINE_CLI={given} does not exist")
        pytest.skip("no faultline binary: build it with cargo build --release or set FAULTLINE_CLI")

    def run(*args, check=True):
        p = subprocess.run(
            [str(path), *map(str, args)],
            capture_output=True,
            text=True,
            env={**os.environ, "FAULTLINE_STATUS_SECS": "1000"},
        )
        if check and p.returncode != 0:
            raise AssertionError(f"faultline {' '.join(map(str, args))} failed: {p.stderr}")
        return p

    return run


@pytest.fixture(scope="session")
def model():
    return faultline.Model(DEMO_MODEL)


@pytest.fixture(scope="session")
def batch():
    """100 demo images (10 per class) and their labels."""
    x, y = next(iter(faultline.load_data(DEMO_DATA, limit=100, batch_size=100)))
    return x, y


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def read_json(path):
    import json

    return json.loads(Path(path).read_text())


def read_jsonl(path):
    import json

    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def assert_close(a, b, tol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)
