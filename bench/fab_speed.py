#!/usr/bin/env python3
"""FAB speed, one build against another: `faultline margins` (FAB L∞, 5 restarts × 100 steps,
its defaults) on the same samples, the two binaries alternated round by round, then the ratio
of their times and whether every per-sample result is the same.

Usage (from the repository root; OLD is a build of the commit to compare against):

    python3 bench/fab_speed.py --old ../old/target/release/faultline \
        [--new target/release/faultline] [--rounds 2] [--limit 100] [--threads 1]

Prints, per run, wall and CPU seconds and the 1-minute load average before it; then for each
binary the min/max over rounds, the ratio new/old (per round, min/max) and the comparison of
the per-sample records (samples.jsonl) of every run against the old binary's first: the fields
named in RESULT must be equal (exactly, as JSON numbers), the pass counts may differ. Needs
only the Python standard library.
"""

import argparse
import os
import tempfile

import builds

# Per-sample fields that must not change: the margin, the adversarial point's norms and label,
# the clean scores and logits.
RESULT = ["input_margin", "linf", "l2", "l1", "prediction", "logit_margin", "success",
          "clean_prediction", "scores", "logits"]


def run(binary, args, out):
    """One `faultline margins` run (bench/builds.py's timing): wall and CPU seconds, the load
    before it, and its per-sample records by index."""
    args.command = ["margins", "-m", args.model, "-d", args.data, "--limit", str(args.limit)]
    wall, cpu, load, recs, _ = builds.run(binary, args, out)
    return wall, cpu, load, {k[0]: r for k, r in recs.items()}


def compare(ref, recs):
    """Number of samples whose RESULT fields all equal the reference's, and the first mismatch."""
    same, first = 0, None
    for i, r in ref.items():
        o = recs.get(i, {})
        bad = [k for k in RESULT if r.get(k) != o.get(k)]
        if not bad:
            same += 1
        elif first is None:
            first = f"sample {i}: {bad[0]} {r.get(bad[0])} vs {o.get(bad[0])}"
    return same, first


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="faultline binary to compare against")
    ap.add_argument("--new", default="target/release/faultline")
    ap.add_argument("--model", default="../shared/models/mnist/mnist-lenet5-clean.onnx")
    ap.add_argument("--data", default="../shared/data/mnist")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    times = {"old": [], "new": []}
    ref, checks = None, []
    with tempfile.TemporaryDirectory(prefix="fab_speed") as tmp:
        for r in range(args.rounds):
            # Alternate which goes first, so that a drift in load favours neither.
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for which in order:
                out = os.path.join(tmp, f"{which}{r}")
                wall, cpu, load, recs = run(getattr(args, which), args, out)
                times[which].append((wall, cpu))
                print(f"round {r + 1} {which}: {wall:7.1f} s wall, {cpu:7.1f} s CPU "
                      f"(load {load:.2f} before)", flush=True)
                if ref is None and which == "old":
                    ref = recs
                checks.append((which, r, recs))
    for which in ["old", "new"]:
        w = [t[0] for t in times[which]]
        c = [t[1] for t in times[which]]
        print(f"{which}: wall min {min(w):.1f} max {max(w):.1f} s; CPU min {min(c):.1f} "
              f"max {max(c):.1f} s")
    for k, name in [(0, "wall"), (1, "CPU")]:
        ratios = [n[k] / o[k] for n, o in zip(times["new"], times["old"])]
        best = min(t[k] for t in times["new"]) / min(t[k] for t in times["old"])
        print(f"ratio new/old ({name}): best/best {best:.3f} (speed-up {1 / best:.2f}x); "
              f"per round min {min(ratios):.3f} max {max(ratios):.3f}")
    for which, r, recs in checks:
        same, first = compare(ref, recs)
        print(f"round {r + 1} {which}: {same}/{len(ref)} samples with results equal to the "
              f"old binary's first run" + (f"; first difference {first}" if first else ""))


if __name__ == "__main__":
    main()
