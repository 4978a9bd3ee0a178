"""A small CNN for the digits demo (8×8 inputs) and quick tests."""

from __future__ import annotations

from torch import Tensor, nn


def _conv_block(cin: int, cout: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    return [*layers, nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """conv-conv-pool-conv-globalpool-linear; ``width`` scales the channels (teacher 64, student 16)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32,
                 batch_norm: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_block(in_channels, width, batch_norm),
            *_conv_block(width, 2 * width, batch_norm),
            nn.MaxPool2d(2),
            *_conv_block(2 * width, 2 * width, batch_norm),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
