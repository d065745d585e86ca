#!/usr/bin/env python3
"""Peer benchmark of attacks: torchattacks vs `faultline attack`, same images, same machine.

Two comparisons, each tool given the identical float32 images (uint8 / 255) and labels and the
same thread count:

  (a) PGD-20, L-inf, eps = 8/255, alpha = eps/4, no random start (torchattacks' `PGD`), on
      --n-pgd CIFAR-10 test images, against `faultline attack --attack pgd --steps 20`;
  (b) AutoAttack's standard ensemble (APGD-CE, APGD-T, FAB-T, Square; L-inf, eps = 8/255) on
      --n-aa images: torchattacks' `AutoAttack(model, norm='Linf', eps=8/255,
      version='standard', n_classes=10, seed=0)` against `faultline attack --preset standard`.
      (The original fra31/auto-attack package cannot be installed here: github.com is
      unreachable.)

Images: the 10,000 CIFAR-10 test JPEGs shipped in demo/cifar10-test (one folder per class,
class-ordered). A strided subset (every 10,000/n-th image, so the classes stay balanced) is
decoded once with Pillow and written as uint8 NHWC .npy files with their labels beside them
(`<stem>_labels.npy`), the format `faultline attack --data x.npy` reads; PyTorch gets the same
arrays as float32 NCHW / 255.

Model: the ONNX file (default demo/cifar10-resnet20.onnx), converted to PyTorch with onnx2torch
(as bench/peer_pytorch.py does) and checked against ONNX Runtime before anything is timed.

faultline runs with --no-sanity (its gradient-masking checks are extra work torchattacks does not
do) and --batch-size equal to --batch-size here; torchattacks gets the same batch size.
Differences that remain are the algorithms' own: faultline's PGD stops a sample at its first
success (torchattacks keeps stepping every sample for all 20 steps), and each ensemble stage of
both tools runs only on the points still robust.

Load: `uptime` before and after, and the machine-wide CPU time used by other processes during
each timed call (from /proc/stat), are printed; numbers taken on a busy machine are low by an
unknown amount.

Usage (from the repository root, after `cargo build --release`):

    ../venv-peer/bin/python bench/peer_attacks.py [--threads 2] [--n-pgd 1000] [--n-aa 100]
        [--batch-size 128] [--work /tmp/peer_attacks] [--json-out FILE] [--skip-aa]
"""

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

# onnx2torch's Slice indexes with a list; newer torch warns about it on every call.
warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


EPS_LABEL = "8/255"


def cpu_busy_s():
    """Seconds of CPU time used by everything on the machine (Linux /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            f0 = f.readline().split()
        hz = os.sysconf("SC_CLK_TCK")
        v = [int(x) for x in f0[1:9]]
        return (sum(v) - v[3] - v[4]) / float(hz)
    except (OSError, ValueError):
        return None


def own_cpu_s():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn):
    """Runs fn(); returns (result, wall seconds, cores' worth of other load)."""
    b0, o0, t0 = cpu_busy_s(), own_cpu_s(), time.perf_counter()
    r = fn()
    b1, o1, t1 = cpu_busy_s(), own_cpu_s(), time.perf_counter()
    other = None
    if b0 is not None and b1 is not None:
        other = max(0.0, (b1 - b0) - (o1 - o0)) / max(t1 - t0, 1e-9)
    return r, t1 - t0, other


def uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "uptime unavailable"


def subset(demo, n, work, stem):
    """Writes every (10000/n)-th image of the class-ordered folder as <stem>.npy (uint8 NHWC)
    and <stem>_labels.npy; returns (x uint8 NHWC, labels int64)."""
    import numpy as np
    from PIL import Image

    classes = sorted(d for d in os.listdir(demo) if os.path.isdir(os.path.join(demo, d)))
    files = []
    for c, name in enumerate(classes):
        d = os.path.join(demo, name)
        files += [(os.path.join(d, f), c) for f in sorted(os.listdir(d))
                  if f.lower().endswith((".jpg", ".jpeg", ".png"))]
    if n > len(files) or n <= 0:
        sys.exit("error: %d images asked, %d in %s" % (n, len(files), demo))
    stride = len(files) // n
    pick = files[::stride][:n]
    x = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8) for p, _ in pick])
    y = np.array([c for _, c in pick], dtype=np.int64)
    np.save(os.path.join(work, stem + ".npy"), x)
    np.save(os.path.join(work, stem + "_labels.npy"), y)
    return x, y


def torch_model(path, threads):
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    from onnx2torch import convert

    torch.set_num_threads(threads)
    m = onnx.load(path)
    # Symbolic batch dimension (as peer_pytorch.py does for fixed-batch exports).
    g = m.graph
    inits = {i.name for i in g.initializer}
    for v in [i for i in g.input if i.name not in inits] + list(g.output):
        shp = v.type.tensor_type.shape
        if len(shp.dim) > 0 and shp.dim[0].HasField("dim_value"):
            shp.dim[0].Clear()
            shp.dim[0].dim_param = "N"
    del g.value_info[:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert(m)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = [i.name for i in g.input if i.name not in inits][0]
    x = np.random.default_rng(0).random((8, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        a = model(torch.from_numpy(x)).numpy()
    b = sess.run(None, {name: x})[0]
    diff = float(abs(a - b).max())
    print("sanity: max |torch − onnxruntime| logit difference %.2e" % diff, file=sys.stderr)
    if diff > 1e-3:
        sys.exit("error: the converted model disagrees with ONNX Runtime")
    return model


def torch_robust(model, attack, x_u8, y, batch):
    """Runs a torchattacks attack in batches; returns the robust accuracy (adv prediction ==
    label)."""
    import numpy as np
    import torch

    x = torch.from_numpy(x_u8.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    yt = torch.from_numpy(y)
    robust = 0
    for s in range(0, len(y), batch):
        adv = attack(x[s:s + batch], yt[s:s + batch])
        with torch.no_grad():
            robust += int((model(adv).argmax(1) == yt[s:s + batch]).sum())
    return robust / len(y)


def faultline_run(exe, model, data, out, threads, batch, extra):
    cmd = [exe, "--threads", str(threads), "attack", "--model", model, "--data", data,
           "--eps", EPS_LABEL, "--batch-size", str(batch), "--out", out, "--overwrite",
           "--no-sanity"] + extra
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("error: %s\n%s" % (" ".join(cmd), p.stderr.strip()[-2000:]))
    with open(os.path.join(out, "run.json")) as f:
        r = json.load(f)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "demo", "cifar10-resnet20.onnx"))
    ap.add_argument("--demo", default=os.path.join(ROOT, "demo", "cifar10-test"))
    ap.add_argument("--faultline", default=os.path.join(ROOT, "target", "release", "faultline"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-pgd", type=int, default=1000)
    ap.add_argument("--n-aa", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--work", default="/tmp/peer_attacks")
    ap.add_argument("--json-out")
    ap.add_argument("--eps", default="8/255", help="L-inf radius for both tasks, e.g. 8/255 or 1/255")
    ap.add_argument("--skip-aa", action="store_true", help="only the PGD comparison")
    a = ap.parse_args()
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(a.threads)
    if not os.path.exists(a.faultline):
        sys.exit("error: %s not found: run `cargo build --release` first" % a.faultline)
    os.makedirs(a.work, exist_ok=True)

    import torch
    import torchattacks

    load_before = uptime()
    print("load before: " + load_before, file=sys.stderr)
    model = torch_model(a.model, a.threads)
    rows = []

    # (a) PGD-20.
    x, y = subset(a.demo, a.n_pgd, a.work, "pgd")
    global EPS_LABEL
    EPS_LABEL = a.eps
    num, _, den = a.eps.partition("/")
    eps = float(num) / float(den or 1)
    atk = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=20, random_start=False)
    acc_t, sec_t, oth_t = timed(lambda: torch_robust(model, atk, x, y, a.batch_size))
    print("torchattacks PGD-20: %.1f s" % sec_t, file=sys.stderr)
    r, sec_f, oth_f = timed(lambda: faultline_run(
        a.faultline, a.model, os.path.join(a.work, "pgd.npy"), os.path.join(a.work, "fl-pgd"),
        a.threads, a.batch_size, ["--attack", "pgd", "--steps", "20"]))
    print("faultline PGD-20: %.1f s" % sec_f, file=sys.stderr)
    rows.append(dict(task="PGD-20 Linf %s (n=%d)" % (a.eps, a.n_pgd), n=a.n_pgd,
                     torch_s=sec_t, torch_robust=acc_t, torch_other_load=oth_t,
                     faultline_s=sec_f, faultline_robust=r["robust_accuracy"],
                     faultline_other_load=oth_f, clean_accuracy=r["clean_accuracy"],
                     faultline_passes=(r["runtime"]["forward_passes"],
                                       r["runtime"]["backward_passes"]),
                     torch_passes=(21 * a.n_pgd, 20 * a.n_pgd)))

    # (b) AutoAttack standard.
    if not a.skip_aa:
        x, y = subset(a.demo, a.n_aa, a.work, "aa")
        torch.manual_seed(0)
        atk = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard",
                                      n_classes=10, seed=0)
        acc_t, sec_t, oth_t = timed(lambda: torch_robust(model, atk, x, y, a.batch_size))
        print("torchattacks AutoAttack: %.1f s" % sec_t, file=sys.stderr)
        r, sec_f, oth_f = timed(lambda: faultline_run(
            a.faultline, a.model, os.path.join(a.work, "aa.npy"), os.path.join(a.work, "fl-aa"),
            a.threads, a.batch_size, ["--preset", "standard"]))
        print("faultline --preset standard: %.1f s" % sec_f, file=sys.stderr)
        rows.append(dict(task="AutoAttack standard Linf %s (n=%d)" % (a.eps, a.n_aa), n=a.n_aa,
                         torch_s=sec_t, torch_robust=acc_t, torch_other_load=oth_t,
                         faultline_s=sec_f, faultline_robust=r["robust_accuracy"],
                         faultline_other_load=oth_f, clean_accuracy=r["clean_accuracy"],
                         faultline_passes=(r["runtime"]["forward_passes"],
                                           r["runtime"]["backward_passes"]),
                         torch_passes=None, faultline_stages=r.get("stages")))

    load_after = uptime()
    print("")
    print("threads %d, batch size %d, torch %s, torchattacks %s, CPU cores %s"
          % (a.threads, a.batch_size, torch.__version__, torchattacks.__version__,
             os.cpu_count()))
    print("load before: " + load_before)
    print("load after:  " + load_after)
    print("")
    head = ("| task | torchattacks s | faultline s | faultline faster by × | robust acc. "
            "torchattacks | robust acc. faultline | passes fwd/bwd torchattacks / faultline | "
            "other load (cores) torch / faultline |")
    print(head)
    print("|" + "---|" * 8)
    for w in rows:
        w["speedup"] = w["torch_s"] / w["faultline_s"]
        fmt = lambda v: "n/a" if v is None else "%.2f" % v
        tp = "%d/%d" % w["torch_passes"] if w["torch_passes"] else "n/a"
        print("| %s | %.1f | %.1f | %.2f | %.3f | %.3f | %s / %d/%d | %s / %s |" % (
            w["task"], w["torch_s"], w["faultline_s"], w["speedup"], w["torch_robust"],
            w["faultline_robust"], tp, w["faultline_passes"][0], w["faultline_passes"][1],
            fmt(w["torch_other_load"]), fmt(w["faultline_other_load"])))
    out = dict(threads=a.threads, batch_size=a.batch_size, torch=torch.__version__,
               torchattacks=torchattacks.__version__, load_before=load_before,
               load_after=load_after, rows=rows)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
