"""What every image dataset read from disk shares: :class:`ImageSet` (a dataset's facts: classes, image size,
normalisation and where it comes from, the paths accepted, and its reader), :class:`ImageData` (its splits in
memory) and :class:`ImageFormatError`, the base of each reader's own error. The registry of the datasets is
:mod:`lrwa_fast.data.images`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

Splits = tuple[Tensor, Tensor, Tensor, Tensor]  # x_train, y_train, x_test, y_test
Reader = Callable[[Path, bool], Splits]


class ImageFormatError(ValueError):
    """An image dataset's file or folder that is missing, truncated, foreign or of the wrong shape; the message
    names the file (and the line, for text files)."""


@dataclass(frozen=True)
class ImageSet:
    """One image dataset: ``num_classes`` classes of RGB images ``image_size`` × ``image_size``.

    ``mean`` / ``std`` normalise images scaled to [0, 1] (a teacher stores the ones it was trained with in its
    checkpoint); ``stats_source`` says where they come from and ``layout`` which paths ``reader`` accepts.
    ``reader(path, train)`` returns ``(x_train, y_train, x_test, y_test)``: uint8 images ``(N, 3, S, S)`` and
    int64 labels ``(N,)``; with ``train=False`` the training tensors are empty (``(0, 3, S, S)`` and ``(0,)``).
    """

    name: str
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stats_source: str
    layout: str
    reader: Reader = field(repr=False)


@dataclass
class ImageData:
    """Both splits of ``spec`` as uint8 images ``(N, 3, S, S)`` and int64 labels ``(N,)``, on the CPU."""

    spec: ImageSet
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def empty_split(image_size: int) -> tuple[Tensor, Tensor]:
    """No images ``(0, 3, S, S)`` and no labels ``(0,)``: the training split when it is not read."""
    return torch.empty(0, 3, image_size, image_size, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
