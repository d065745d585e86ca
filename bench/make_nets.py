#!/usr/bin/env python3
"""Writes the extra benchmark networks as ONNX files with random weights.

    ../venv-peer/bin/python bench/make_nets.py [--out bench/nets]

  wrn16-4.onnx       WideResNet-16-4 for 3x32x32 CIFAR input, 10 classes (2.7 M parameters):
                     3x3 stem to 16 channels, three groups of two pre-activation basic blocks of
                     width 64, 128, 256 (stride 1, 2, 2; 1x1 projection shortcuts where the
                     shape changes), BN-ReLU, global average pool, linear.
  resnet18-224.onnx  torchvision's ResNet-18 for 3x224x224 input, 1000 classes (11.7 M parameters).
  resnet50-224.onnx  torchvision's ResNet-50 for 3x224x224 input, 1000 classes (25.6 M parameters):
                     the bottleneck blocks' 1x1 convolutions and strided 3x3s of ImageNet models.

Weights are torch's default initialisation under a fixed seed, batch-norm statistics are
randomised (so they are not identities) and the models are exported in eval mode with a free
batch dimension. Both faultline (`faultline bench --model`) and `bench/peer_pytorch.py` read
these same files, so every engine runs the same network with the same weights. (ResNet-20,
the third network, is ../shared/models/cifar10/cifar10-resnet20.onnx.)
"""

import argparse
import os

import torch
import torch.nn as nn
import torch.nn.functional as F


class WideBlock(nn.Module):
    """Pre-activation basic block of a WideResNet (Zagoruyko & Komodakis 2016)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(F.relu(self.bn2(y)))
        return y + (self.short(o) if self.short is not None else x)


class WideResNet(nn.Module):
    def __init__(self, depth=16, k=4, classes=10):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * k, 32 * k, 64 * k]
        self.stem = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        blocks, cin = [], widths[0]
        for g, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                blocks.append(WideBlock(cin, widths[g + 1], stride if i == 0 else 1))
                cin = widths[g + 1]
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        y = self.blocks(self.stem(x))
        y = F.relu(self.bn(y))
        y = F.adaptive_avg_pool2d(y, 1).flatten(1)
        return self.fc(y)


def randomise_bn(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            m.weight.data.copy_(0.5 + 0.5 * torch.rand(c, generator=gen))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=gen))


def export(model, shape, path):
    model.eval()
    x = torch.rand(2, *shape)
    torch.onnx.export(
        model, (x,), path, input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, opset_version=17,
        dynamo=False,
    )
    n = sum(p.numel() for p in model.parameters())
    print(f"{path}: {n / 1e6:.2f} M parameters, input {list(shape)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "nets"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        wrn = WideResNet(16, 4, 10)
        randomise_bn(wrn, gen)
        export(wrn, (3, 32, 32), os.path.join(args.out, "wrn16-4.onnx"))
        import torchvision

        r18 = torchvision.models.resnet18(weights=None, num_classes=1000)
        randomise_bn(r18, gen)
        export(r18, (3, 224, 224), os.path.join(args.out, "resnet18-224.onnx"))
        r50 = torchvision.models.resnet50(weights=None, num_classes=1000)
        randomise_bn(r50, gen)
        export(r50, (3, 224, 224), os.path.join(args.out, "resnet50-224.onnx"))


if __name__ == "__main__":
    main()
