"""Helpers shared by gen_arch_fixtures.py (PyTorch exporters) and gen_keras_fixtures.py
(tf2onnx): shrinking an exported file and running it in ONNX Runtime."""

import json
import os
import sys
import traceback

import numpy as np


def command_line():
    """`[OUT_DIR] [--only NAME,...]` → (out dir, names or None, manifest path, manifest so far)."""
    out = "crates/onnx/tests/fixtures/arch"
    only = None
    args = sys.argv[1:]
    if "--only" in args:
        i = args.index("--only")
        only = set(args[i + 1].split(","))
        del args[i:i + 2]
    if args:
        out = args[0]
    os.makedirs(out, exist_ok=True)
    man_path = os.path.join(out, "manifest.json")
    manifest = json.load(open(man_path)) if os.path.exists(man_path) else {}
    return out, only, man_path, manifest


def strip(path):
    """Drops doc strings, per-node metadata (the dynamo exporter's stack traces) and shape
    annotations, and renames every node and inner tensor to a short name (the exporters' scope
    names are a large part of a small file); nothing reads them."""
    import onnx
    m = onnx.load(path)
    g = m.graph
    keep = {v.name for v in list(g.input) + list(g.output)}
    names = {}

    def short(name):
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for t in g.initializer:
        t.name = short(t.name)
    for i, n in enumerate(g.node):
        n.doc_string = ""
        del n.metadata_props[:]
        n.name = f"n{i}_{n.op_type}"
        n.input[:] = [short(v) for v in n.input]
        n.output[:] = [short(v) for v in n.output]
    del g.value_info[:]
    onnx.save(m, path)


def ort_logits(path, x):
    """ONNX Runtime's output on `x`: one thread, no graph optimisation, the model checked."""
    import onnx
    import onnxruntime as ort
    onnx.checker.check_model(path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float32)


def opset_and_ops(path):
    """(default-domain opset, sorted operator names, producer) of an ONNX file."""
    import onnx
    m = onnx.load(path)
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    ops = sorted({n.op_type for n in m.graph.node})
    return opset, ops, m.producer_name + " " + m.producer_version


def export_failed(entry, error, path):
    """Records a failed export (or a wrong one) in its manifest entry and removes the file."""
    traceback.print_exc()
    msg = str(error).strip().splitlines()
    entry["status"] = "export failed: " + (msg[0] if msg else type(error).__name__)[:300]
    if os.path.exists(path):
        os.remove(path)
