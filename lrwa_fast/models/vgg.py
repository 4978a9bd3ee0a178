"""VGG with BatchNorm for 32×32 (and 64×64) inputs, in the two forms DFKD teachers come in: the benchmark tables'
(CRD's RepDistiller, used by DataFree / CMI / Fast: five blocks, global pooling, one linear layer) and the
classic one (torchvision's layout, as pytorch-cifar-models trains it: max-pooling after every block and a
three-layer classifier with dropout)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

# Output channels of each convolution, block by block (VGG's configurations "S", "A", "B", "D", "E").
CONFIGS: dict[int, tuple[tuple[int, ...], ...]] = {
    8: ((64,), (128,), (256,), (512,), (512,)),
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


def _convs(cin: int, widths: tuple[int, ...], last_relu: bool) -> list[nn.Module]:
    """conv3×3 (with bias) → BN → ReLU for each width; the last ReLU left out unless ``last_relu``."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(cin, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        cin = width
    return layers if last_relu else layers[:-1]


def _config(depth: int) -> tuple[tuple[int, ...], ...]:
    if depth not in CONFIGS:
        raise ValueError(f"no VGG-{depth}; depths: {sorted(CONFIGS)}")
    return CONFIGS[depth]


class VGG(nn.Module):
    """The distillation benchmarks' VGG-``depth``: ``block0`` … ``block4`` (each followed by ReLU; max-pooling
    after the first three, and after the fourth for 64×64 inputs), global average pooling, one linear layer."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        cin = in_channels
        for i, widths in enumerate(_config(depth)):
            self.add_module(f"block{i}", nn.Sequential(*_convs(cin, widths, last_relu=False)))
            cin = widths[-1]
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        pooled = 4 if x.shape[2] == 64 else 3  # blocks followed by max-pooling
        for i in range(5):
            x = F.relu(getattr(self, f"block{i}")(x))
            if i < pooled:
                x = F.max_pool2d(x, 2)
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


class ClassicVGG(nn.Module):
    """VGG-``depth`` with BatchNorm as torchvision lays it out (``features``: each block then 2×2 max-pooling;
    ``classifier``: 512 → 512 → 512 → classes with ReLU and dropout), for 32×32 inputs."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for widths in _config(depth):
            layers += [*_convs(cin, widths, last_relu=True), nn.MaxPool2d(2)]
            cin = widths[-1]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(cin, 512), nn.ReLU(inplace=True), nn.Dropout(),
                                        nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(),
                                        nn.Linear(512, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))
