"""Reference logits from ONNX Runtime, for crates/onnx/tests/export.rs.

Usage: ort_logits.py MODEL.onnx INPUT.npy OUTPUT.npy

INPUT is float32 NCHW; OUTPUT gets the model's first output as float32, computed by the CPU
execution provider with one thread. When the `onnx` package is present the model is first
validated by its checker (by path, so external data is checked too).
Exit status 3: onnxruntime (or numpy) is not installed.
"""

import sys

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:
    print(f"onnxruntime not installed: {e}", file=sys.stderr)
    sys.exit(3)


def main() -> None:
    model, inp, out = sys.argv[1:4]
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    x = np.load(inp)
    assert x.dtype == np.float32 and x.ndim == 4, (x.dtype, x.shape)
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.save(out, np.ascontiguousarray(y, dtype=np.float32))


if __name__ == "__main__":
    main()
