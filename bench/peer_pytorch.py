#!/usr/bin/env python3
"""Peer benchmark: PyTorch and ONNX Runtime on the same ONNX model, on this CPU.

faultline reports its own engine's speed as a ratio to these peers, so they
must be measured on the same machine, with the same thread count, the same
network and the same weights.  This script loads an ONNX model, converts it to
a PyTorch module with onnx2torch (same graph, same weights; checked against
ONNX Runtime before anything is timed), and for every batch size times:

  torch_nchw_forward       PyTorch forward, NCHW tensors, eval(), no_grad
  torch_cl_forward         the same with model and input in channels_last
  torch_nchw_input_grad    forward + gradient of the summed cross-entropy
                           (random fixed labels) w.r.t. the INPUT only; the
                           weights have requires_grad=False, so no weight
                           gradients are computed (what an attack step costs)
  torch_cl_input_grad      the same in channels_last
  ort_forward              onnxruntime CPUExecutionProvider forward,
                           intra_op_num_threads=threads, inter_op=1, sequential

Timing: inputs are uniform in [0, 1) with the model's input shape (read from
the ONNX graph, batch dimension replaced).  Each measurement does --warmup
untimed calls, then takes --iters samples; a sample repeats the call enough
times to last at least --min-sample-ms and records the mean per call.  The
reported number is batch_size / median(sample), in images per second.
Sampling of one (configuration, batch) stops early once it has used
--max-seconds and has at least 3 samples.

Memory: each configuration runs in its own subprocess (only the libraries it
needs are imported), over the batch sizes in ascending order.  After each
batch size the process's peak resident set size (VmHWM from
/proc/self/status; getrusage ru_maxrss where there is no /proc) is
recorded, so the number for batch b is the high-water mark of that process
up to and including b (with ascending batches this is the peak of batch b
whenever memory grows with the batch).  setup_rss_mb is the high-water mark
after imports and model loading, before the first timed call.  With
--isolate every (configuration, batch) gets its own process instead (exact,
but pays the ~5 s torch import each time).

Load from others: the machine-wide busy CPU time (/proc/stat) during each
configuration, minus the CPU time of the worker itself, divided by the wall
time, is reported as other_cpu_cores_busy.  Anything well above 0 means other
work competed for the cores and the numbers are low by an unknown amount.

Sanity: before timing, the converted model's logits (NCHW and channels_last)
are compared with ONNX Runtime's on a random batch; the max abs difference is
printed, and the script exits with status 2 if it exceeds 1e-3.

Models whose ONNX input has a fixed batch dimension get the batch dimension of
their graph inputs/outputs made symbolic; a batch size the graph still cannot
run (e.g. a Reshape to a constant shape) is reported as null with a note.

Install (a venv outside the repository; PyPI only has the CUDA build of torch
for Linux, which also runs on CPU):

    python3 -m venv ../venv-peer
    ../venv-peer/bin/pip install torch onnx onnx2torch onnxruntime numpy

Usage:

    ../venv-peer/bin/python bench/peer_pytorch.py --model M.onnx \
        [--batch-sizes 1,8,32,128,512] [--threads 2] [--iters 10] [--json]
        [--json-out FILE] [--configs ...] [--isolate]
"""

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings

CONFIGS = [
    "torch_nchw_forward",
    "torch_cl_forward",
    "torch_nchw_input_grad",
    "torch_cl_input_grad",
    "ort_forward",
]
SHORT = {
    "torch_nchw_forward": "torch NCHW fwd",
    "torch_cl_forward": "torch CL fwd",
    "torch_nchw_input_grad": "torch NCHW grad",
    "torch_cl_input_grad": "torch CL grad",
    "ort_forward": "ORT fwd",
}
SANITY_TOL = 1e-3

# onnx2torch's Slice indexes with a list; newer torch warns about it on every
# forward.  The result is correct (checked by the sanity step); silence it.
warnings.filterwarnings("ignore", message="Using a non-tuple sequence",
                        category=UserWarning)


# ----------------------------------------------------------------- helpers

def peak_rss_mb():
    # VmHWM is this process's own high-water mark.  ru_maxrss is not: on Linux
    # a child started by fork+exec inherits the parent's peak, so a worker
    # would report the peak of the parent (which imported torch).
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def load_onnx(path):
    """Load the model; return (model with symbolic batch dim, input name,
    input shape without batch, fixed batch or None)."""
    import onnx

    model = onnx.load(path)
    g = model.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        sys.exit("error: expected exactly one graph input, found %d" % len(inputs))
    inp = inputs[0]
    tt = inp.type.tensor_type
    if tt.elem_type != onnx.TensorProto.FLOAT:
        sys.exit("error: input %r is not float32" % inp.name)
    dims = list(tt.shape.dim)
    if not dims:
        sys.exit("error: input %r has no shape" % inp.name)
    rest = []
    for d in dims[1:]:
        if not d.HasField("dim_value"):
            sys.exit("error: non-batch dimension of %r is symbolic" % inp.name)
        rest.append(d.dim_value)
    fixed = dims[0].dim_value if dims[0].HasField("dim_value") else None
    if fixed is not None:
        # Make the batch dimension symbolic on graph inputs and outputs; drop
        # intermediate shape annotations that would pin it.
        for v in list(inputs) + list(g.output):
            shp = v.type.tensor_type.shape
            if len(shp.dim) > 0:
                shp.dim[0].Clear()
                shp.dim[0].dim_param = "N"
        del g.value_info[:]
    return model, inp.name, rest, fixed


def make_input(batch, shape, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed + batch)
    return rng.random((batch, *shape), dtype=np.float32)


def time_call(fn, batch, iters, warmup, min_sample_s, max_seconds):
    """Median seconds per call of fn, and how many samples were taken."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    reps = max(1, math.ceil(min_sample_s / max(one, 1e-9)))
    samples = []
    start = time.perf_counter()
    for _ in range(iters):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        samples.append((time.perf_counter() - t) / reps)
        if len(samples) >= 3 and time.perf_counter() - start > max_seconds:
            break
    return statistics.median(samples), len(samples), reps


# -------------------------------------------------------- model / callables

def torch_model(onnx_model, channels_last):
    import torch
    from onnx2torch import convert

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = convert(onnx_model)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    return m


def ort_session(onnx_model, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(
        onnx_model.SerializeToString(), so, providers=["CPUExecutionProvider"]
    )


def build_call(config, state, x_np):
    """Return a zero-argument callable doing one measured step on x_np."""
    if config == "ort_forward":
        sess, name = state
        feed = {name: x_np}
        return lambda: sess.run(None, feed)

    import torch
    import torch.nn.functional as F

    model = state
    cl = "_cl_" in config
    x = torch.from_numpy(x_np)
    if cl:
        if x.dim() != 4:
            raise ValueError("channels_last needs a 4-D input")
        x = x.contiguous(memory_format=torch.channels_last)
    if config.endswith("_forward"):
        def fwd():
            with torch.no_grad():
                return model(x)
        return fwd

    with torch.no_grad():
        out = model(x)
    n_classes = out.reshape(out.shape[0], -1).shape[1]
    g = torch.Generator().manual_seed(1234)
    labels = torch.randint(n_classes, (x.shape[0],), generator=g)

    def grad():
        xi = x.detach().requires_grad_(True)
        logits = model(xi)
        loss = F.cross_entropy(
            logits.reshape(logits.shape[0], -1), labels, reduction="sum"
        )
        (gx,) = torch.autograd.grad(loss, xi)
        return gx
    return grad


# ------------------------------------------------------------------ worker

def worker(args):
    """Run one configuration over some batch sizes; print one JSON line."""
    config = args.worker
    setup_t = time.perf_counter()
    model, in_name, shape, fixed = load_onnx(args.model)
    if config == "ort_forward":
        state = (ort_session(model, args.threads), in_name)
    else:
        import torch

        torch.set_num_threads(args.threads)
        state = torch_model(model, "_cl_" in config)
    out = {
        "config": config,
        "setup_s": time.perf_counter() - setup_t,
        "setup_rss_mb": peak_rss_mb(),
        "results": [],
    }
    for b in sorted(int(s) for s in args.batch_sizes.split(",")):
        r = {"batch_size": b}
        try:
            fn = build_call(config, state, make_input(b, shape))
            med, n, reps = time_call(
                fn, b, args.iters, args.warmup,
                args.min_sample_ms / 1000.0, args.max_seconds,
            )
            r.update(median_s=med, samples=n, reps_per_sample=reps,
                     img_per_s=b / med)
            del fn
        except Exception as e:  # e.g. a Reshape to a constant batch
            r.update(img_per_s=None, error="%s: %s" % (type(e).__name__, str(e)[:300]))
        r["peak_rss_mb"] = peak_rss_mb()
        out["results"].append(r)
    print(json.dumps(out))


def run_worker(args, config, batch_sizes):
    cmd = [
        sys.executable, os.path.abspath(__file__), "--_worker", config,
        "--model", args.model, "--batch-sizes", batch_sizes,
        "--threads", str(args.threads), "--iters", str(args.iters),
        "--warmup", str(args.warmup), "--min-sample-ms", str(args.min_sample_ms),
        "--max-seconds", str(args.max_seconds),
    ]
    env = dict(os.environ)
    # Keep OpenMP/MKL/ORT from starting more threads than asked.
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(args.threads)
    busy0, ru0, t0 = cpu_busy_s(), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    busy1, ru1, t1 = cpu_busy_s(), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    other = None
    if busy0 is not None and busy1 is not None:
        own = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        other = max(0.0, (busy1 - busy0) - own) / (t1 - t0)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or "").strip().splitlines()[-3:]
        msg = "worker exited %d: %s" % (p.returncode, " | ".join(tail))
        return {"config": config, "error": msg, "results": [
            {"batch_size": int(b), "img_per_s": None, "error": msg}
            for b in batch_sizes.split(",")]}
    w = json.loads(lines[-1])
    w["other_cpu_cores_busy"] = other
    return w


def cpu_busy_s():
    """Seconds of CPU time used by everything on the machine (Linux /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            f0 = f.readline().split()
        hz = os.sysconf("SC_CLK_TCK")
        # user nice system idle iowait irq softirq steal ...
        v = [int(x) for x in f0[1:9]]
        return (sum(v) - v[3] - v[4]) / float(hz)
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------ sanity

def sanity_check(args):
    """Max abs logit difference torch (NCHW and CL) vs ORT on a random batch."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    model, in_name, shape, fixed = load_onnx(args.model)
    b = fixed if fixed is not None else 4
    x = make_input(b, shape, seed=99)
    ref = ort_session(model, args.threads).run(None, {in_name: x})[0]
    diffs = {}
    for name, cl in (("nchw", False), ("channels_last", True)):
        if cl and x.ndim != 4:
            continue
        m = torch_model(model, cl)
        xt = torch.from_numpy(x)
        if cl:
            xt = xt.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            got = m(xt).numpy()
        diffs[name] = float(np.abs(got.reshape(ref.shape) - ref).max())
    return b, diffs, fixed


def versions():
    import importlib.metadata as md

    v = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "onnx", "onnx2torch", "onnxruntime", "numpy"):
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
    v["cpu_count"] = os.cpu_count()
    return v


# -------------------------------------------------------------------- main

def fmt(v, width, digits=1):
    return ("%.*f" % (digits, v)).rjust(width) if v is not None else "-".rjust(width)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="path to an .onnx model")
    ap.add_argument("--batch-sizes", default="1,8,32,128,512")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10,
                    help="timed samples per (configuration, batch) [10]")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls [2]")
    ap.add_argument("--min-sample-ms", type=float, default=50.0,
                    help="a sample repeats the call to last at least this [50]")
    ap.add_argument("--max-seconds", type=float, default=10.0,
                    help="stop sampling one (config, batch) after this, once it "
                         "has 3 samples [10]")
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help="comma-separated subset of: " + ",".join(CONFIGS))
    ap.add_argument("--isolate", action="store_true",
                    help="one process per (configuration, batch): exact peaks")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object instead of the table")
    ap.add_argument("--json-out", metavar="PATH",
                    help="also write the JSON object to PATH")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._worker:
        args.worker = args._worker
        return worker(args)

    configs = [c for c in args.configs.split(",") if c]
    for c in configs:
        if c not in CONFIGS:
            sys.exit("error: unknown configuration %r" % c)
    batches = sorted(int(s) for s in args.batch_sizes.split(","))
    log = sys.stderr

    load0 = os.getloadavg()
    b, diffs, fixed = sanity_check(args)
    for k, d in diffs.items():
        print("sanity: max |torch_%s - ort| logits on random batch %d = %.3g"
              % (k, b, d), file=log)
    bad = {k: d for k, d in diffs.items() if not d <= SANITY_TOL}
    if bad:
        print("FAIL: converted model disagrees with ONNX Runtime by more than "
              "%g: %s" % (SANITY_TOL, bad), file=log)
        sys.exit(2)
    if fixed is not None:
        print("note: the ONNX input has a fixed batch dimension %d; it was made "
              "symbolic (batch sizes the graph cannot run are reported as -)"
              % fixed, file=log)

    t0 = time.perf_counter()
    per_config = {}
    setup_rss = {}
    other_busy = {}
    for c in configs:
        print("measuring %s ..." % c, file=log, flush=True)
        t_c = time.perf_counter()
        if args.isolate:
            rs, obs = [], []
            for bs in batches:
                w = run_worker(args, c, str(bs))
                rs.extend(w["results"])
                obs.append(w.get("other_cpu_cores_busy"))
            per_config[c] = rs
            obs = [o for o in obs if o is not None]
            w["other_cpu_cores_busy"] = max(obs) if obs else None
        else:
            w = run_worker(args, c, ",".join(map(str, batches)))
            per_config[c] = w["results"]
        setup_rss[c] = w.get("setup_rss_mb")
        other_busy[c] = w.get("other_cpu_cores_busy")
        print("  done in %.0f s" % (time.perf_counter() - t_c), file=log, flush=True)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()

    results = []
    for bs in batches:
        row = {"batch_size": bs}
        notes = []
        for c in configs:
            r = next((r for r in per_config[c] if r["batch_size"] == bs), {})
            row[c + "_img_per_s"] = r.get("img_per_s")
            row[c + "_median_s"] = r.get("median_s")
            row[c + "_peak_rss_mb"] = r.get("peak_rss_mb")
            if r.get("error"):
                notes.append("%s: %s" % (c, r["error"]))
        if notes:
            row["notes"] = notes
        results.append(row)

    report = {
        "model": args.model,
        "threads": args.threads,
        "iters": args.iters,
        "sanity_max_abs_diff": diffs,
        "fixed_batch_in_onnx": fixed,
        "results": results,
        "setup_rss_mb": setup_rss,
        "other_cpu_cores_busy": other_busy,
        "load_average_before": load0,
        "load_average_after": load1,
        "wall_s": wall,
        "versions": versions(),
    }
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1)
    if args.json:
        print(json.dumps(report, indent=1))
        return

    print("model %s, threads %d, images/s (median of up to %d samples)"
          % (args.model, args.threads, args.iters))
    w = 16
    print("batch".rjust(6) + "".join(SHORT[c].rjust(w) for c in configs))
    for row in results:
        print(str(row["batch_size"]).rjust(6)
              + "".join(fmt(row[c + "_img_per_s"], w) for c in configs))
    print()
    print("peak RSS, MiB (per-configuration process; see docstring)")
    print("batch".rjust(6) + "".join(SHORT[c].rjust(w) for c in configs))
    for row in results:
        print(str(row["batch_size"]).rjust(6)
              + "".join(fmt(row[c + "_peak_rss_mb"], w, 0) for c in configs))
    print("setup".rjust(6) + "".join(fmt(setup_rss.get(c), w, 0) for c in configs)
          + "   (after imports + model load)")
    print()
    print("other processes' CPU use while measuring, cores (0 = quiet machine)")
    print("".rjust(6) + "".join(fmt(other_busy.get(c), w, 2) for c in configs))
    for row in results:
        for n in row.get("notes", []):
            print("note: batch %d: %s" % (row["batch_size"], n))
    v = report["versions"]
    print()
    print("torch %s, onnxruntime %s, onnx %s, onnx2torch %s, numpy %s, python %s"
          % (v["torch"], v["onnxruntime"], v["onnx"], v["onnx2torch"],
             v["numpy"], v["python"]))
    print("cpu: %s x%s; load average before %.2f, after %.2f; %.0f s"
          % (v.get("cpu", "?"), v["cpu_count"], load0[0], load1[0], wall))


if __name__ == "__main__":
    main()
