"""ShuffleNetV2 (Ma et al.) in the two forms DFKD teachers come in: torchvision's layout with a CIFAR stem (as
pytorch-cifar-models trains it, widths ×0.5 … ×2.0) and the variant of CRD's RepDistiller that the DataFree
code bases use (1×1 stem, a down-sampling block then basic blocks per stage)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Channels of the stem, the three stages and the last 1×1 convolution, by width (torchvision's table)
WIDTHS: dict[str, tuple[int, int, int, int, int]] = {
    "0_5": (24, 48, 96, 192, 1024), "1_0": (24, 116, 232, 464, 1024),
    "1_5": (24, 176, 352, 704, 1024), "2_0": (24, 244, 488, 976, 2048),
}


def channel_shuffle(x: Tensor, groups: int = 2) -> Tensor:
    """Interleave the channels of ``groups`` groups: (N, g·c, H, W) → channel order c₀g₀, c₀g₁, …"""
    n, channels, h, w = x.shape
    return x.view(n, groups, channels // groups, h, w).transpose(1, 2).reshape(n, channels, h, w)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = False
             ) -> list[nn.Module]:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return [*layers, nn.ReLU(inplace=True)] if relu else layers


class ShuffleUnit(nn.Module):
    """torchvision's unit: stride 1 splits the channels and transforms one half (``branch2``); stride 2
    transforms the whole input twice (``branch1``: depthwise then 1×1, and ``branch2``); then a channel
    shuffle."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        half = cout // 2
        self.stride = stride
        self.branch1 = nn.Sequential(*_conv_bn(cin, cin, 3, stride, groups=cin),
                                     *_conv_bn(cin, half, 1, relu=True)) if stride > 1 else nn.Sequential()
        self.branch2 = nn.Sequential(*_conv_bn(cin if stride > 1 else half, half, 1, relu=True),
                                     *_conv_bn(half, half, 3, stride, groups=half),
                                     *_conv_bn(half, half, 1, relu=True))

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            kept, changed = x.chunk(2, dim=1)
            return channel_shuffle(torch.cat((kept, self.branch2(changed)), dim=1))
        return channel_shuffle(torch.cat((self.branch1(x), self.branch2(x)), dim=1))


class ShuffleNetV2(nn.Module):
    """torchvision's ShuffleNetV2 with a CIFAR stem (3×3, stride 1, no max-pool): ``conv1``, ``stage2`` …
    ``stage4`` (4, 8 and 4 units), ``conv5``, global average pooling, ``fc``."""

    def __init__(self, width: str = "1_0", num_classes: int = 10, in_channels: int = 3,
                 repeats: tuple[int, int, int] = (4, 8, 4)) -> None:
        super().__init__()
        if width not in WIDTHS:
            raise ValueError(f"ShuffleNetV2 width {width!r}: one of {sorted(WIDTHS)}")
        stem, *stages, last = WIDTHS[width]
        self.conv1 = nn.Sequential(*_conv_bn(in_channels, stem, 3, relu=True))
        cin = stem
        for name, count, cout in zip(("stage2", "stage3", "stage4"), repeats, stages):
            self.add_module(name, nn.Sequential(*[ShuffleUnit(cin if i == 0 else cout, cout, 2 if i == 0 else 1)
                                                  for i in range(count)]))
            cin = cout
        self.conv5 = nn.Sequential(*_conv_bn(cin, last, 1, relu=True))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stage4(self.stage3(self.stage2(self.conv1(x))))
        return self.fc(self.conv5(x).mean((2, 3)))


class CRDBasicBlock(nn.Module):
    """RepDistiller's basic unit: the second half of the channels through 1×1 → depthwise 3×3 → 1×1 (ReLU after
    the first and last), concatenated after the untouched first half, then shuffled."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = int(channels * 0.5)
        self.conv1, self.bn1 = nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3, self.bn3 = nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half)

    def forward(self, x: Tensor) -> Tensor:
        half = int(x.shape[1] * 0.5)
        kept, changed = x[:, :half], x[:, half:]
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(changed)))))
        return channel_shuffle(torch.cat((kept, F.relu(self.bn3(self.conv3(out)))), dim=1))


class CRDDownBlock(nn.Module):
    """RepDistiller's down-sampling unit: depthwise 3×3/2 → 1×1 on one path, 1×1 → depthwise 3×3/2 → 1×1 on the
    other, each to half the output channels; concatenated and shuffled."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 2
        self.conv1 = nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2, self.bn2 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5, self.bn5 = nn.Conv2d(mid, mid, 1, bias=False), nn.BatchNorm2d(mid)

    def forward(self, x: Tensor) -> Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = self.bn4(self.conv4(F.relu(self.bn3(self.conv3(x)))))
        return channel_shuffle(torch.cat((left, F.relu(self.bn5(self.conv5(right)))), dim=1))


class CRDShuffleNetV2(nn.Module):
    """The ShuffleNetV2 of CRD's RepDistiller (net size 1, as the DataFree code bases register it): 1×1 stem to
    24 channels, ``layer1`` … ``layer3`` (a down-sampling block then 3, 7 and 3 basic blocks of 116, 232 and 464
    channels), 1×1 to 1024, global average pooling, ``linear``."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 widths: tuple[int, int, int, int] = (116, 232, 464, 1024), blocks: tuple[int, int, int] = (3, 7, 3)
                 ) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(in_channels, 24, 1, bias=False), nn.BatchNorm2d(24)
        cin = 24
        for i, (cout, count) in enumerate(zip(widths[:3], blocks)):
            self.add_module(f"layer{i + 1}", nn.Sequential(CRDDownBlock(cin, cout),
                                                           *[CRDBasicBlock(cout) for _ in range(count)]))
            cin = cout
        self.conv2, self.bn2 = nn.Conv2d(cin, widths[3], 1, bias=False), nn.BatchNorm2d(widths[3])
        self.linear = nn.Linear(widths[3], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layer3(self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x))))))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
