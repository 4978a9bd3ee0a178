"""The image datasets read from disk, by name: :data:`IMAGE_SETS` (CIFAR-10, CIFAR-100, SVHN, Tiny-ImageNet),
:func:`image_set` and :func:`load_images`. Each dataset's facts (classes, size, normalisation and its source,
the paths accepted) are written once, in its own module (:mod:`~lrwa_fast.data.cifar`,
:mod:`~lrwa_fast.data.svhn`, :mod:`~lrwa_fast.data.tiny_imagenet`); :class:`ImageSet` and :class:`ImageData` are
:mod:`lrwa_fast.data.base`'s."""

from __future__ import annotations

from pathlib import Path

from .base import ImageData, ImageSet
from .cifar import CIFAR10, CIFAR100
from .svhn import SVHN
from .tiny_imagenet import TINY_IMAGENET

IMAGE_SETS: dict[str, ImageSet] = {s.name: s for s in (CIFAR10, CIFAR100, SVHN, TINY_IMAGENET)}

__all__ = ["IMAGE_SETS", "ImageData", "ImageSet", "image_set", "load_images"]


def image_set(name: str) -> ImageSet:
    """The :class:`ImageSet` called ``name`` (``ValueError`` naming every known one otherwise)."""
    if name not in IMAGE_SETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(IMAGE_SETS)}")
    return IMAGE_SETS[name]


def load_images(name: str, path: str | Path, train: bool = True) -> ImageData:
    """Both splits of dataset ``name`` from ``path`` (``image_set(name).layout`` says which paths are accepted);
    ``train=False`` reads only the test split (the training tensors are then empty)."""
    spec = image_set(name)
    return ImageData(spec, *spec.reader(Path(path), train))
