"""ResNets with a CIFAR stem (3×3 convolution, no max-pool), as the DFKD literature uses them: ResNet-18/34/50
(stages of 64-128-256-512 channels) and the thin CIFAR ResNets of He et al. (ResNet-8 … 110: stages of
16-32-64; resnet8x4 / resnet32x4: 64-128-256 after a 32-channel stem)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _projection(cin: int, cout: int, stride: int) -> nn.Module:
    """The shortcut: identity when the shape is kept, else a strided 1×1 convolution with BatchNorm."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (1×1 projection when the shape changes)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut = _projection(cin, width, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand to ``4 × width``, with a residual connection."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = self.expansion * width
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = _projection(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """Stem (3×3 conv → BN → ReLU), then ``blocks[s]`` blocks of width ``widths[s]`` per stage (the first of
    every stage but the first strided by 2), global average pooling and a linear classifier."""

    def __init__(self, blocks: tuple[int, ...], num_classes: int = 10, in_channels: int = 3,
                 widths: tuple[int, ...] = (64, 128, 256, 512), stem: int | None = None,
                 block: type[BasicBlock | Bottleneck] = BasicBlock) -> None:
        super().__init__()
        if len(blocks) != len(widths):
            raise ValueError(f"one width per stage: {len(blocks)} stages, {len(widths)} widths")
        cin = widths[0] if stem is None else stem
        self.stem = nn.Sequential(nn.Conv2d(in_channels, cin, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        layers = []
        for stage, (count, width) in enumerate(zip(blocks, widths)):
            for i in range(count):
                layers.append(block(cin, width, stride=2 if stage > 0 and i == 0 else 1))
                cin = width * block.expansion
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(self.stem(x))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet18(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return ResNet((2, 2, 2, 2), num_classes, in_channels)


def resnet34(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return ResNet((3, 4, 6, 3), num_classes, in_channels)


def resnet50(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return ResNet((3, 4, 6, 3), num_classes, in_channels, block=Bottleneck)


def cifar_resnet(depth: int, num_classes: int = 10, in_channels: int = 3, widen: int = 1) -> ResNet:
    """He et al.'s CIFAR ResNet-``depth`` (depth = 6n + 2: three stages of n basic blocks of 16-32-64 channels);
    ``widen=4`` is the ×4 variant of the distillation benchmarks (stem 32, stages 64-128-256)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet's depth is 6n + 2 with n >= 1, got {depth}")
    n = (depth - 2) // 6
    return ResNet((n, n, n), num_classes, in_channels, widths=(16 * widen, 32 * widen, 64 * widen),
                  stem=16 * widen if widen == 1 else 8 * widen)
