"""The model zoo by name: every classifier :func:`build_model` builds, for the demo, the embedded benchmarks and
the DFKD benchmark tables."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from torch import nn

from .cnn import SmallCNN
from .mobilenet import MobileNetV2
from .resnet import cifar_resnet, resnet18, resnet34, resnet50
from .shufflenet import CRDShuffleNetV2, ShuffleNetV2
from .signal import SignalCNN
from .vgg import VGG, ClassicVGG
from .wrn import WideResNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn_small": partial(SmallCNN, width=16),
    "cnn": partial(SmallCNN, width=32),
    "cnn_large": partial(SmallCNN, width=64),
    "cnn1d_small": partial(SignalCNN, width=8),
    "cnn1d": partial(SignalCNN, width=32),
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    **{f"resnet{d}": partial(cifar_resnet, d) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": partial(cifar_resnet, 8, widen=4),
    "resnet32x4": partial(cifar_resnet, 32, widen=4),
    **{f"wrn{d}_{w}": partial(WideResNet, d, w) for d, w in ((16, 1), (16, 2), (40, 1), (40, 2), (28, 10))},
    **{f"vgg{d}": partial(VGG, d) for d in (8, 11, 13, 16, 19)},
    **{f"vgg{d}_bn": partial(ClassicVGG, d) for d in (11, 13, 16, 19)},
    "mobilenetv2": partial(MobileNetV2, width=1.0, cifar_strides=False),
    **{f"mobilenetv2_x{w}": partial(MobileNetV2, width=float(w.replace("_", "."))) for w in ("0_5", "0_75", "1_0",
                                                                                            "1_4")},
    "shufflenetv2": CRDShuffleNetV2,
    **{f"shufflenetv2_x{w}": partial(ShuffleNetV2, w) for w in ("0_5", "1_0", "1_5", "2_0")},
}
_WRN = re.compile(r"^wrn(\d+)_(\d+)$")  # any WRN-depth-width by name, e.g. wrn22_8


def model_names() -> list[str]:
    """Every name :func:`build_model` takes (``wrnD_W`` stands for any depth D = 6n + 4 and width W)."""
    return [*MODELS, "wrnD_W"]


def build_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """A classifier from :data:`MODELS` by name, or ``wrnD_W`` for any Wide ResNet (``ValueError`` listing the
    names otherwise)."""
    if name in MODELS:
        return MODELS[name](num_classes=num_classes, in_channels=in_channels)
    wrn = _WRN.match(name)
    if wrn:
        return WideResNet(int(wrn[1]), int(wrn[2]), num_classes=num_classes, in_channels=in_channels)
    raise ValueError(f"unknown model {name!r}; available: {', '.join(model_names())}")
