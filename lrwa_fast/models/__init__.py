"""Model zoo: the generators (images, 1-D signals), the demo CNNs, the MNIST-1D CNNs, CIFAR ResNets and Wide
ResNets, built by name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from .cnn import SmallCNN
from .generator import Generator
from .resnet import ResNet, resnet18, resnet34
from .signal import SignalCNN, SignalGenerator
from .wrn import WideResNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn_small": partial(SmallCNN, width=16),
    "cnn": partial(SmallCNN, width=32),
    "cnn_large": partial(SmallCNN, width=64),
    "cnn1d_small": partial(SignalCNN, width=8),
    "cnn1d": partial(SignalCNN, width=32),
    "resnet18": resnet18,
    "resnet34": resnet34,
    "wrn16_1": partial(WideResNet, 16, 1),
    "wrn16_2": partial(WideResNet, 16, 2),
    "wrn40_2": partial(WideResNet, 40, 2),
}


def build_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """A classifier from :data:`MODELS` by name (``ValueError`` listing the names otherwise)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {sorted(MODELS)}")
    return MODELS[name](num_classes=num_classes, in_channels=in_channels)


__all__ = ["MODELS", "Generator", "ResNet", "SignalCNN", "SignalGenerator", "SmallCNN", "WideResNet", "build_model",
           "resnet18", "resnet34"]
