"""The Python bindings' overhead per call: `Model.logits` on a batch of 128 demo-shaped images
against `faultline bench` (the engine timed from Rust, same model, same batch size, median of
its repetitions), in alternated rounds so both see the same machine load.

    python bench/python_overhead.py [--rounds 4] [--iters 7] [--cli target/release/faultline]

Prints images/s of each per round and the ratio Python / CLI (1.0: no overhead), with its min
and max over the rounds.
"""

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

import faultline

REPO = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "demo" / "cifar10-resnet20.onnx"))
    ap.add_argument("--cli", default=str(REPO / "target" / "release" / "faultline"))
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--iters", type=int, default=7)
    a = ap.parse_args()
    model = faultline.Model(a.model)
    c, h, w = model.image_shape
    x = np.random.default_rng(0).random((a.batch_size, c, h, w), dtype=np.float32)
    model.logits(x)  # warm-up, as `faultline bench` does
    ratios = []
    print(f"batch {a.batch_size}, {a.iters} timed calls per round (median)")
    print(f"{'round':>5}  {'cli img/s':>10}  {'python img/s':>12}  {'ratio':>6}")
    for r in range(a.rounds):
        out = subprocess.run(
            [a.cli, "bench", "-m", a.model, "--batch-size", str(a.batch_size),
             "--iters", str(a.iters), "--json"],
            check=True, capture_output=True, text=True,
        ).stdout
        cli = json.loads(out)["forward_img_per_s"]
        times = []
        for _ in range(a.iters):
            t = time.perf_counter()
            model.logits(x)
            times.append(time.perf_counter() - t)
        py = a.batch_size / statistics.median(times)
        ratios.append(py / cli)
        print(f"{r + 1:>5}  {cli:>10.1f}  {py:>12.1f}  {py / cli:>6.3f}")
    print(
        f"ratio python/cli: median {statistics.median(ratios):.3f}, "
        f"min {min(ratios):.3f}, max {max(ratios):.3f}"
    )


if __name__ == "__main__":
    main()
