#!/usr/bin/env python3
"""Forward speed of a ViT-S/16-like and a ConvNeXt-T-like model at 224 px, batch 8: faultline
next to ONNX Runtime and PyTorch, in alternated rounds.

    ../venv-peer/bin/python bench/arch_speed.py [--rounds 3] [--threads 2] [--iters 5]

The models are torchvision's `vit_b_16` architecture shrunk to ViT-S/16 (12 layers, width 384,
6 heads, MLP 1536; 22 M parameters) and `convnext_tiny` (28 M parameters), random-initialised
under a fixed seed, 1000 classes, exported once with the TorchScript-based exporter (opset 17,
free batch) to bench/nets/. Each round times, back to back and alternating which goes first:
`faultline bench --model M --batch-size 8 --json` (forward images/s, median of --iters), ONNX
Runtime (CPU provider, intra-op threads = --threads, sequential, all graph optimisations) and
PyTorch (the original module, eval, no_grad, torch.set_num_threads(--threads)), each as
batch / median seconds per call. It prints the ratios faultline/ORT and faultline/PyTorch per
round and their median [min, max], with the load average before and after (ratios mean
little when other work competes for the cores).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NETS = os.path.join(HERE, "nets")


def build(name):
    import torch
    import torchvision.models as tvm
    torch.manual_seed(0)
    if name == "vit_s16":
        return tvm.VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=6,
                                     hidden_dim=384, mlp_dim=1536, num_classes=1000)
    return tvm.convnext_tiny()


def export(name):
    import torch
    path = os.path.join(NETS, f"{name}-224.onnx")
    if not os.path.exists(path):
        os.makedirs(NETS, exist_ok=True)
        m = build(name).eval()
        x = torch.rand(1, 3, 224, 224)
        torch.onnx.export(m, (x,), path, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["logits"],
                          dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    return path


def timed(fn, iters, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def faultline(args, path):
    cmd = [args.faultline, "--threads", str(args.threads), "bench", "--model", path,
           "--batch-size", str(args.batch), "--iters", str(args.iters), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["forward_img_per_s"]


def peers(args, name, path):
    """ORT and PyTorch images/s, in a subprocess so that their threads do not linger."""
    code = f"""
import json, sys, numpy as np, torch, onnxruntime as ort
sys.path.insert(0, {HERE!r})
from arch_speed import build, timed
torch.set_num_threads({args.threads})
x = np.random.default_rng(0).random(({args.batch}, 3, 224, 224), dtype=np.float32)
so = ort.SessionOptions(); so.intra_op_num_threads = {args.threads}; so.inter_op_num_threads = 1
s = ort.InferenceSession({path!r}, so, providers=["CPUExecutionProvider"])
n = s.get_inputs()[0].name
t_ort = timed(lambda: s.run(None, {{n: x}}), {args.iters})
m = build({name!r}).eval(); xt = torch.from_numpy(x)
with torch.no_grad():
    y_t = m(xt).numpy()
    t_pt = timed(lambda: m(xt), {args.iters})
y_o = s.run(None, {{n: x}})[0]
print(json.dumps({{"ort": {args.batch} / t_ort, "torch": {args.batch} / t_pt,
                  "ort_vs_torch": float(np.abs(y_o - y_t).max() / np.abs(y_t).max())}}))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="vit_s16,convnext_t")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--faultline", default=os.path.join(ROOT, "target", "release", "faultline"))
    args = ap.parse_args()
    for name in args.models.split(","):
        path = export(name)
        print(f"== {name} ({path}), batch {args.batch}, {args.threads} threads", flush=True)
        rows = []
        for r in range(args.rounds):
            load0 = os.getloadavg()[0]
            if r % 2 == 0:
                f = faultline(args, path)
                p = peers(args, name, path)
            else:
                p = peers(args, name, path)
                f = faultline(args, path)
            load1 = os.getloadavg()[0]
            rows.append((f / p["ort"], f / p["torch"]))
            print(f"round {r + 1}: faultline {f:.2f} img/s, ORT {p['ort']:.2f}, PyTorch "
                  f"{p['torch']:.2f}; faultline/ORT {rows[-1][0]:.2f}, faultline/PyTorch "
                  f"{rows[-1][1]:.2f} (load {load0:.1f} -> {load1:.1f}; ORT vs PyTorch "
                  f"logits {p['ort_vs_torch']:.1e})", flush=True)
        for i, k in enumerate(["faultline/ORT", "faultline/PyTorch"]):
            vs = sorted(x[i] for x in rows)
            print(f"{k}: median {statistics.median(vs):.2f} [min {vs[0]:.2f}, max {vs[-1]:.2f}]")


if __name__ == "__main__":
    main()
