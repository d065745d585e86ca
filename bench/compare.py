#!/usr/bin/env python3
"""faultline against PyTorch and ONNX Runtime on the three benchmark networks, in one run.

    ../venv-peer/bin/python bench/make_nets.py          # once: writes bench/nets/*.onnx
    cargo build --release
    ../venv-peer/bin/python bench/compare.py [--threads 2] [--iters 5] [--networks ...]

For each network (ResNet-20 CIFAR, WideResNet-16-4 CIFAR, ResNet-18 at 224x224) it runs
`faultline bench --json` and then `bench/peer_pytorch.py --json` on the same ONNX file back to
back, and prints images per second for every batch size with the ratios the engine issue
tracks: forward + input gradient over PyTorch's best layout, forward over ONNX Runtime, and
peak resident memory at batch 128 against PyTorch's (the channels_last gradient process).
`--json-out FILE` keeps everything. Ratios are only meaningful when the load figures printed
with them are low (see bench/README.md).
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NETWORKS = {
    "resnet20": os.path.join(ROOT, "..", "shared", "models", "cifar10", "cifar10-resnet20.onnx"),
    "wrn16-4": os.path.join(HERE, "nets", "wrn16-4.onnx"),
    "resnet18-224": os.path.join(HERE, "nets", "resnet18-224.onnx"),
}


def faultline(args, model, batches):
    cmd = [args.faultline, "--threads", str(args.threads), "bench", "--model", model,
           "--batch-size", ",".join(map(str, batches)), "--iters", str(args.iters), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def peer(args, model, batches):
    cmd = [sys.executable, os.path.join(HERE, "peer_pytorch.py"), "--model", model,
           "--batch-sizes", ",".join(map(str, batches)), "--threads", str(args.threads),
           "--iters", str(args.iters), "--max-seconds", str(args.max_seconds), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def ratio(a, b):
    return a / b if a and b else None


def fmt(v, w, d=1):
    return ("-" if v is None else f"{v:.{d}f}").rjust(w)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--batch-sizes", default="1,8,32,128,512")
    ap.add_argument("--max-batch-224", type=int, default=128,
                    help="largest batch timed for the 224x224 network [128]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--max-seconds", type=float, default=8.0)
    ap.add_argument("--faultline", default=os.path.join(ROOT, "target", "release", "faultline"))
    ap.add_argument("--json-out", metavar="PATH")
    args = ap.parse_args()
    batches = sorted(int(b) for b in args.batch_sizes.split(","))
    report = {}
    for net in args.networks.split(","):
        model = NETWORKS[net]
        bs = [b for b in batches if not (net.endswith("224") and b > args.max_batch_224)]
        print(f"== {net} ({model}), {args.threads} threads", flush=True)
        f = faultline(args, model, bs)
        p = peer(args, model, bs)
        report[net] = {"faultline": f, "peers": p}
        cols = ["batch", "fl fwd", "fl grad", "torch fwd*", "torch grad*", "ORT fwd",
                "grad/torch", "fwd/ORT", "fl RSS", "torch RSS"]
        print("".join(c.rjust(12) for c in cols))
        for fr in f["results"]:
            b = fr["batch_size"]
            pr = next(r for r in p["results"] if r["batch_size"] == b)
            tf = max(filter(None, [pr.get("torch_nchw_forward_img_per_s"),
                                   pr.get("torch_cl_forward_img_per_s")]), default=None)
            tg = max(filter(None, [pr.get("torch_nchw_input_grad_img_per_s"),
                                   pr.get("torch_cl_input_grad_img_per_s")]), default=None)
            ort = pr.get("ort_forward_img_per_s")
            trss = pr.get("torch_cl_input_grad_peak_rss_mb")
            print(f"{b:>12}" + fmt(fr["forward_img_per_s"], 12) + fmt(fr["input_grad_img_per_s"], 12)
                  + fmt(tf, 12) + fmt(tg, 12) + fmt(ort, 12)
                  + fmt(ratio(fr["input_grad_img_per_s"], tg), 12, 2)
                  + fmt(ratio(fr["forward_img_per_s"], ort), 12, 2)
                  + fmt(fr.get("peak_rss_mib"), 12, 0) + fmt(trss, 12, 0))
        busy = p.get("other_cpu_cores_busy", {})
        print("(* best of NCHW and channels_last; RSS in MiB, torch = channels_last grad process;"
              f" other processes' load while the peers ran: "
              f"{max(filter(None, busy.values()), default=0):.2f} cores,"
              f" load average {p['load_average_before'][0]:.1f} -> {p['load_average_after'][0]:.1f})",
              flush=True)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
