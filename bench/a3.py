#!/usr/bin/env python3
"""`--preset fast` (A3-style) against `--preset standard` (AutoAttack's standard version) on the
same models and images: robust accuracy, forward and backward passes, wall time, and the samples
one preset breaks and the other does not.

    cargo build --release
    python3 bench/a3.py [--out runs/bench-a3] [--presets standard,fast] [--configs r20-1,...]

Configurations (issue 25): the shared ResNet-20 and ResNet-32 on the 100 CIFAR-10 test images of
`shared/data/cifar10/test_batch_first100.bin` (class-stratified `--limit 100`) at L∞ 1/255 and
2/255, and the adversarially trained LeNet-5 on MNIST (stratified `--limit 100`) at L∞ 0.3. Each
run is an ordinary `faultline attack` run directory under `--out` (sanity checks on), so a killed
benchmark resumes and a finished run is only re-read; `--fresh` reruns. Passes are faultline's
per-sample counts from run.json: the totals (clean pass and sanity checks included) and the
stages' own (`stages[*].forward/backward`). Wall times are noisy on a shared machine; passes are
the measure.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
CIFAR = "data/cifar10/test_batch_first100.bin"
MNIST = "data/mnist"

# name: (model, data, eps)
CONFIGS = {
    "r20-1": ("models/cifar10/cifar10-resnet20.onnx", CIFAR, "1/255"),
    "r20-2": ("models/cifar10/cifar10-resnet20.onnx", CIFAR, "2/255"),
    "r32-1": ("models/cifar10/cifar10-resnet32.onnx", CIFAR, "1/255"),
    "r32-2": ("models/cifar10/cifar10-resnet32.onnx", CIFAR, "2/255"),
    "lenet-0.3": ("models/mnist/mnist-lenet5-advtrained.onnx", MNIST, "0.3"),
}


def run(binary, shared, out, name, preset, fresh, limit):
    model, data, eps = CONFIGS[name]
    d = os.path.join(out, f"{name}-{preset}")
    cmd = [
        binary, "attack", "--preset", preset,
        "-m", os.path.join(shared, model), "-d", os.path.join(shared, data),
        "--limit", str(limit), "--eps", eps, "-o", d,
    ]
    if fresh:
        cmd.append("--overwrite")
    if fresh or not os.path.exists(os.path.join(d, "run.json")):
        print("$ " + " ".join(cmd), file=sys.stderr)
        t = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(f"  {time.time() - t:.1f} s", file=sys.stderr)
    with open(os.path.join(d, "run.json")) as f:
        report = json.load(f)
    with open(os.path.join(d, "samples.jsonl")) as f:
        broken = {}
        for line in f:
            r = json.loads(line)
            broken[r["index"]] = r["success"]
    return report, broken


def summary(report):
    rt = report["runtime"]
    stages = report.get("stages") or []
    return {
        "robust": report["robust_accuracy"],
        "fwd": rt["forward_passes"],
        "bwd": rt["backward_passes"],
        "stage_fwd": sum(s["forward"] for s in stages),
        "stage_bwd": sum(s["backward"] for s in stages),
        "secs": rt["seconds"],
        "stages": stages,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/faultline"))
    ap.add_argument("--shared", default=SHARED, help="the shared models and data folder")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs/bench-a3"))
    ap.add_argument("--presets", default="standard,fast", help="the reference first")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--fresh", action="store_true", help="rerun finished runs")
    ap.add_argument("--json-out", help="also write every figure to this file")
    a = ap.parse_args()
    presets = a.presets.split(",")
    rows = []
    for name in a.configs.split(","):
        res = {p: run(a.bin, a.shared, a.out, name, p, a.fresh, a.limit) for p in presets}
        s = {p: summary(r) for p, (r, _) in res.items()}
        ref, ref_broken = presets[0], res[presets[0]][1]
        for p in presets[1:]:
            b = res[p][1]
            s[p]["only_" + ref] = sorted(i for i in ref_broken if ref_broken[i] and not b.get(i))
            s[p]["only_" + p] = sorted(i for i in b if b[i] and not ref_broken.get(i))
        rows.append((name, s))
    head = f"{'config':<10} {'preset':<9} {'robust':>7} {'forward':>9} {'backward':>9} " \
           f"{'total':>9} {'stages':>9} {'ratio':>6} {'wall s':>7}  disagreement"
    print(head)
    print("-" * len(head))
    for name, s in rows:
        ref = s[presets[0]]
        for p in presets:
            x = s[p]
            tot = x["fwd"] + x["bwd"]
            ratio = tot / max(ref["fwd"] + ref["bwd"], 1)
            dis = ""
            if p != presets[0]:
                dis = f"broken only by {presets[0]}: {x['only_' + presets[0]]}; " \
                      f"only by {p}: {x['only_' + p]}"
            print(f"{name:<10} {p:<9} {100 * x['robust']:6.1f}% {x['fwd']:>9} {x['bwd']:>9} "
                  f"{tot:>9} {x['stage_fwd'] + x['stage_bwd']:>9} {ratio:6.3f} "
                  f"{x['secs']:7.1f}  {dis}")
    print("\ntotal = forward + backward passes of the whole run (clean pass and sanity checks "
          "included); stages = the attack stages' own; ratio = total / the first preset's total")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({n: s for n, s in rows}, f, indent=1)


if __name__ == "__main__":
    main()
