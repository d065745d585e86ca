#!/usr/bin/env python3
"""Fine-tuning throughput: `faultline finetune` against PyTorch, same model, data, batch, threads.

For each mode it fine-tunes the ONNX model for a fixed number of optimizer steps in both tools
and prints images per second of each and their ratio (faultline / torch):

  plain   one SGD step per batch: forward, cross-entropy, backward, step;
  pgd     PGD-3 adversarial training: per batch, a PGD attack (L-inf, eps = 2/255, step size
          alpha = 2.5 * eps / 3, 3 steps, random start uniform in the eps-ball, clipped to
          [0, 1]) against the current weights in inference mode, then one SGD step on the
          adversarial batch in training mode.

PyTorch side: the ONNX graph converted with onnx2torch (same ops, same weights; checked against
ONNX Runtime before anything is timed), `torch.set_num_threads(T)`, SGD(lr 0.002, momentum 0.9,
weight_decay 5e-4 on weights, none on biases, as faultline's SGD; nesterov False; constant
learning rate; no augmentation) on the mean cross-entropy, batches of B images. Each
(round, mode) runs in its own subprocess, which does `--warmup` untimed steps and then times
`--steps` steps (wall clock around the loop). Images: the first (warmup + steps) * B images of
the CIFAR-10 training folder taken class-balanced (round-robin over the class folders in sorted
order, files in sorted order), decoded once with Pillow before anything is timed and cached as
uint8 NHWC .npy in --work; the worker converts them to float32 NCHW / 255 before timing.

faultline side: the binary runs as a subprocess,

    faultline finetune -m MODEL -d DATA --limit N --epochs 1 --batch-size B --optimizer sgd
        --lr 0.002 --threads T --seed 0 -o DIR --overwrite --schedule constant --augment none --eps-warmup 0
        [--adversarial pgd --eps 2/255 --steps 3]

with N = (warmup + steps) * B, and its figure is `images_per_second` from DIR/run.json
(training throughput over the epoch, validation and setup excluded). With `--feed npy` DATA is
the class-balanced subset PyTorch trains on (written as <work>/subset.npy with
subset_labels.npy), so both tools see identical images in the same order; with the default
`--feed folder` DATA is the image folder itself and faultline picks its own N images.

Rounds: per round, per mode, faultline then torch (f, t, f, t, ...), so a drift of the machine's
speed hits both; the report gives per mode the median img/s of each tool and the median and
[min, max] over rounds of the per-round ratio.

Memory: peak resident set size of each process. torch: the worker's own VmHWM from
/proc/self/status at the end of its run (it includes the ~730 MiB that importing torch costs).
faultline: "Maximum resident set size" from GNU `/usr/bin/time -v` wrapped around the binary
(the kernel's high-water mark of the faultline process, reported at its exit); without
/usr/bin/time, VmHWM of /proc/<pid>/status polled every 20 ms (a lower bound: growth in the last
20 ms before exit is missed).

Load: os.getloadavg() before and after (a warning when the 1-minute figure exceeds 0.5 before
starting), and for every timed process the CPU time other processes used meanwhile (machine-wide
busy time from /proc/stat minus the child's own), in cores.

Usage (from the repository root; `cargo build --release` first unless --only torch):

    ../venv-peer/bin/python bench/peer_finetune.py [--threads 2] [--batch-size 128]
        [--steps 20] [--warmup 2] [--rounds 3] [--modes plain,pgd] [--only torch|faultline]
        [--feed folder|npy] [--json-out FILE]
"""

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODES = ("plain", "pgd")
SANITY_TOL = 1e-3
MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4
# Added to faultline's command so it does what the PyTorch side does: a constant learning rate
# (its default is a cosine schedule) and no augmentation (its default is crop,flip, work the
# PyTorch side does not do). --bare-faultline leaves them out.
MATCH_FLAGS = ["--schedule", "constant", "--augment", "none", "--eps-warmup", "0"]

# onnx2torch's Slice indexes with a list; newer torch warns about it on every forward.
warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)


# ------------------------------------------------------------------------------------ helpers

def parse_eps(s):
    num, _, den = s.partition("/")
    return float(num) / float(den or 1)


def vm_hwm_mb(pid="self"):
    """Peak resident set size (VmHWM) of a process, MiB; None when unreadable."""
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_busy_s():
    """Seconds of CPU time used by everything on the machine (Linux /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            f0 = f.readline().split()
        hz = os.sysconf("SC_CLK_TCK")
        v = [int(x) for x in f0[1:9]]  # user nice system idle iowait irq softirq steal
        return (sum(v) - v[3] - v[4]) / float(hz)
    except (OSError, ValueError):
        return None


def children_cpu_s():
    t = os.times()
    return t.children_user + t.children_system


class OtherLoad:
    """CPU cores' worth of work other processes did while a child ran."""

    def __enter__(self):
        self.b0, self.c0, self.t0 = cpu_busy_s(), children_cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        b1, c1, t1 = cpu_busy_s(), children_cpu_s(), time.perf_counter()
        self.wall = t1 - self.t0
        self.cores = None
        if self.b0 is not None and b1 is not None:
            self.cores = max(0.0, (b1 - self.b0) - (c1 - self.c0)) / max(self.wall, 1e-9)
        return False


def thread_env(threads):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    return env


def fmt(v, w, d=1):
    return ("-" if v is None else "%.*f" % (d, v)).rjust(w)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------------------- data

def class_balanced_files(folder, n):
    """The first n (path, label) pairs taken round-robin over the sorted class folders."""
    classes = sorted(d for d in os.listdir(folder)
                     if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))
    if not classes:
        sys.exit("error: %s has no class sub-folders" % folder)
    per_class = []
    for c in classes:
        d = os.path.join(folder, c)
        per_class.append(sorted(os.path.join(d, f) for f in os.listdir(d)
                                if f.lower().endswith((".jpg", ".jpeg", ".png"))))
    out, i = [], 0
    while len(out) < n:
        added = False
        for label, files in enumerate(per_class):
            if i < len(files) and len(out) < n:
                out.append((files[i], label))
                added = True
        if not added:
            sys.exit("error: %d images asked, only %d in %s" % (n, len(out), folder))
        i += 1
    return out, classes


def prepare_subset(folder, n, work):
    """Decodes the class-balanced subset once (Pillow) into <work>/subset.npy (uint8 NHWC) and
    subset_labels.npy; returns (path of subset.npy, class names, decode seconds)."""
    import numpy as np
    from PIL import Image

    pick, classes = class_balanced_files(folder, n)
    t0 = time.perf_counter()
    x = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8) for p, _ in pick])
    dt = time.perf_counter() - t0
    y = np.array([c for _, c in pick], dtype=np.int64)
    path = os.path.join(work, "subset.npy")
    np.save(path, x)
    np.save(os.path.join(work, "subset_labels.npy"), y)
    return path, classes, dt


# -------------------------------------------------------------------------------------- torch

def load_torch_model(path):
    """(onnx model with a symbolic batch dimension, input name, converted torch module)."""
    import onnx
    from onnx2torch import convert

    m = onnx.load(path)
    g = m.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        sys.exit("error: expected exactly one graph input, found %d" % len(inputs))
    for v in inputs + list(g.output):
        shp = v.type.tensor_type.shape
        if len(shp.dim) > 0 and shp.dim[0].HasField("dim_value"):
            shp.dim[0].Clear()
            shp.dim[0].dim_param = "N"
            del g.value_info[:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert(m)
    return m, inputs[0].name, model


def sanity_check(args, subset):
    """Max abs logit difference of the converted model against ONNX Runtime on 8 images."""
    import numpy as np
    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.threads)
    onnx_model, name, model = load_torch_model(args.model)
    model.eval()
    x = np.load(subset)[:8].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    x = np.ascontiguousarray(x)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    ref = sess.run(None, {name: x})[0]
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    return float(np.abs(got.reshape(ref.shape) - ref).max())


def torch_worker(args):
    """One (round, mode): --warmup untimed steps, then --steps timed; prints one JSON line."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    mode = args._worker
    t_setup = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    _, _, model = load_torch_model(args.model)
    params = [p for p in model.parameters()]
    n_params = sum(p.numel() for p in params)
    # Weight decay on weights only, not on biases (faultline's SGD: "weight decay of weights,
    # not biases or batch-norm parameters").
    opt = torch.optim.SGD(
        [{"params": [p for p in params if p.dim() > 1], "weight_decay": WEIGHT_DECAY},
         {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}],
        lr=args.lr, momentum=MOMENTUM, nesterov=False)
    b = args.batch_size
    n = (args.warmup + args.steps) * b
    x_all = np.load(args._subset)[:n]
    y_all = np.load(args._subset.replace(".npy", "_labels.npy"))[:n]
    if len(x_all) < n:
        sys.exit("error: the cached subset holds %d images, %d needed" % (len(x_all), n))
    # float32 NCHW in [0, 1], converted before timing; one contiguous tensor per batch.
    xs = [torch.from_numpy(np.ascontiguousarray(
        x_all[i:i + b].transpose(0, 3, 1, 2).astype(np.float32) / 255.0))
        for i in range(0, n, b)]
    ys = [torch.from_numpy(y_all[i:i + b]) for i in range(0, n, b)]
    del x_all
    eps = parse_eps(args.eps)
    alpha = 2.5 * eps / args.pgd_steps
    gen = torch.Generator().manual_seed(0)

    def train_step(x, y):
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    def pgd(x, y):
        # Adversarial examples against the current weights in inference mode; no weight
        # gradients are computed while attacking.
        model.eval()
        for p in params:
            p.requires_grad_(False)
        delta = (torch.rand(x.shape, generator=gen) * 2.0 - 1.0) * eps
        xa = (x + delta).clamp_(0.0, 1.0)
        for _ in range(args.pgd_steps):
            xa.requires_grad_(True)
            loss = F.cross_entropy(model(xa), y)
            (g,) = torch.autograd.grad(loss, xa)
            with torch.no_grad():
                xa = xa + alpha * g.sign()
                xa = torch.min(torch.max(xa, x - eps), x + eps).clamp_(0.0, 1.0)
        for p in params:
            p.requires_grad_(True)
        return xa.detach()

    def step(i):
        x, y = xs[i], ys[i]
        if mode == "pgd":
            x = pgd(x, y)
        return train_step(x, y).item()

    setup_s = time.perf_counter() - t_setup
    setup_rss = vm_hwm_mb()
    losses, step_s = [], []
    t_epoch = time.perf_counter()
    for i in range(args.warmup):
        t = time.perf_counter()
        losses.append(step(i))
        step_s.append(time.perf_counter() - t)
    t0 = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        t = time.perf_counter()
        losses.append(step(i))
        step_s.append(time.perf_counter() - t)
    t1 = time.perf_counter()
    print(json.dumps({
        "mode": mode,
        "img_per_s": args.steps * b / (t1 - t0),
        "timed_s": t1 - t0,
        "epoch_img_per_s": n / (t1 - t_epoch),
        "step_s": step_s,
        "loss_first": losses[0], "loss_last": losses[-1],
        "first_nonfinite_step": next((i for i, l in enumerate(losses)
                                      if not math.isfinite(l)), None),
        "trainable_params": n_params,
        "setup_s": setup_s,
        "setup_rss_mb": setup_rss,
        "peak_rss_mb": vm_hwm_mb(),
    }))


def run_torch(args, mode, subset):
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", mode, "--_subset", subset,
           "--model", args.model, "--threads", str(args.threads),
           "--batch-size", str(args.batch_size), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--lr", args.lr_text, "--eps", args.eps, "--pgd-steps", str(args.pgd_steps)]
    with OtherLoad() as load:
        p = subprocess.run(cmd, capture_output=True, text=True, env=thread_env(args.threads))
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = " | ".join((p.stderr or "").strip().splitlines()[-5:])
        sys.exit("error: torch worker (%s) exited %d: %s" % (mode, p.returncode, tail))
    r = json.loads(lines[-1])
    r["other_cpu_cores_busy"] = load.cores
    r["process_wall_s"] = load.wall
    return r


# ---------------------------------------------------------------------------------- faultline

def faultline_cmd(args, mode, data, out_dir):
    n = (args.warmup + args.steps) * args.batch_size
    cmd = [args.faultline, "finetune", "-m", args.model, "-d", data, "--limit", str(n),
           "--epochs", "1", "--batch-size", str(args.batch_size), "--optimizer", "sgd",
           "--lr", args.lr_text, "--threads", str(args.threads), "--seed", "0", "-o", out_dir,
           "--overwrite"]
    if not args.bare_faultline:
        cmd += MATCH_FLAGS
    if mode == "pgd":
        cmd += ["--adversarial", "pgd", "--eps", args.eps, "--steps", str(args.pgd_steps)]
    return cmd + args.faultline_arg


def check_faultline(args):
    if not os.path.isfile(args.faultline) or not os.access(args.faultline, os.X_OK):
        sys.exit("error: faultline binary %s not found or not executable: run `cargo build "
                 "--release` or pass --faultline PATH (or --only torch)" % args.faultline)
    p = subprocess.run([args.faultline, "finetune", "--help"], capture_output=True, text=True)
    if p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().splitlines()
        sys.exit("error: %s has no working `finetune` command (%s); build a version that has "
                 "it, or run with --only torch" % (args.faultline, msg[0] if msg else
                                                    "exit status %d" % p.returncode))


def find_key(obj, key):
    """Values of `key` anywhere in a JSON object (top level first)."""
    if isinstance(obj, dict):
        if key in obj:
            return [obj[key]]
        found = []
        for v in obj.values():
            found += find_key(v, key)
        return found
    if isinstance(obj, list):
        found = []
        for v in obj:
            found += find_key(v, key)
        return found
    return []


def run_faultline(args, mode, data, out_dir):
    cmd = faultline_cmd(args, mode, data, out_dir)
    time_bin = shutil.which("time", path="/usr/bin:/bin")
    time_out = os.path.join(args.work, "time-%s.txt" % mode)
    gnu_time = False
    if time_bin:
        probe = subprocess.run([time_bin, "-v", "-o", time_out, "true"], capture_output=True)
        gnu_time = probe.returncode == 0
    env = thread_env(args.threads)
    peak, how = None, None
    with OtherLoad() as load:
        if gnu_time:
            p = subprocess.run([time_bin, "-v", "-o", time_out] + cmd, capture_output=True,
                               text=True, env=env)
            rc, stderr = p.returncode, p.stderr
            try:
                with open(time_out) as f:
                    for line in f:
                        if "Maximum resident set size" in line:
                            peak = int(line.rsplit(":", 1)[1]) / 1024.0
            except (OSError, ValueError):
                pass
            how = "/usr/bin/time -v (maximum resident set size)"
        else:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True, env=env)
            while proc.poll() is None:
                v = vm_hwm_mb(proc.pid)
                if v is not None:
                    peak = v if peak is None else max(peak, v)
                time.sleep(0.02)
            rc, stderr = proc.returncode, proc.stderr.read()
            how = "VmHWM polled every 20 ms (lower bound)"
    if rc != 0:
        tail = (stderr or "").strip()
        if "unrecognized subcommand" in tail:
            sys.exit("error: %s has no `finetune` command; build a version that has it, or run "
                     "with --only torch" % args.faultline)
        if "unexpected argument" in tail:
            sys.exit("error: `faultline finetune` does not take an argument this script passes "
                     "(%s)\ncommand: %s" % (tail.splitlines()[0], " ".join(cmd)))
        sys.exit("error: faultline exited %d\ncommand: %s\n%s"
                 % (rc, " ".join(cmd), tail[-2000:]))
    run_json = os.path.join(out_dir, "run.json")
    try:
        with open(run_json) as f:
            rec = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("error: cannot read %s after `faultline finetune`: %s" % (run_json, e))
    ips = rec.get("images_per_second") if isinstance(rec, dict) else None
    where = "top level"
    if ips is None:
        found = [v for v in find_key(rec, "images_per_second") if isinstance(v, (int, float))]
        if len(found) != 1:
            keys = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
            sys.exit("error: %s has no (unique) images_per_second; top-level keys: %s"
                     % (run_json, keys))
        ips, where = found[0], "nested"
    # Optional extras of the run record, when present: per-batch losses of the (one) epoch and
    # faultline's own peak-memory figure (a cross-check of the one measured here).
    losses = []
    for ep in (rec.get("epochs") or []) if isinstance(rec, dict) else []:
        if isinstance(ep, dict):
            losses += [l for l in (ep.get("batch_loss") or []) if isinstance(l, (int, float))
                       or l is None]
    nonfinite = next((i for i, l in enumerate(losses)
                      if l is None or not math.isfinite(l)), None)
    return {
        "mode": mode,
        "img_per_s": float(ips),
        "images_per_second_at": where,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "first_nonfinite_step": nonfinite,
        "self_reported_peak_mib": rec.get("peak_memory_mib") if isinstance(rec, dict) else None,
        "run_seconds": rec.get("seconds") if isinstance(rec, dict) else None,
        "peak_rss_mb": peak,
        "peak_rss_how": how,
        "other_cpu_cores_busy": load.cores,
        "process_wall_s": load.wall,
        "command": cmd,
    }


# ------------------------------------------------------------------------------------- main

def versions():
    import importlib.metadata as md

    v = {"python": platform.python_version(), "platform": platform.platform(),
         "cpu_count": os.cpu_count()}
    for pkg in ("torch", "onnx", "onnx2torch", "onnxruntime", "numpy", "pillow"):
        try:
            v[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            v[pkg] = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    v["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(
        ROOT, "..", "shared", "models", "cifar10", "cifar10-resnet20.onnx"))
    ap.add_argument("--data", default=os.path.join(
        ROOT, "..", "shared", "data", "cifar10", "jpg", "train"),
        help="image folder, one sub-folder per class")
    ap.add_argument("--faultline", default=os.path.join(ROOT, "target", "release", "faultline"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps [20]")
    ap.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first [2]")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lr", default="0.002",
                    help="SGD learning rate of both tools [0.002, faultline's default]; see "
                         "bench/README.md: the BN-folded ResNet-20 diverges at 0.01")
    ap.add_argument("--modes", default="plain,pgd", help="comma-separated: plain,pgd")
    ap.add_argument("--only", choices=("torch", "faultline"))
    ap.add_argument("--eps", default="2/255", help="PGD radius (L-inf) [2/255]")
    ap.add_argument("--pgd-steps", type=int, default=3, help="PGD steps [3]")
    ap.add_argument("--feed", choices=("folder", "npy"), default="folder",
                    help="what faultline reads: the image folder (default) or the .npy of the "
                         "exact class-balanced subset torch trains on")
    ap.add_argument("--faultline-arg", action="append", default=[], metavar="ARG",
                    help="extra argument appended to the faultline command (repeatable), "
                         "e.g. --faultline-arg=--momentum --faultline-arg=0.9")
    ap.add_argument("--bare-faultline", action="store_true",
                    help="leave out " + " ".join(MATCH_FLAGS) + " (for a faultline without "
                         "those options)")
    ap.add_argument("--work", default="/tmp/peer_finetune")
    ap.add_argument("--json-out", metavar="FILE")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    ap.add_argument("--_subset", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.lr_text = args.lr
    args.lr = float(args.lr)
    args.model = os.path.abspath(args.model)
    args.data = os.path.abspath(args.data)
    args.faultline = os.path.abspath(args.faultline)

    if args._worker:
        return torch_worker(args)

    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            sys.exit("error: unknown mode %r (plain, pgd)" % m)
    if min(args.steps, args.batch_size, args.rounds, args.pgd_steps) < 1 or args.warmup < 0:
        sys.exit("error: --steps, --batch-size, --rounds and --pgd-steps must be positive")
    for p, what in ((args.model, "--model"), (args.data, "--data")):
        if not os.path.exists(p):
            sys.exit("error: %s %s does not exist" % (what, p))
    do_f = args.only != "torch"
    do_t = args.only != "faultline"
    if do_f:
        check_faultline(args)
    log = sys.stderr
    os.makedirs(args.work, exist_ok=True)
    n = (args.warmup + args.steps) * args.batch_size

    load0 = os.getloadavg()
    print("load average before: %.2f %.2f %.2f" % load0, file=log)
    if load0[0] > 0.5:
        print("WARNING: 1-minute load average %.2f > 0.5: other work is running, the figures "
              "will be low and noisy" % load0[0], file=log)

    subset, classes, decode_s = prepare_subset(args.data, n, args.work)
    print("decoded %d class-balanced images (%d classes) in %.1f s -> %s"
          % (n, len(classes), decode_s, subset), file=log)
    fl_data = subset if args.feed == "npy" else args.data

    sanity = None
    if do_t:
        sanity = sanity_check(args, subset)
        print("sanity: max |torch - onnxruntime| logits on 8 images = %.3g" % sanity, file=log)
        if not sanity <= SANITY_TOL:
            print("FAIL: the converted model disagrees with ONNX Runtime", file=log)
            sys.exit(2)

    t_start = time.perf_counter()
    rounds = []
    for r in range(args.rounds):
        row = {}
        for mode in modes:
            cell = {}
            if do_f:
                f = run_faultline(args, mode, fl_data, os.path.join(args.work, "fl-" + mode))
                cell["faultline"] = f
                loss = ("  (loss %s -> %s)" % (fmt(f["loss_first"], 0, 3),
                                               fmt(f["loss_last"], 0, 3))
                        if f["loss_first"] is not None or f["loss_last"] is not None else "")
                print("round %d %-5s faultline %8.1f img/s  peak %s MiB  other load %s%s"
                      % (r + 1, mode, f["img_per_s"], fmt(f["peak_rss_mb"], 0, 0),
                         fmt(f["other_cpu_cores_busy"], 0, 2), loss), file=log, flush=True)
                if f["first_nonfinite_step"] is not None:
                    print("  note: faultline's loss is not finite from step %d on"
                          % f["first_nonfinite_step"], file=log)
            if do_t:
                t = run_torch(args, mode, subset)
                cell["torch"] = t
                print("round %d %-5s torch     %8.1f img/s  peak %s MiB  other load %s  "
                      "(loss %.3f -> %.3f)"
                      % (r + 1, mode, t["img_per_s"], fmt(t["peak_rss_mb"], 0, 0),
                         fmt(t["other_cpu_cores_busy"], 0, 2), t["loss_first"],
                         t["loss_last"]), file=log, flush=True)
                if t["first_nonfinite_step"] is not None:
                    print("  note: torch's loss is not finite from step %d on (the weights "
                          "diverged at lr %s; the steps still run at full cost)"
                          % (t["first_nonfinite_step"], args.lr_text), file=log)
            if do_f and do_t:
                cell["ratio"] = cell["faultline"]["img_per_s"] / cell["torch"]["img_per_s"]
                cell["ratio_vs_torch_epoch"] = (cell["faultline"]["img_per_s"]
                                                / cell["torch"]["epoch_img_per_s"])
            row[mode] = cell
        rounds.append(row)
    wall = time.perf_counter() - t_start
    load1 = os.getloadavg()

    summary = {}
    for mode in modes:
        cells = [rd[mode] for rd in rounds]
        s = {}
        for side in ("faultline", "torch"):
            got = [c[side] for c in cells if side in c]
            if not got:
                continue
            s[side + "_img_per_s"] = med([g["img_per_s"] for g in got])
            s[side + "_peak_rss_mb"] = max((g["peak_rss_mb"] for g in got
                                            if g["peak_rss_mb"] is not None), default=None)
            s[side + "_other_cpu_cores_busy_max"] = max(
                (g["other_cpu_cores_busy"] for g in got
                 if g["other_cpu_cores_busy"] is not None), default=None)
        t_got = [c["torch"] for c in cells if "torch" in c]
        if t_got:
            s["torch_epoch_img_per_s"] = med([g["epoch_img_per_s"] for g in t_got])
            s["torch_setup_rss_mb"] = max(g["setup_rss_mb"] or 0 for g in t_got)
            s["torch_rounds_diverged"] = sum(g["first_nonfinite_step"] is not None
                                             for g in t_got)
        ratios = [c["ratio"] for c in cells if "ratio" in c]
        if ratios:
            s["ratio_median"] = med(ratios)
            s["ratio_min"] = min(ratios)
            s["ratio_max"] = max(ratios)
            s["ratio_vs_torch_epoch_median"] = med([c["ratio_vs_torch_epoch"] for c in cells])
        summary[mode] = s

    report = {
        "model": args.model, "data": args.data, "faultline_data": fl_data if do_f else None,
        "feed": args.feed, "threads": args.threads, "batch_size": args.batch_size,
        "steps": args.steps, "warmup": args.warmup, "images": n, "rounds": args.rounds,
        "modes": modes, "only": args.only, "eps": args.eps, "pgd_steps": args.pgd_steps,
        "pgd_alpha": 2.5 * parse_eps(args.eps) / args.pgd_steps,
        "optimizer": {"name": "sgd", "lr": args.lr, "momentum": MOMENTUM,
                      "weight_decay": WEIGHT_DECAY, "weight_decay_on": "weights, not biases",
                      "nesterov": False, "schedule": "constant", "augmentation": None},
        "faultline_commands": {m: faultline_cmd(args, m, fl_data,
                                                os.path.join(args.work, "fl-" + m))
                               for m in modes} if do_f else None,
        "decode_s": decode_s, "sanity_max_abs_diff": sanity,
        "summary": summary, "per_round": rounds,
        "load_average_before": load0, "load_average_after": load1, "wall_s": wall,
        "versions": versions(),
    }
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1)

    print()
    print("fine-tuning %s, batch %d, %d threads, %d timed steps after %d warm-up, %d round(s); "
          "PGD-%d eps %s" % (os.path.basename(args.model), args.batch_size, args.threads,
                             args.steps, args.warmup, args.rounds, args.pgd_steps, args.eps))
    w = 12
    print("mode".ljust(6) + "faultline".rjust(w) + "torch".rjust(w) + "f/torch".rjust(w)
          + "[min, max]".rjust(18) + "torch epoch".rjust(w) + "f MiB".rjust(8)
          + "torch MiB".rjust(11))
    for mode in modes:
        s = summary[mode]
        rng = ("[%.2f, %.2f]" % (s["ratio_min"], s["ratio_max"])) if "ratio_min" in s else "-"
        print(mode.ljust(6) + fmt(s.get("faultline_img_per_s"), w)
              + fmt(s.get("torch_img_per_s"), w) + fmt(s.get("ratio_median"), w, 2)
              + rng.rjust(18) + fmt(s.get("torch_epoch_img_per_s"), w)
              + fmt(s.get("faultline_peak_rss_mb"), 8, 0) + fmt(s.get("torch_peak_rss_mb"), 11, 0))
    print("(img/s: median over rounds; f/torch: median of per-round ratios; torch epoch: torch "
          "img/s over all %d steps incl. warm-up, as faultline's epoch figure; MiB: peak RSS, "
          "max over rounds)" % (args.warmup + args.steps))
    v = report["versions"]
    print("torch %s, onnx2torch %s, python %s; cpu: %s x%s"
          % (v["torch"], v["onnx2torch"], v["python"], v.get("cpu", "?"), v["cpu_count"]))
    print("load average before %.2f, after %.2f; %.0f s" % (load0[0], load1[0], wall))
    if load0[0] > 0.5:
        print("WARNING: the 1-minute load was %.2f before starting" % load0[0])
    div = {m: summary[m].get("torch_rounds_diverged") for m in modes
           if summary[m].get("torch_rounds_diverged")}
    if div:
        print("note: torch's loss became non-finite (diverged at lr %s) in %s round(s); "
              "throughput is still comparable, the weights are not" % (args.lr_text, div))


if __name__ == "__main__":
    main()
