#!/usr/bin/env python3
"""ONNX Runtime against faultline on the QDQ models `faultline quantize` writes (issue 18).

Images: the first --per-class JPEGs (file-name order) of every class folder of --data, decoded
once with Pillow and written as uint8 NHWC `x.npy` with `x_labels.npy` beside it, so both tools
see the identical float32 images (uint8 / 255).

For each --bits, `faultline quantize` (per-channel weights, minmax activations, calibrated on
--calibration) writes WORK/int<bits>/model.onnx and samples.jsonl (per sample: the float and the
quantized prediction). ONNX Runtime (CPU, default graph optimizations, which fuse the QDQ
pairs) then predicts the same images with the float model and with the quantized file; printed:
faultline's float and quantized accuracy, ORT's, and the share of images on which ORT's
prediction equals faultline's (float and quantized).

Usage (from the repository root, after `cargo build --release`):

    ../venv-peer/bin/python bench/quant_agreement.py [--model M.onnx] [--data DIR]
        [--calibration DIR] [--per-class 100] [--bits 8 4] [--work /tmp/quant_agreement]
"""

import argparse
import json
import os
import subprocess
import sys


def images(root, per_class, work):
    """Writes the first `per_class` images of each class folder as x.npy / x_labels.npy."""
    import numpy as np
    from PIL import Image

    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    xs, ys = [], []
    for c, name in enumerate(classes):
        d = os.path.join(root, name)
        files = sorted(f for f in os.listdir(d) if f.lower().endswith((".jpg", ".jpeg", ".png")))
        for f in files[:per_class]:
            xs.append(np.asarray(Image.open(os.path.join(d, f)).convert("RGB"), dtype=np.uint8))
            ys.append(c)
    x, y = np.stack(xs), np.array(ys, dtype=np.int64)
    np.save(os.path.join(work, "x.npy"), x)
    np.save(os.path.join(work, "x_labels.npy"), y)
    return x, y


def ort_predictions(model, x):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    xf = x.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    out = [s.run(None, {name: xf[i:i + 250]})[0] for i in range(0, len(xf), 250)]
    return np.concatenate(out).argmax(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="../shared/models/cifar10/cifar10-resnet20.onnx")
    ap.add_argument("--data", default="../shared/data/cifar10/jpg/test")
    ap.add_argument("--calibration", default="../shared/data/cifar10/jpg/train")
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 4])
    ap.add_argument("--faultline", default="target/release/faultline")
    ap.add_argument("--work", default="/tmp/quant_agreement")
    a = ap.parse_args()
    import numpy as np

    os.makedirs(a.work, exist_ok=True)
    x, y = images(a.data, a.per_class, a.work)
    n = len(y)
    print(f"{n} images, {a.per_class} per class, from {a.data}; ORT {ort_version()}")
    pf = ort_predictions(a.model, x)
    print(f"float model: ORT accuracy {100 * (pf == y).mean():.2f} %")
    for bits in a.bits:
        out = os.path.join(a.work, f"int{bits}")
        cmd = [a.faultline, "quantize", "-m", a.model, "-d", os.path.join(a.work, "x.npy"),
               "--calibration", a.calibration, "--bits", str(bits), "--per-channel",
               "-o", out, "--overwrite"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        recs = {}
        with open(os.path.join(out, "samples.jsonl")) as f:
            for line in f:
                r = json.loads(line)
                recs[r["index"]] = r
        if len(recs) != n:
            sys.exit(f"error: {len(recs)} records for {n} images in {out}")
        fl_f = np.array([recs[i]["clean_prediction"] for i in range(n)])
        fl_q = np.array([recs[i]["prediction"] for i in range(n)])
        pq = ort_predictions(os.path.join(out, "model.onnx"), x)
        print(f"int{bits} per-channel: faultline accuracy float {100 * (fl_f == y).mean():.2f} %, "
              f"quantized {100 * (fl_q == y).mean():.2f} %; ORT quantized "
              f"{100 * (pq == y).mean():.2f} %; ORT = faultline on "
              f"{100 * (pq == fl_q).mean():.2f} % (quantized), "
              f"{100 * (pf == fl_f).mean():.2f} % (float)")


def ort_version():
    import onnxruntime as ort

    return ort.__version__


if __name__ == "__main__":
    main()
