"""Architecture fixtures for crates/onnx/tests/arch.rs: small random-initialised versions of the
torchvision classification families and timm's common families, each exported with both PyTorch
exporters (TorchScript-based `dynamo=False` at opset 17, and `dynamo=True` at opset 18), with
ONNX Runtime's logits on fixed inputs and PyTorch's float64 input gradients beside them.

Not run by CI: it needs torch, torchvision, timm, onnx, onnxruntime and onnxscript (the Keras
families come from the sibling scripts/gen_keras_fixtures.py). Usage:

    python scripts/gen_arch_fixtures.py [OUT_DIR] [--only NAME,...]

OUT_DIR defaults to crates/onnx/tests/fixtures/arch. It writes, per architecture NAME:
  NAME.ts.onnx / NAME.dyn.onnx    the two exports (a failed export is recorded, not fatal)
  NAME.ort.ts.npy / .ort.dyn.npy  ONNX Runtime's logits (float32 [N, K]) on the fixed input
  NAME.grad.npy                   PyTorch's float64 gradient of sum(w * logits) w.r.t. the input
                                  (stored float32), w = weights.npy[:N, :K]
and shared inputs x{S}.npy (float32 [2, 3, S, S], uniform in [0, 1), seed 0) and weights.npy,
plus manifest.json: one entry per (architecture, exporter) with the file names, input size,
opset, producer and either "ok" or the exporter's error.

Models are shrunk through their constructors' own arguments (widths, depths, input size), or,
where a family hard-codes its widths (ResNet, VGG, AlexNet, GoogLeNet, Inception v3,
SqueezeNet, MNASNet), by dividing every channel count by a factor after construction (`slim`):
same modules and graph structure, fewer channels. Batch-norm statistics and affine parameters
are randomised so that folding them is tested.
"""

import json
import os
import traceback

import numpy as np
import torch
import torch.nn as nn

from arch_fixture_util import command_line, export_failed, opset_and_ops, ort_logits, strip

NC = 7  # classes: distinct from every channel count so `slim` can recognise the head
N = 2  # samples per fixed input
torch.manual_seed(0)


def slim(model, k):
    """Divides the channel counts of every Conv2d, BatchNorm2d and Linear by `k` (rounding up),
    keeping the 3 input channels and the NC outputs (the head), in place. Where a count is not
    a multiple of `k`, a concatenation can make the next layer's input width disagree: the
    forward pass on the fixed input then fails and the architecture is reported."""
    def div(c):
        if c in (3, NC):
            return c
        return -(-c // k)

    for parent in list(model.modules()):
        for name, c in list(parent.named_children()):
            if isinstance(c, nn.Conv2d):
                cin, cout = div(c.in_channels), div(c.out_channels)
                g = c.groups if c.groups == 1 else (cin if c.groups == c.in_channels else c.groups)
                new = nn.Conv2d(cin, cout, c.kernel_size, c.stride, c.padding, c.dilation, g,
                                c.bias is not None, c.padding_mode)
            elif isinstance(c, nn.BatchNorm2d):
                new = nn.BatchNorm2d(div(c.num_features), c.eps, c.momentum)
            elif isinstance(c, nn.Linear):
                new = nn.Linear(div(c.in_features), div(c.out_features), c.bias is not None)
            else:
                continue
            setattr(parent, name, new)
    return model


def randomise_norms(model):
    """Random batch-norm statistics and affine parameters (so folding is tested), and random
    weights for layers that their family initialises to zero (ViT heads, zero-init-last)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)) and not m.weight.data.any():
            fan_in = m.weight[0].numel()
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g) / fan_in ** 0.5)
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            if m.affine:
                m.weight.data.copy_(0.8 + 0.4 * torch.rand(n, generator=g))
                m.bias.data.copy_(0.1 * torch.randn(n, generator=g))
    return model


# ---------------------------------------------------------------------------- torchvision
def tv_models():
    import torchvision.models as tvm
    from torchvision.models import resnet as R
    from torchvision.models.convnext import CNBlockConfig
    from torchvision.models.efficientnet import _efficientnet_conf
    from torchvision.models.mobilenetv3 import _mobilenet_v3_conf
    from torchvision.models.regnet import BlockParams
    from torchvision.models.swin_transformer import (SwinTransformerBlock,
                                                     SwinTransformerBlockV2, PatchMergingV2)

    def narrow_classifier(m, cin):
        """VGG's and AlexNet's classifiers as they are (Dropout, Linear, ReLU, …) with 1024
        hidden units instead of 4096 (32 after `slim`), the first taking `cin` features."""
        lin = [i for i, c in enumerate(m.classifier) if isinstance(c, nn.Linear)]
        m.classifier[lin[0]] = nn.Linear(cin, 1024)
        m.classifier[lin[1]] = nn.Linear(1024, 1024)
        m.classifier[lin[2]] = nn.Linear(1024, NC)

    def small_vgg():
        m = tvm.VGG(tvm.vgg.make_layers([64, "M", 128, "M", 256, 256, "M", 512, "M"],
                                        batch_norm=True), num_classes=NC)
        m.avgpool = nn.AdaptiveAvgPool2d(2)  # 32 px → 2x2 after four pools (7x7 at 224 px)
        narrow_classifier(m, 512 * 4)
        return slim(m, 32)

    def small_alexnet():
        m = tvm.AlexNet(num_classes=NC)
        m.avgpool = nn.AdaptiveAvgPool2d(1)  # 64 px → 1x1 (6x6 at 224 px)
        narrow_classifier(m, 256)
        return slim(m, 32)

    def small_googlenet():
        m = tvm.GoogLeNet(num_classes=NC, aux_logits=False, init_weights=True)
        return slim(m, 16)

    def small_inception():
        m = tvm.Inception3(num_classes=NC, aux_logits=False, init_weights=True)
        return slim(m, 32)

    def small_mnas():
        return slim(tvm.MNASNet(0.5, num_classes=NC), 8)

    def narrow_cpb(m):
        """Swin V2's continuous position-bias MLP has 512 hidden units whatever the width (and
        the dynamo exporter stores its hidden layer over the whole coordinate table): 16 keep
        the same layers."""
        for mod in m.modules():
            if hasattr(mod, "cpb_mlp"):
                heads = mod.cpb_mlp[2].out_features
                mod.cpb_mlp = nn.Sequential(nn.Linear(2, 16), nn.ReLU(inplace=True),
                                            nn.Linear(16, heads, bias=False))
        return m

    effb0, _ = _efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.25)
    effb0 = effb0[:5]
    effv2, _ = _efficientnet_conf("efficientnet_v2_s")
    for c in effv2:
        c.input_channels //= 8
        c.out_channels //= 8
        c.num_layers = 1
    mv3, _ = _mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.125)
    mv3l, _ = _mobilenet_v3_conf("mobilenet_v3_large", width_mult=0.125)
    mv3l = mv3l[:6] + mv3l[-2:-1]  # every kind of block, fewer of the wide ones
    mv3 = mv3[:4] + mv3[-1:]
    for cfgs in (mv3, mv3l):
        for prev, c in zip(cfgs, cfgs[1:]):
            c.input_channels = prev.out_channels
    mv2 = [[1, 16, 1, 1], [6, 32, 2, 2], [6, 64, 1, 2], [6, 128, 1, 2]]
    rn = dict(num_classes=NC)
    return {
        "tv_resnet18": (32, lambda: slim(tvm.ResNet(R.BasicBlock, [1, 1, 1, 1], **rn), 16)),
        "tv_resnet50": (32, lambda: slim(tvm.ResNet(R.Bottleneck, [1, 1, 1, 1], **rn), 32)),
        "tv_resnext50": (32, lambda: slim(tvm.ResNet(R.Bottleneck, [1, 1, 1, 1], groups=4,
                                                     width_per_group=16, **rn), 16)),
        "tv_wide_resnet50": (32, lambda: slim(tvm.ResNet(R.Bottleneck, [1, 1, 1, 1],
                                                         width_per_group=128, **rn), 32)),
        "tv_densenet": (32, lambda: tvm.DenseNet(growth_rate=8, block_config=(2, 2, 2),
                                                 num_init_features=16, bn_size=2,
                                                 num_classes=NC)),
        "tv_googlenet": (32, small_googlenet),
        "tv_inception_v3": (75, small_inception),
        "tv_mobilenet_v2": (32, lambda: slim(tvm.MobileNetV2(
            num_classes=NC, width_mult=1.0, inverted_residual_setting=mv2), 8)),
        "tv_mobilenet_v3_small": (32, lambda: tvm.MobileNetV3(mv3, last_channel=32,
                                                              num_classes=NC)),
        "tv_mobilenet_v3_large": (32, lambda: tvm.MobileNetV3(mv3l, last_channel=32,
                                                              num_classes=NC)),
        "tv_shufflenet_v2": (32, lambda: tvm.ShuffleNetV2([1, 1, 1], [8, 16, 32, 64, 128],
                                                          num_classes=NC)),
        "tv_squeezenet": (32, lambda: slim(tvm.SqueezeNet("1_1", num_classes=NC), 8)),
        "tv_mnasnet": (32, small_mnas),
        "tv_efficientnet_b0": (32, lambda: tvm.EfficientNet(effb0, dropout=0.2,
                                                            num_classes=NC, last_channel=64)),
        "tv_efficientnet_v2": (32, lambda: tvm.EfficientNet(effv2, dropout=0.2,
                                                            num_classes=NC, last_channel=64)),
        "tv_regnet": (32, lambda: tvm.RegNet(BlockParams.from_init_params(
            depth=4, w_0=8, w_a=8.0, w_m=2.0, group_width=8, se_ratio=0.25),
            stem_width=8, num_classes=NC)),
        "tv_vgg": (32, small_vgg),
        "tv_alexnet": (64, small_alexnet),
        "tv_convnext": (32, lambda: tvm.ConvNeXt([CNBlockConfig(8, 16, 1),
                                                  CNBlockConfig(16, 32, 1),
                                                  CNBlockConfig(32, None, 1)],
                                                 num_classes=NC)),
        "tv_vit": (32, lambda: tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=2,
                                                     num_heads=2, hidden_dim=16, mlp_dim=32,
                                                     num_classes=NC)),
        "tv_swin": (32, lambda: tvm.SwinTransformer(patch_size=[2, 2], embed_dim=8,
                                                    depths=[1, 1, 1], num_heads=[1, 2, 2],
                                                    window_size=[4, 4], num_classes=NC,
                                                    block=SwinTransformerBlock)),
        "tv_swin_v2": (32, lambda: narrow_cpb(tvm.SwinTransformer(
            patch_size=[2, 2], embed_dim=8, depths=[1, 1, 1], num_heads=[1, 2, 2],
            window_size=[4, 4], num_classes=NC, block=SwinTransformerBlockV2,
            downsample_layer=PatchMergingV2))),
        "tv_maxvit": (32, lambda: tvm.MaxVit(input_size=(32, 32), stem_channels=8,
                                             partition_size=2, block_channels=[8, 16],
                                             block_layers=[1, 1], head_dim=8,
                                             stochastic_depth_prob=0.0, num_classes=NC)),
    }


# ---------------------------------------------------------------------------- timm
def timm_models():
    import timm
    from timm.layers import create_conv2d
    from timm.models import efficientnet as E, mobilenetv3 as M, regnet as RG, resnet as R
    from timm.models import resnetv2 as R2
    from functools import partial
    from timm.layers.norm_act import BatchNormAct2d, GroupNormAct

    def narrow_head(m, bn=False):
        """timm's EfficientNet/MobileNetV3 heads widen to 1280 channels whatever the
        multiplier; 32 keeps the same layers at a fraction of the bytes."""
        cin = m.conv_head.in_channels
        m.conv_head = nn.Conv2d(cin, 32, 1, bias=m.conv_head.bias is not None)
        if bn:
            m.bn2 = BatchNormAct2d(32, act_layer=nn.SiLU)
        m.classifier = nn.Linear(32, NC)
        return m

    vit = dict(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=NC)
    return {
        "timm_vit": (32, lambda: timm.create_model("vit_tiny_patch16_224", **vit)),
        "timm_deit": (32, lambda: timm.create_model("deit_tiny_distilled_patch16_224", **vit)),
        "timm_swin": (32, lambda: timm.create_model(
            "swin_tiny_patch4_window7_224", img_size=32, patch_size=2, embed_dim=8,
            depths=(1, 1, 1), num_heads=(1, 2, 2), window_size=4, num_classes=NC)),
        "timm_convnext": (32, lambda: timm.create_model(
            "convnext_atto", dims=(4, 8, 16, 32), depths=(1, 1, 1, 1), num_classes=NC)),
        "timm_efficientnet": (32, lambda: narrow_head(E._gen_efficientnet(
            "efficientnet_b0", channel_multiplier=0.125, depth_multiplier=0.25,
            num_classes=NC), bn=True)),
        "timm_mobilenetv3": (32, lambda: narrow_head(M._gen_mobilenet_v3(
            "mobilenetv3_large_100", 0.125, depth_multiplier=0.25, num_classes=NC))),
        "timm_regnet": (32, lambda: RG.RegNet(RG.RegNetCfg(depth=6, w0=8, wa=8.0, wm=2.0,
                                                            group_size=8, se_ratio=0.25,
                                                            stem_width=8), num_classes=NC)),
        "timm_resnet_d": (32, lambda: R.ResNet(R.BasicBlock, (1, 1, 1, 1), stem_width=8,
                                               stem_type="deep", avg_down=True,
                                               channels=(4, 8, 16, 32), num_classes=NC)),
        "timm_wide_resnet": (32, lambda: R.ResNet(R.Bottleneck, (1, 1, 1, 1), stem_width=8,
                                                  base_width=128, channels=(2, 4, 8, 16),
                                                  num_classes=NC)),
        "timm_preact_resnet": (32, lambda: R2.ResNetV2(
            [1, 1, 1, 1], channels=(8, 16, 32, 64), stem_chs=8, num_classes=NC,
            norm_layer=BatchNormAct2d, conv_layer=create_conv2d)),
        "timm_bit_resnet": (32, lambda: R2.ResNetV2(
            [1, 1, 1, 1], channels=(8, 16, 32, 64), stem_chs=16, num_classes=NC,
            stem_type="fixed", norm_layer=partial(GroupNormAct, num_groups=4))),
    }


# ---------------------------------------------------------------------------- export
def export_ts(model, x, path):
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})


def export_dyn(model, x, path):
    try:
        batch = torch.export.Dim("N", min=1, max=1024)
        prog = torch.onnx.export(model, (x,), dynamo=True, opset_version=18,
                                 input_names=["x"], output_names=["logits"],
                                 dynamic_shapes=({0: batch},), verbose=False)
    except Exception:  # some models only export with a static batch
        prog = torch.onnx.export(model, (x,), dynamo=True, opset_version=18,
                                 input_names=["x"], output_names=["logits"], verbose=False)
    prog.save(path, external_data=False)


def main():
    out, only, man_path, manifest = command_line()
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((N, NC)).astype(np.float32)
    np.save(os.path.join(out, "weights.npy"), weights)
    inputs = {}
    models = {**tv_models(), **timm_models()}
    for name, (size, make) in models.items():
        if only and name not in only:
            continue
        if size not in inputs:
            xs = np.random.default_rng(size).random((N, 3, size, size), dtype=np.float32)
            np.save(os.path.join(out, f"x{size}.npy"), xs)
            inputs[size] = torch.from_numpy(xs)
        x = inputs[size]
        print(f"== {name}", flush=True)
        try:
            torch.manual_seed(0)
            model = randomise_norms(make()).eval()
        except Exception as e:
            traceback.print_exc()
            for ex in ("ts", "dyn"):
                manifest[f"{name}.{ex}"] = {"arch": name, "exporter": ex, "size": size,
                                            "status": f"construction failed: {e}"}
            continue
        try:
            grad_and_exports(name, size, make, model, x, weights, out, manifest)
        except Exception as e:
            traceback.print_exc()
            for ex in ("ts", "dyn"):
                manifest[f"{name}.{ex}"] = {"arch": name, "exporter": ex, "size": size,
                                            "status": f"failed: {e}"}
        json.dump(manifest, open(man_path, "w"), indent=1, sort_keys=True)
    json.dump(manifest, open(man_path, "w"), indent=1, sort_keys=True)


def grad_and_exports(name, size, make, model, x, weights, out, manifest):
    if True:
        # PyTorch's float64 gradient of sum(w * logits).
        m64 = randomise_norms(make()).eval()
        m64.load_state_dict(model.state_dict())
        m64 = m64.double()
        xd = x.double().requires_grad_(True)
        with torch.no_grad():
            ref32 = model(x).numpy()
        z = m64(xd)
        (z * torch.from_numpy(weights).double()).sum().backward()
        np.save(os.path.join(out, f"{name}.grad.npy"), xd.grad.numpy().astype(np.float32))
        for ex, fn in (("ts", export_ts), ("dyn", export_dyn)):
            path = os.path.join(out, f"{name}.{ex}.onnx")
            entry = {"arch": name, "exporter": ex, "size": size, "onnx": f"{name}.{ex}.onnx",
                     "input": f"x{size}.npy", "grad": f"{name}.grad.npy",
                     "logits": f"{name}.ort.{ex}.npy"}
            try:
                fn(model, x, path)
                strip(path)
                opset, ops, producer = opset_and_ops(path)
                entry.update(opset=opset, producer=producer, ops=ops,
                             bytes=os.path.getsize(path))
                y = ort_logits(path, x.numpy())
                np.save(os.path.join(out, entry["logits"]), y)
                entry["ort_vs_torch"] = float(np.abs(y - ref32).max() / np.abs(ref32).max())
                entry["status"] = "ok"
            except Exception as e:
                export_failed(entry, e, path)
            print(f"   {ex}: {entry['status']} {entry.get('bytes', '')}", flush=True)
            manifest[f"{name}.{ex}"] = entry


if __name__ == "__main__":
    main()
