#!/usr/bin/env python3
"""Two faultline builds on the same command, alternated round by round: wall and CPU seconds
of each run, the ratio new/old per round (median [min, max]), the passes each run reports,
and whether every per-sample result is the same.

Usage (from the repository root; OLD is a build of the commit to compare against):

    python3 bench/builds.py --old ../old/target/release/faultline [--new target/release/faultline] \
        [--rounds 3] [--threads 2] -- attack --preset standard --eps 1/255 --limit 100

Everything after `--` is the faultline subcommand and its flags; this script adds
`--threads T` before it and `-o DIR` after it. With `--compare` (the default) the per-sample
records (samples.jsonl) of every run are compared with the old binary's first run, field by
field, except the pass counters (`forward`, `backward`, `stage_passes`), which may differ
between builds. Prints the 1-minute load average before each run: ratios are only meaningful
when it stays low. Needs only the Python standard library.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

# Per-sample fields allowed to differ between builds: how much work was done, not what it found.
PASS_FIELDS = {"forward", "backward", "stage_passes"}


def run(binary, args, out):
    cmd = [binary, "--threads", str(args.threads), *args.command, "-o", out]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    recs = {}
    path = os.path.join(out, "samples.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for r in map(json.loads, f):
                recs[(r.get("index"), json.dumps(r.get("condition"), sort_keys=True))] = r
    passes = None
    try:
        with open(os.path.join(out, "run.json")) as f:
            text = f.read()
        body = json.loads(text)
        passes = find_passes(body)
    except (OSError, ValueError):
        pass
    return wall, cpu, load, recs, passes


def find_passes(o):
    """The first `forward_passes`/`backward_passes` pair anywhere in run.json."""
    if isinstance(o, dict):
        if "forward_passes" in o and "backward_passes" in o:
            return o["forward_passes"], o["backward_passes"]
        for v in o.values():
            p = find_passes(v)
            if p:
                return p
    elif isinstance(o, list):
        for v in o:
            p = find_passes(v)
            if p:
                return p
    return None


def compare(ref, recs):
    """Number of records equal to the reference's (pass counters aside), and the first mismatch."""
    same, first = 0, None
    for k, r in ref.items():
        o = recs.get(k, {})
        bad = [f for f in r if f not in PASS_FIELDS and r.get(f) != o.get(f)]
        if not bad:
            same += 1
        elif first is None:
            first = f"sample {k[0]}: {bad[0]} {r.get(bad[0])} vs {o.get(bad[0])}"
    return same, first


def summary(v):
    v = sorted(v)
    med = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
    return f"{med:.3f} [{v[0]:.3f}, {v[-1]:.3f}]"


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit("usage: builds.py --old OLD [options] -- SUBCOMMAND [flags]")
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="faultline binary to compare against")
    ap.add_argument("--new", default="target/release/faultline")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-compare", action="store_true", help="skip the per-sample comparison")
    args = ap.parse_args(argv[:cut])
    args.command = argv[cut + 1:]
    times = {"old": [], "new": []}
    ref, checks = None, []
    with tempfile.TemporaryDirectory(prefix="builds") as tmp:
        for r in range(args.rounds):
            # Alternate which goes first, so that a drift in load favours neither.
            for which in (["old", "new"] if r % 2 == 0 else ["new", "old"]):
                out = os.path.join(tmp, f"{which}{r}")
                wall, cpu, load, recs, passes = run(getattr(args, which), args, out)
                times[which].append((wall, cpu))
                p = f", {passes[0]} forward / {passes[1]} backward passes" if passes else ""
                print(f"round {r + 1} {which}: {wall:7.1f} s wall, {cpu:7.1f} s CPU{p} "
                      f"(load {load:.2f} before)", flush=True)
                if ref is None and which == "old":
                    ref = recs
                checks.append((which, r, recs))
    for which in ["old", "new"]:
        w = [t[0] for t in times[which]]
        c = [t[1] for t in times[which]]
        print(f"{which}: wall {min(w):.1f}-{max(w):.1f} s, CPU {min(c):.1f}-{max(c):.1f} s")
    for k, name in [(0, "wall"), (1, "CPU")]:
        ratios = [o[k] / n[k] for n, o in zip(times["new"], times["old"])]
        print(f"speed-up old/new ({name}), per round: {summary(ratios)}")
    if not args.no_compare and ref:
        for which, r, recs in checks:
            same, first = compare(ref, recs)
            print(f"round {r + 1} {which}: {same}/{len(ref)} records equal to the old binary's "
                  f"first run" + (f"; first difference {first}" if first else ""))


if __name__ == "__main__":
    main()
