#!/usr/bin/env python3
"""faultline against PyTorch and ONNX Runtime on the benchmark networks, in one run.

    ../venv-peer/bin/python bench/make_nets.py          # once: writes bench/nets/*.onnx
    cargo build --release
    ../venv-peer/bin/python bench/compare.py [--threads 2] [--iters 5] [--networks ...]

For each network (ResNet-20 CIFAR, WideResNet-16-4 CIFAR, ResNet-18 and ResNet-50 at 224x224) it runs
`faultline bench --json` and then `bench/peer_pytorch.py --json` on the same ONNX file back to
back, and prints images per second for every batch size with the ratios the engine issue
tracks: forward + input gradient over PyTorch's best layout, forward over ONNX Runtime, and
peak resident memory at batch 128 against PyTorch's (the channels_last gradient process).
`--json-out FILE` keeps everything. Ratios are only meaningful when the load figures printed
with them are low (see bench/README.md).

`--rounds R` repeats each network's pair of runs R times, alternating which side goes first,
and ends with the median and range of each ratio over the rounds: on a virtual machine whose
speed drifts by minutes (this project's 2-vCPU machine swings by up to 1.7x with nothing else
running) one round can catch the two sides in different phases, the median of alternated
rounds much less so.
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
    "resnet50-224": os.path.join(HERE, "nets", "resnet50-224.onnx"),
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


def table(f, p):
    """Prints one round's table; returns its ratios per batch size."""
    cols = ["batch", "fl fwd", "fl grad", "torch fwd*", "torch grad*", "ORT fwd",
            "grad/torch", "fwd/ORT", "fl RSS", "torch RSS"]
    print("".join(c.rjust(12) for c in cols))
    ratios = {}
    for fr in f["results"]:
        b = fr["batch_size"]
        pr = next(r for r in p["results"] if r["batch_size"] == b)
        tf = max(filter(None, [pr.get("torch_nchw_forward_img_per_s"),
                               pr.get("torch_cl_forward_img_per_s")]), default=None)
        tg = max(filter(None, [pr.get("torch_nchw_input_grad_img_per_s"),
                               pr.get("torch_cl_input_grad_img_per_s")]), default=None)
        ort = pr.get("ort_forward_img_per_s")
        trss = pr.get("torch_cl_input_grad_peak_rss_mb")
        gt = ratio(fr["input_grad_img_per_s"], tg)
        fo = ratio(fr["forward_img_per_s"], ort)
        ratios[b] = {"grad/torch": gt, "fwd/ORT": fo}
        print(f"{b:>12}" + fmt(fr["forward_img_per_s"], 12) + fmt(fr["input_grad_img_per_s"], 12)
              + fmt(tf, 12) + fmt(tg, 12) + fmt(ort, 12) + fmt(gt, 12, 2) + fmt(fo, 12, 2)
              + fmt(fr.get("peak_rss_mib"), 12, 0) + fmt(trss, 12, 0))
    busy = p.get("other_cpu_cores_busy", {})
    print("(* best of NCHW and channels_last; RSS in MiB, torch = channels_last grad process;"
          f" other processes' load while the peers ran: "
          f"{max(filter(None, busy.values()), default=0):.2f} cores,"
          f" load average {p['load_average_before'][0]:.1f} -> {p['load_average_after'][0]:.1f})",
          flush=True)
    return ratios


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
    ap.add_argument("--rounds", type=int, default=1,
                    help="pairs of runs per network, alternating which side goes first [1]")
    args = ap.parse_args()
    batches = sorted(int(b) for b in args.batch_sizes.split(","))
    report = {}
    for net in args.networks.split(","):
        model = NETWORKS[net]
        bs = [b for b in batches if not (net.endswith("224") and b > args.max_batch_224)]
        print(f"== {net} ({model}), {args.threads} threads", flush=True)
        rounds = []
        for r in range(args.rounds):
            if r % 2 == 0:
                f = faultline(args, model, bs)
                p = peer(args, model, bs)
            else:
                p = peer(args, model, bs)
                f = faultline(args, model, bs)
            rounds.append({"faultline": f, "peers": p})
            if args.rounds > 1:
                print(f"-- round {r + 1} of {args.rounds}", flush=True)
            ratios = table(f, p)
            for b, rr in ratios.items():
                for k, v in rr.items():
                    rounds[-1].setdefault("ratios", {}).setdefault(str(b), {})[k] = v
        report[net] = rounds[0] if args.rounds == 1 else {"rounds": rounds}
        if args.rounds > 1:
            print("median [min, max] over the rounds:")
            print("".join(c.rjust(12) for c in ["batch"]) + "grad/torch".rjust(26)
                  + "fwd/ORT".rjust(26))
            for b in rounds[0]["ratios"]:
                line = f"{b:>12}"
                for k in ("grad/torch", "fwd/ORT"):
                    vs = sorted(x["ratios"][b][k] for x in rounds if x["ratios"][b][k] is not None)
                    if vs:
                        med = vs[len(vs) // 2] if len(vs) % 2 else (vs[len(vs) // 2 - 1] + vs[len(vs) // 2]) / 2
                        line += f"{med:.2f} [{vs[0]:.2f}, {vs[-1]:.2f}]".rjust(26)
                    else:
                        line += "-".rjust(26)
                print(line, flush=True)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
