"""The state-dict layouts DFKD teacher files come in, as facts recorded from the code bases that save them.

A teacher file is read in two steps. Its tensors' **names** say how they map onto this library's models: the
community names a ResNet ``conv1`` / ``layer2.0.conv1`` / ``linear`` (or ``fc``, ``downsample``) and a Wide ResNet
``block1.layer.0.convShortcut`` / ``fc`` (:data:`NAMINGS`), this library ``stem`` / ``layers.3`` / ``blocks.0``; the
other architectures (VGG, MobileNetV2, ShuffleNetV2) carry the community's names here. Their **shapes** then say
which architecture it is. The **wrapper** around the tensors (a bare state dict, ``{"state_dict": ..., "arch",
"best_acc1", ...}``, ``{"model": ...}``, ``{"net": ...}``) together with the architecture says which code base
saved it (:data:`LAYOUTS`), and so with which normalisation its teachers were trained and which accuracy it
publishes for them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from .resnet import ResNet
from .wrn import WideResNet

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]  # (mean, std) of images in [0, 1]
Renamer = Callable[[list[str]], "dict[str, str] | None"]  # foreign keys → library keys; None: not this naming


def _staged(keys: list[str], block: str, top: dict[str, str], inner: dict[str, str], target: str
            ) -> dict[str, str] | None:
    """Rename keys whose stages are numbered ``<block>`` (a regex with groups stage, index, rest) into one flat
    ``<target>.<k>.`` sequence (stage by stage, index by index); other keys by the prefix map ``top``; within a
    block, path parts by ``inner``. ``None`` when a key fits neither."""
    staged = {key: re.fullmatch(block, key) for key in keys}
    order = sorted({(int(m[1]), int(m[2])) for m in staged.values() if m})
    flat = {pair: i for i, pair in enumerate(order)}
    renamed = {}
    for key, m in staged.items():
        if m:
            parts = [inner.get(p, p) for p in m[3].split(".")]
            renamed[key] = f"{target}.{flat[(int(m[1]), int(m[2]))]}.{'.'.join(parts)}"
            continue
        head, _, rest = key.partition(".")
        if head not in top:
            return None
        renamed[key] = f"{top[head]}.{rest}"
    return renamed


def resnet_names(keys: list[str]) -> dict[str, str] | None:
    """kuangliu / DAFL / DFAD / DataFree (``shortcut``, ``linear``) and RepDistiller / pytorch-cifar-models
    (``downsample``, ``fc``) ResNets: ``conv1``, ``bn1``, ``layer<s>.<i>.…`` → ``stem.0``, ``stem.1``,
    ``layers.<k>.…``."""
    return _staged(keys, r"layer(\d+)\.(\d+)\.(.+)", {"conv1": "stem.0", "bn1": "stem.1", "linear": "linear",
                                                     "fc": "linear"}, {"downsample": "shortcut"}, "layers")


def wrn_names(keys: list[str]) -> dict[str, str] | None:
    """ZSKT's Wide ResNet, copied by RepDistiller and DataFree: ``conv1``, ``block<s>.layer.<i>.…``
    (``convShortcut``), ``bn1``, ``fc`` → ``stem``, ``blocks.<k>.…`` (``shortcut``), ``bn``, ``linear``."""
    return _staged(keys, r"block(\d+)\.layer\.(\d+)\.(.+)", {"conv1": "stem", "bn1": "bn", "fc": "linear"},
                   {"convShortcut": "shortcut"}, "blocks")


# The community's names for the model classes whose library names differ (every other class: the same names).
NAMINGS: dict[type[nn.Module], Renamer] = {ResNet: resnet_names, WideResNet: wrn_names}

CIFAR_STD_2023: Stats = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))  # kuangliu's, quoted widely
CIFAR100_DATAFREE: Stats = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
SVHN_ZSKT: Stats = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
HALF: Stats = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

# Every classifier defined in the DataFree code bases' datafree/models/classifiers (registered in registry.py or not)
DATAFREE_ARCHS = ("resnet18", "resnet34", "resnet50", *(f"resnet{d}" for d in (8, 14, 20, 32, 44, 56, 110)),
                  "resnet8x4", "resnet32x4", "wrn16_1", "wrn16_2", "wrn40_1", "wrn40_2",
                  *(f"vgg{d}" for d in (8, 11, 13, 16, 19)), "mobilenetv2", "shufflenetv2")
CIFAR_MODELS_ARCHS = (*(f"resnet{d}" for d in (20, 32, 44, 56)), *(f"vgg{d}_bn" for d in (11, 13, 16, 19)),
                      *(f"mobilenetv2_x{w}" for w in ("0_5", "0_75", "1_0", "1_4")),
                      *(f"shufflenetv2_x{w}" for w in ("0_5", "1_0", "1_5", "2_0")))


def _chenyaofo_published() -> dict[tuple[str, str], float]:
    """pytorch-cifar-models' README tables (top-1 %, CIFAR-10 then CIFAR-100), in the order of its archs."""
    cifar10 = (92.60, 93.53, 94.01, 94.37, 92.79, 94.00, 94.16, 93.91, 92.88, 93.72, 93.79, 94.22, 90.13, 92.98,
               93.55, 93.81)
    cifar100 = (68.83, 70.16, 71.63, 72.63, 70.78, 74.63, 74.00, 73.87, 70.88, 73.61, 74.20, 75.98, 67.82, 72.39,
                73.91, 75.35)
    return {**{("cifar10", a): v for a, v in zip(CIFAR_MODELS_ARCHS, cifar10)},
            **{("cifar100", a): v for a, v in zip(CIFAR_MODELS_ARCHS, cifar100)}}


@dataclass(frozen=True)
class Layout:
    """How one code base saves its classifiers: the wrapper around the tensors, the architectures it saves that
    way, the normalisation it trains them with (by dataset) and the accuracies it publishes for its files."""

    name: str
    title: str  # the code bases, as users know them
    wrapper: str  # see teacher_file.WRAPPERS
    archs: tuple[str, ...]  # library names of the architectures it saves (this library's layouts: every one)
    library_names: bool = False  # True: this library's own names (else the community's, NAMINGS)
    normalisation: dict[str, Stats] = field(default_factory=dict)
    normalisation_source: str = ""
    published: dict[tuple[str, str], float] = field(default_factory=dict)  # (dataset, arch) → top-1 %
    published_source: str = ""
    aliases: dict[str, str] = field(default_factory=dict)  # the code base's architecture names → the library's

    def arch_name(self, name: str) -> str:
        """The library's name for an architecture this code base calls ``name``."""
        return self.aliases.get(name, name)


LAYOUTS: tuple[Layout, ...] = (
    Layout("lrwa_fast", "lrwa_fast teacher.pt (lrwa-fast teacher)", "lrwa_fast", (), library_names=True,
           normalisation_source="the statistics stored in the file"),
    Layout("datafree", "DataFree / CMI / Fast-Datafree / NAYER (zju-vipa) train_scratch.py checkpoints",
           "checkpoint", DATAFREE_ARCHS,
           normalisation={"cifar10": CIFAR_STD_2023, "cifar100": CIFAR100_DATAFREE, "svhn": HALF,
                          "tiny_imagenet": HALF},
           normalisation_source="zju-vipa/Fast-Datafree registry.py NORMALIZE_DICT (the same in CMI and NAYER)",
           published={("cifar10", "resnet34"): 95.70, ("cifar10", "vgg11"): 92.25, ("cifar10", "wrn40_2"): 94.87,
                      ("cifar10", "resnet18"): 95.20, ("cifar10", "wrn16_1"): 91.12, ("cifar10", "wrn40_1"): 93.94,
                      ("cifar10", "wrn16_2"): 93.95, ("cifar100", "resnet34"): 78.05, ("cifar100", "vgg11"): 71.32,
                      ("cifar100", "wrn40_2"): 75.83, ("cifar100", "resnet18"): 77.10,
                      ("cifar100", "wrn16_1"): 65.31, ("cifar100", "wrn40_1"): 72.19,
                      ("cifar100", "wrn16_2"): 73.56},
           published_source="zju-vipa/CMI README, 'T. Scratch' / 'S. Scratch' rows (the released bundle)"),
    Layout("spaceshipnet", "SpaceshipNet (skgyu): the DataFree teachers as bare state dicts", "bare",
           ("resnet18", "resnet34", "wrn16_1", "wrn16_2", "wrn40_1", "wrn40_2", "vgg11"),
           normalisation={"cifar10": CIFAR_STD_2023, "cifar100": CIFAR100_DATAFREE},
           normalisation_source="skgyu/SpaceshipNet scripts/*.yaml prin_normalize"),
    Layout("dfad", "DFAD (VainF/Data-Free-Adversarial-Distillation): bare state dicts of ResNet34_8x / ResNet18_8x",
           "bare", ("resnet18", "resnet34", "resnet50"),
           normalisation={"cifar10": CIFAR_STD_2023, "cifar100": CIFAR_STD_2023},
           normalisation_source="VainF/Data-Free-Adversarial-Distillation dataloader.py (CIFAR-100 too)",
           published={("cifar10", "resnet34"): 95.5, ("cifar100", "resnet34"): 77.5},
           published_source="DFAD paper (Fang et al., arXiv:1912.11006), teacher accuracies"),
    Layout("lra", "LRwA authors (gaurav104/LRA): {'state_dict': ...} of their ResNet-34 / ResNet-18",
           "state_dict", ("resnet18", "resnet34"),
           normalisation={"cifar10": ((0.4914, 0.4824, 0.4467), (0.2471, 0.2435, 0.2616)),
                          "cifar100": CIFAR_STD_2023, "svhn": ((0.4378, 0.4439, 0.4729), (0.1980, 0.2011, 0.1971))},
           normalisation_source="gaurav104/LRA src/datasets/dfkd.py load_val_dataset"),
    Layout("lra-module", "LRwA authors (gaurav104/LRA): the CIFAR-100 teacher saved as a whole module (opt-in only)",
           "pickled module", ("resnet18", "resnet34"), normalisation={"cifar100": CIFAR_STD_2023},
           normalisation_source="gaurav104/LRA src/datasets/dfkd.py load_val_dataset"),
    Layout("zskt", "ZSKT (polo5/ZeroShotKnowledgeTransfer): {'state_dict': ...} of its Wide ResNets", "state_dict",
           ("wrn16_1", "wrn16_2", "wrn40_1", "wrn40_2"),
           normalisation={"cifar10": CIFAR_STD_2023, "svhn": SVHN_ZSKT},
           normalisation_source="polo5/ZeroShotKnowledgeTransfer utils/datasets.py"),
    Layout("repdistiller", "CRD's RepDistiller (HobbitLong): {'model': ..., 'epoch', 'accuracy' | 'best_acc', ...}",
           "model", ("resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4",
                     "resnet32x4", "wrn16_1", "wrn16_2", "wrn40_1", "wrn40_2", "vgg8", "vgg11", "vgg13", "vgg16",
                     "vgg19", "shufflenetv2"),
           normalisation={"cifar100": CIFAR100_DATAFREE},
           normalisation_source="HobbitLong/RepDistiller dataset/cifar100.py",
           published={("cifar100", "wrn40_2"): 75.61, ("cifar100", "resnet56"): 72.34,
                      ("cifar100", "resnet110"): 74.31, ("cifar100", "resnet32x4"): 79.42,
                      ("cifar100", "vgg13"): 74.64},
           published_source="HobbitLong/RepDistiller README, teachers of the CIFAR-100 table",
           aliases={"wrn_16_1": "wrn16_1", "wrn_16_2": "wrn16_2", "wrn_40_1": "wrn40_1", "wrn_40_2": "wrn40_2",
                    "ShuffleV2": "shufflenetv2"}),
    Layout("pytorch-cifar-models", "chenyaofo/pytorch-cifar-models: bare state dicts (torch.hub)", "bare",
           CIFAR_MODELS_ARCHS,
           normalisation={"cifar10": CIFAR_STD_2023, "cifar100": ((0.5070, 0.4865, 0.4409), (0.2673, 0.2564, 0.2761))},
           normalisation_source="chenyaofo/image-classification-codebase conf/cifar10.conf, conf/cifar100.conf "
           "(pytorch-cifar-models issue #8)",
           published=_chenyaofo_published(), published_source="chenyaofo/pytorch-cifar-models README"),
    Layout("kuangliu", "kuangliu/pytorch-cifar: {'net': ..., 'acc', 'epoch'} (often with 'module.')", "net",
           ("resnet18", "resnet34", "resnet50"), normalisation={"cifar10": CIFAR_STD_2023},
           normalisation_source="kuangliu/pytorch-cifar main.py"),
    Layout("lrwa_fast-state-dict", "a bare state dict with this library's names (student.pt, model.state_dict())",
           "bare", (), library_names=True),
)


def layout(name: str) -> Layout:
    """The layout called ``name`` (``ValueError`` listing the names otherwise)."""
    for known in LAYOUTS:
        if known.name == name:
            return known
    raise ValueError(f"unknown teacher layout {name!r}; known: {[known.name for known in LAYOUTS]}")
