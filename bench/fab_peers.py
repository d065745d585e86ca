#!/usr/bin/env python3
"""FAB against its peers: `faultline margins` (FAB L∞, 5 restarts × 100 steps, its defaults)
next to torchattacks' FAB and, where installed, AutoAttack's `FABAttack_PT`, on the same
images of the same ONNX model, one thread each, rounds alternated; prints each one's time,
the ratio to faultline, and the mean and median L∞ margin each finds.

Usage (from the repository root, with the peer virtual environment of bench/peer_pytorch.py):

    ../venv-peer/bin/pip install torchattacks onnx2torch          # once
    ../venv-peer/bin/pip install git+https://github.com/fra31/auto-attack   # optional
                                                    # (tested at commit a392200)
    ../venv-peer/bin/python bench/fab_peers.py [--faultline target/release/faultline] \
        [--rounds 2] [--limit 100] [--peers torchattacks,autoattack]

Same work: faultline's minimum-norm FAB runs every restart on every clean-correct image and
keeps the smallest adversarial point. The peers' own `perturb` stops restarting an image at
its first success within `eps`, so instead each peer's `attack_single_run` (the whole FAB
iteration, 100 steps) is called 5 times on all images, restart 0 from the clean image and
restarts 1–4 from random starts at radius `eps`/2 = 0.15 (`eps` = 0.3, faultline's default
start radius), α_max 0.1, η 1.05, β 0.9 (both libraries' and faultline's defaults); an image's
margin is the smallest L∞ distance over the restarts whose point the model misclassifies.
The images are those faultline picked (`--limit` is class-stratified), read back from its
samples.jsonl, from the same MNIST IDX file; the model is the ONNX file converted with
onnx2torch, checked against faultline's clean logits. Timing: faultline's whole process
(wall and CPU), the peers' attack loop alone (wall and CPU of the worker process, after
imports and conversion); the 1-minute load average before each run is printed.
"""

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

RESTARTS, STEPS, EPS = 5, 100, 0.3


def load_mnist(data, indices):
    import numpy as np

    with gzip.open(os.path.join(data, "t10k-images-idx3-ubyte.gz")) as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(data, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    x = raw[indices].astype(np.float32) / 255.0
    return x, labels[indices].astype(np.int64)


def worker(args):
    """One peer's FAB on the images listed in args.indices; prints one JSON line."""
    import warnings

    import numpy as np
    import onnx
    import torch
    from onnx2torch import convert

    torch.set_num_threads(1)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert(onnx.load(args.model)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    indices = [int(i) for i in args.indices.split(",")]
    x, y = load_mnist(args.data, indices)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad():
        logits = model(x)
    common = dict(norm="Linf", eps=EPS, steps=STEPS, n_restarts=1, alpha_max=0.1, eta=1.05,
                  beta=0.9, seed=0)
    if args.worker == "torchattacks":
        import torchattacks

        atk = torchattacks.FAB(model, verbose=False, multi_targeted=False, n_classes=10,
                               **common)
    else:
        from autoattack.fab_pt import FABAttack_PT

        common["n_iter"] = common.pop("steps")
        atk = FABAttack_PT(model, verbose=False, device="cpu", **common)
    best = torch.full((len(indices),), float("inf"))
    correct = logits.argmax(1) == y
    ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    todo = correct.nonzero().squeeze(1)
    for r in range(RESTARTS):
        adv = atk.attack_single_run(x[todo], y[todo], use_rand_start=r > 0)
        with torch.no_grad():
            fooled = model(adv).argmax(1) != y[todo]
        d = (adv - x[todo]).abs().flatten(1).max(1)[0]
        d = torch.where(fooled, d, torch.full_like(d, float("inf")))
        best[todo] = torch.minimum(best[todo], d)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    print(json.dumps({"wall": wall, "cpu": cpu, "margins": [float(v) for v in best],
                      "correct": [bool(v) for v in correct], "logits": logits.tolist()}))


def run_faultline(args, out):
    """faultline's FAB with one thread, timed as bench/fab_speed.py times it."""
    from fab_speed import run

    args.threads = 1
    wall, cpu, _, recs = run(args.faultline, args, out)
    return wall, cpu, [recs[i] for i in sorted(recs)]


def run_peer(args, peer, indices):
    cmd = [sys.executable, __file__, "--worker", peer, "--model", args.model, "--data",
           args.data, "--indices", ",".join(map(str, indices))]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"{peer} worker failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def stats(margins):
    finite = [m for m in margins if m != float("inf")]
    if not finite:
        return "no adversarial point found"
    return (f"mean {statistics.mean(finite):.5f}, median {statistics.median(finite):.5f} over "
            f"{len(finite)} images ({len(margins) - len(finite)} without a point)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faultline", default="target/release/faultline")
    ap.add_argument("--model", default="../shared/models/mnist/mnist-lenet5-clean.onnx")
    ap.add_argument("--data", default="../shared/data/mnist")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--peers", default="torchattacks,autoattack",
                    help="comma-separated; autoattack is skipped when not installed")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--indices", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    peers = [p for p in args.peers.split(",") if p]
    if "autoattack" in peers:
        probe = subprocess.run([sys.executable, "-c", "import autoattack.fab_pt"],
                               capture_output=True)
        if probe.returncode != 0:
            print("autoattack not installed: skipped")
            peers.remove("autoattack")
    times = {k: [] for k in ["faultline"] + peers}
    margins, indices, ref_logits = {}, None, None
    with tempfile.TemporaryDirectory(prefix="fab_peers") as tmp:
        for r in range(args.rounds):
            order = ["faultline"] + peers
            if r % 2 == 1:
                order.reverse()
            if indices is None:
                # The first run must be faultline's: it picks the images.
                order.remove("faultline")
                order.insert(0, "faultline")
            for who in order:
                load = os.getloadavg()[0]
                if who == "faultline":
                    wall, cpu, recs = run_faultline(args, os.path.join(tmp, f"fl{r}"))
                    indices = [rec["index"] for rec in recs]
                    ref_logits = [rec["logits"] for rec in recs]
                    m = [rec["input_margin"] if rec.get("success") and
                         rec["clean_prediction"] == rec["label"] else float("inf")
                         for rec in recs]
                else:
                    res = run_peer(args, who, indices)
                    wall, cpu = res["wall"], res["cpu"]
                    m = res["margins"]
                    diff = max(abs(a - b) for la, lb in zip(res["logits"], ref_logits)
                               for a, b in zip(la, lb))
                    if diff > 1e-3:
                        sys.exit(f"{who}: converted model's logits differ from faultline's "
                                 f"by {diff:.2e}")
                times[who].append((wall, cpu))
                margins[who] = m
                print(f"round {r + 1} {who}: {wall:7.1f} s wall, {cpu:7.1f} s CPU "
                      f"(load {load:.2f} before)", flush=True)
    print(f"images: {len(indices)}, FAB L∞ {RESTARTS} restarts × {STEPS} steps, 1 thread")
    fw = [t[0] for t in times["faultline"]]
    for who, ts in times.items():
        w, c = [t[0] for t in ts], [t[1] for t in ts]
        ratio = [a / b for a, b in zip(w, fw)]
        print(f"{who}: wall min {min(w):.1f} max {max(w):.1f} s, CPU min {min(c):.1f} "
              f"max {max(c):.1f} s; time / faultline's (per round) min {min(ratio):.2f} "
              f"max {max(ratio):.2f}; margins {stats(margins[who])}")


if __name__ == "__main__":
    main()
