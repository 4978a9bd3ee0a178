"""MobileNetV2 (Sandler et al.) in torchvision's module layout, with the strides of ImageNet (as the DataFree code
bases build it for CIFAR) or of CIFAR (stride 1 in the stem and the second stage, as pytorch-cifar-models
trains it), and any width multiplier."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

# (expansion t, channels c, blocks n, stride s of the first block) per stage, before the width multiplier
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def rounded_channels(channels: float, divisor: int = 8) -> int:
    """``channels`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``), never more than 10%
    below it: the rule MobileNets use to scale their widths."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def _conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """1×1 expansion (unless t = 1) → 3×3 depthwise (strided) → linear 1×1 projection; residual when the shape
    is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = [] if expansion == 1 else [_conv_bn_relu6(cin, hidden, 1)]
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """``features`` (stem, 17 inverted residual blocks, 1×1 to 1280·max(1, width) channels), global average
    pooling, ``classifier`` (dropout 0.2, linear). ``cifar_strides``: stride 1 in the stem and the second stage."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0,
                 cifar_strides: bool = True) -> None:
        super().__init__()
        cin = rounded_channels(32 * width)
        last = rounded_channels(1280 * max(1.0, width))
        layers: list[nn.Module] = [_conv_bn_relu6(in_channels, cin, 3, stride=1 if cifar_strides else 2)]
        for stage, (t, c, n, s) in enumerate(STAGES):
            cout = rounded_channels(c * width)
            stride = 1 if cifar_strides and stage == 1 else s
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, t))
                cin = cout
        layers.append(_conv_bn_relu6(cin, last, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))
