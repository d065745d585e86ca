"""Keras-application fixtures for crates/onnx/tests/arch.rs: small random-initialised versions of
keras.applications families, each converted by tf2onnx at opset 13 and at opset 18, with ONNX
Runtime's logits on fixed inputs and TensorFlow's float64 input gradients beside them, in the
format of scripts/gen_arch_fixtures.py (same manifest, inputs and weights).

Not run by CI: it needs tensorflow, keras 3, tf2onnx, onnx and onnxruntime. Usage:

    python scripts/gen_keras_fixtures.py [OUT_DIR] [--only NAME,...]

OUT_DIR defaults to crates/onnx/tests/fixtures/arch. Per architecture NAME it writes
NAME.tf13.onnx / NAME.tf18.onnx (exporter keys "tf13" and "tf18" in manifest.json),
NAME.ort.tf13.npy / NAME.ort.tf18.npy (ONNX Runtime's logits) and NAME.grad.npy (TensorFlow's
float64 gradient of sum(w * logits) w.r.t. the input, stored float32 in NCHW).

The Keras models take NHWC images; the fixtures keep the shared NCHW inputs x{S}.npy (faultline
transposes NCHW images for an NHWC model input, see `Model::prepare`), and the gradient is
transposed back to NCHW. Models are built with `weights=None`, `classifier_activation=None` (the
logits, no final Softmax) and a small input; they are shrunk through the builders' own
arguments (ResNet stacks, EfficientNet/ConvNeXt widths and depths, MobileNet `alpha`) and, where
a builder hard-codes its widths, by dividing every Conv2D/Dense width in the model's config by a
factor (`slim`): same layers and graph, fewer channels. Batch-norm statistics, affine parameters
and ConvNeXt's layer scales are randomised so that folding them is tested.
"""

import json
import os
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import tensorflow as tf
import keras
from keras.src.applications import convnext, densenet, efficientnet, resnet

from arch_fixture_util import command_line, export_failed, opset_and_ops, ort_logits, strip

NC = 7  # classes, as in gen_arch_fixtures.py
N = 2  # samples per fixed input
OPSETS = (13, 18)  # tf2onnx's default opset and the newest it writes


def slim(model, k):
    """The same flat functional model with every Conv2D/SeparableConv2D filter count and
    hidden Dense width divided by `k` (at least 2; the NC-class head kept), and the
    channel dimension of Reshape targets with it (EfficientNet's squeeze-excite)."""
    def div(c):
        return c if c in (3, NC) else max(2, c // k)

    def edit(layer):
        c = layer["config"]
        if "filters" in c:
            c["filters"] = div(c["filters"])
        if layer["class_name"] == "Dense":
            c["units"] = div(c["units"])
        if layer["class_name"] == "Reshape" and len(c["target_shape"]) == 3:
            c["target_shape"] = list(c["target_shape"][:2]) + [div(c["target_shape"][2])]

    return rebuild(model, edit)


def rebuild(model, edit):
    """A fresh model from `model`'s config with `edit` applied to every layer's entry (nested
    Sequential models included) and the recorded build shapes dropped."""
    def walk(layers):
        for layer in layers:
            layer.pop("build_config", None)
            edit(layer)
            if isinstance(layer["config"], dict) and "layers" in layer["config"]:
                walk(layer["config"]["layers"])

    cfg = model.get_config()
    walk(cfg["layers"])
    return model.__class__.from_config(cfg)


def plain_normalization(model):
    """Keras 3's Normalization layer (EfficientNet's built-in preprocessing) as the Rescaling
    it computes, (x − mean)/√variance per channel, with ImageNet's statistics: the layer keeps
    its statistics as eager tensors that tf2onnx turns into extra graph inputs."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])

    def edit(layer):
        if layer["class_name"] == "Normalization":
            layer["class_name"] = "Rescaling"
            layer["module"] = "keras.layers"
            c = layer["config"]
            layer["config"] = {"name": c["name"], "trainable": c["trainable"],
                               "dtype": c["dtype"], "scale": list(1 / std),
                               "offset": list(-mean / std)}

    return rebuild(model, edit)


def depthwise(model):
    """Grouped Conv2D layers with one channel per group (ConvNeXt's 7x7 depthwise convolution)
    as DepthwiseConv2D: the same operation, but Keras 3 runs grouped convolutions on CPU through
    an XLA-compiled function that tf2onnx cannot convert (StatefulPartitionedCall)."""
    def edit(layer):
        c = layer["config"]
        if layer["class_name"] == "Conv2D" and c.get("groups", 1) > 1 and \
                c["groups"] == c["filters"]:
            layer["class_name"] = "DepthwiseConv2D"
            layer["module"] = "keras.layers"
            layer["config"] = {k: c[k] for k in ("name", "trainable", "dtype", "kernel_size",
                                                 "strides", "padding", "data_format",
                                                 "dilation_rate", "activation", "use_bias")}
            layer["config"]["depth_multiplier"] = 1

    return rebuild(model, edit)


def randomise(model):
    """Random batch-norm statistics and affine parameters, random layer scales and biases."""
    rng = np.random.default_rng(1)
    for layer in iter_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(0.1 * rng.standard_normal(n).astype(np.float32))
            layer.moving_variance.assign((0.5 + rng.random(n)).astype(np.float32))
            if layer.gamma is not None:
                layer.gamma.assign((0.8 + 0.4 * rng.random(n)).astype(np.float32))
            if layer.beta is not None:
                layer.beta.assign((0.1 * rng.standard_normal(n)).astype(np.float32))
        elif isinstance(layer, convnext.LayerScale):
            n = layer.gamma.shape[0]
            layer.gamma.assign((0.5 + 0.5 * rng.random(n)).astype(np.float32))
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and \
                getattr(layer, "bias", None) is not None:
            n = layer.bias.shape[0]
            layer.bias.assign((0.1 * rng.standard_normal(n)).astype(np.float32))
    return model


def iter_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def as_float64(model):
    """A float64 copy of `model` with the same weights (for the reference gradient)."""
    def retype(o):
        if isinstance(o, dict):
            if o.get("class_name") == "DTypePolicy":
                return {**o, "config": {**o["config"], "name": "float64"}}
            return {k: retype(v) for k, v in o.items()}
        if isinstance(o, list):
            return [retype(v) for v in o]
        return "float64" if o == "float32" else o

    m64 = model.__class__.from_config(retype(model.get_config()))
    m64.set_weights([w.astype(np.float64) for w in model.get_weights()])
    return m64


# ---------------------------------------------------------------------------- models
def resnet_stacks(block_fn, blocks=1):
    """ResNet50's four stages with `blocks` blocks each (the v2 stack needs two: its first
    and last blocks are named apart) at an eighth of the width."""
    def stack_fn(x):
        x = block_fn(x, 8, blocks, stride1=1, name="conv2")
        x = block_fn(x, 16, blocks, name="conv3")
        x = block_fn(x, 32, blocks, name="conv4")
        return block_fn(x, 64, blocks, stride1=1 if block_fn is resnet.stack_residual_blocks_v2
                        else 2, name="conv5")
    return stack_fn


def keras_models():
    A = keras.applications
    top = dict(weights=None, classes=NC, classifier_activation=None)
    s32 = dict(input_shape=(32, 32, 3), **top)
    return {
        # ResNet50 / ResNet50V2 with one bottleneck block of a quarter..eighth width per stage.
        "keras_resnet50": (32, lambda: slim(resnet.ResNet(
            resnet_stacks(resnet.stack_residual_blocks_v1), False, True,
            name="resnet50", **s32), 4)),
        "keras_resnet50v2": (32, lambda: slim(resnet.ResNet(
            resnet_stacks(resnet.stack_residual_blocks_v2, 2), True, True,
            name="resnet50v2", **s32), 4)),
        "keras_densenet121": (32, lambda: slim(densenet.DenseNet([2, 2, 2, 2], **s32), 8)),
        "keras_mobilenet": (32, lambda: slim(A.MobileNet(alpha=0.25, **s32), 4)),
        "keras_mobilenet_v2": (32, lambda: slim(A.MobileNetV2(alpha=0.35, **s32), 8)),
        "keras_mobilenet_v3_small": (32, lambda: slim(A.MobileNetV3Small(
            alpha=0.75, **s32), 16)),
        "keras_mobilenet_v3_large": (32, lambda: slim(A.MobileNetV3Large(
            alpha=0.75, **s32), 16)),
        "keras_efficientnet_b0": (32, lambda: plain_normalization(slim(
            efficientnet.EfficientNet(0.25, 0.25, 32, name="efficientnetb0", **s32), 4))),
        "keras_efficientnet_v2_b0": (32, lambda: slim(A.EfficientNetV2B0(
            include_preprocessing=False, **s32), 32)),
        "keras_convnext_tiny": (32, lambda: depthwise(convnext.ConvNeXt(
            depths=[1, 1, 1, 1], projection_dims=[8, 16, 24, 32], name="convnext_tiny",
            include_preprocessing=False,
            **s32))),
        "keras_vgg16": (32, lambda: slim(A.VGG16(**s32), 64)),
        "keras_xception": (75, lambda: slim(A.Xception(input_shape=(75, 75, 3), **top), 64)),
        "keras_inception_v3": (75, lambda: slim(A.InceptionV3(input_shape=(75, 75, 3),
                                                              **top), 64)),
    }


# ---------------------------------------------------------------------------- export
def convert(model, size, opset, path):
    import tf2onnx
    spec = (tf.TensorSpec([None, size, size, 3], tf.float32, name="x"),)

    @tf.function(input_signature=spec)
    def f(x):
        return model(x, training=False)

    tf2onnx.convert.from_function(f, input_signature=spec, opset=opset, output_path=path,
                                  custom_op_handlers={"Erfc": (erfc, [])})


def erfc(ctx, node, name, args):
    """tf2onnx has no rule for TensorFlow's Erfc (Keras 3's exact GELU is 0.5·x·erfc(−x/√2)):
    Erfc(x) = 1 − Erf(x)."""
    from tf2onnx import utils
    node.type = "Erf"
    one = ctx.make_const(utils.make_name("one"), np.array(1, dtype=np.float32))
    sub = ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(node.name))
    ctx.replace_inputs(sub, [one.output[0], node.output[0]])


def main():
    out, only, man_path, manifest = command_line()
    # The same weights and inputs as gen_arch_fixtures.py writes.
    weights = np.random.default_rng(0).standard_normal((N, NC)).astype(np.float32)
    np.save(os.path.join(out, "weights.npy"), weights)
    for name, (size, make, *opsets) in keras_models().items():
        opsets = opsets[0] if opsets else OPSETS
        if only and name not in only:
            continue
        x = np.random.default_rng(size).random((N, 3, size, size), dtype=np.float32)
        np.save(os.path.join(out, f"x{size}.npy"), x)
        print(f"== {name}", flush=True)
        try:
            keras.utils.set_random_seed(0)
            model = randomise(make())
            one(name, size, model, x, weights, out, manifest, opsets)
        except Exception as e:
            traceback.print_exc()
            for op in opsets:
                manifest[f"{name}.tf{op}"] = {"arch": name, "exporter": f"tf{op}", "size": size,
                                              "status": f"failed: {str(e)[:300]}"}
        json.dump(manifest, open(man_path, "w"), indent=1, sort_keys=True)


def one(name, size, model, x, weights, out, manifest, opsets):
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    ref32 = model(x_nhwc, training=False).numpy()
    m64 = as_float64(model)
    xd = tf.constant(x_nhwc.astype(np.float64))
    with tf.GradientTape() as tape:
        tape.watch(xd)
        z = m64(xd, training=False)
        loss = tf.reduce_sum(z * weights.astype(np.float64))
    g = tape.gradient(loss, xd).numpy()
    z64 = z.numpy()
    print(f"   float64 vs float32 logits: {np.abs(z64 - ref32).max() / np.abs(z64).max():.2e}")
    np.save(os.path.join(out, f"{name}.grad.npy"), g.transpose(0, 3, 1, 2).astype(np.float32))
    for op in opsets:
        ex = f"tf{op}"
        path = os.path.join(out, f"{name}.{ex}.onnx")
        entry = {"arch": name, "exporter": ex, "size": size, "onnx": f"{name}.{ex}.onnx",
                 "input": f"x{size}.npy", "grad": f"{name}.grad.npy",
                 "logits": f"{name}.ort.{ex}.npy"}
        try:
            convert(model, size, op, path)
            strip(path)
            opset, ops, producer = opset_and_ops(path)
            entry.update(opset=opset, producer=producer, ops=ops, bytes=os.path.getsize(path))
            y = ort_logits(path, x_nhwc)
            entry["ort_vs_tf"] = float(np.abs(y - ref32).max() / np.abs(ref32).max())
            if entry["ort_vs_tf"] > 1e-4:  # a wrong conversion: nothing to test against
                raise ValueError(f"tf2onnx's graph is wrong: ONNX Runtime's logits differ from "
                                 f"TensorFlow's by {entry['ort_vs_tf']:.2e} (max-relative)")
            np.save(os.path.join(out, entry["logits"]), y)
            entry["status"] = "ok"
        except Exception as e:
            export_failed(entry, e, path)
        print(f"   {ex}: {entry['status']} {entry.get('bytes', '')} "
              f"ort_vs_tf={entry.get('ort_vs_tf', '')}", flush=True)
        manifest[f"{name}.{ex}"] = entry


if __name__ == "__main__":
    main()
