"""Tiny-ImageNet (200 classes of 64×64 images) read from ``tiny-imagenet-200.zip`` as extracted, without torchvision.

Accepted paths: the folder ``tiny-imagenet-200/`` or its parent. It holds ``wnids.txt`` (the WordNet ids of the
classes, one a line), ``words.txt``, ``train/<wnid>/images/<wnid>_<k>.JPEG`` (500 a class) with
``train/<wnid>/<wnid>_boxes.txt``, ``val/images/val_<k>.JPEG`` labelled by ``val/val_annotations.txt`` (tab-separated:
file name, wnid, 4 box coordinates) and ``test/images/`` (unlabelled, not read). The training split is every
JPEG of ``train/*/images`` in file-name order, class by class; the test split is ``val/``, in the order of
``val_annotations.txt`` (Tiny-ImageNet's test labels were never published; the validation images serve as
the test split).

Class index = position of the wnid in the *sorted* ids of ``wnids.txt`` (the file itself is not sorted): the
convention of torchvision's ``ImageFolder`` on ``train/``, so a teacher trained that way agrees with these
labels, and the training images come in the same order as ``ImageFolder``'s samples. ``wnids.txt`` may list
fewer than 200 ids (a subset, or the test harness's few), never more.

Only JPEG images are decoded (Pillow, restricted to its JPEG decoder; greyscale and CMYK images become RGB);
nothing else in the folder is read but ``wnids.txt`` and ``val/val_annotations.txt``. Pillow is optional: ``pip install
'lrwa_fast[images]'``. The 110,000 images are decoded on up to 8 threads (about 0.3 ms an image on one
core, measured on random-pixel JPEGs; Pillow's Python header parsing limits what threads gain);
``progress=True`` shows a bar. Nothing is cached or written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from .base import ImageData, ImageFormatError, ImageSet, Splits, empty_split

IMAGE_SIZE = 64
NUM_CLASSES = 200
FOLDER = "tiny-imagenet-200"
WNIDS, ANNOTATIONS = "wnids.txt", "val_annotations.txt"
JPEG_SUFFIXES = (".jpeg", ".jpg")
WNID = re.compile(r"[A-Za-z0-9_-]+")  # n01443537; no path separator or dot, since each names a folder
CHUNK = 256  # images decoded per task of the thread pool


class TinyImageNetFormatError(ImageFormatError):
    """A Tiny-ImageNet file or folder that is missing, malformed, undecodable or of the wrong size."""


def pillow() -> ModuleType:
    """``PIL.Image``, or an ``ImportError`` saying how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading or writing Tiny-ImageNet's JPEG images needs Pillow: "
                          "pip install 'lrwa_fast[images]'") from None
    return Image


def tiny_imagenet_root(path: Path) -> Path:
    """``path`` or ``path/tiny-imagenet-200``, whichever holds ``wnids.txt``."""
    for root in (path, path / FOLDER):
        if (root / WNIDS).is_file():
            return root
    raise TinyImageNetFormatError(f"no Tiny-ImageNet data at {str(path)!r}: expected the folder {FOLDER!r} "
                                  f"(holding {WNIDS}, train/ and val/) or its parent")


def _lines(file: Path) -> list[tuple[int, str]]:
    """The non-blank lines of a text file, stripped, with their numbers (from 1)."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TinyImageNetFormatError(f"{file}: not a text file ({err})") from None
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_wnids(root: Path) -> list[str]:
    """The class ids of ``wnids.txt``, sorted: a class's index is its position here."""
    file = root / WNIDS
    wnids: dict[str, int] = {}
    for number, wnid in _lines(file):
        if not WNID.fullmatch(wnid):
            raise TinyImageNetFormatError(f"{file}, line {number}: {wnid!r} is not a WordNet id (like n01443537)")
        if wnid in wnids:
            raise TinyImageNetFormatError(f"{file}, line {number}: {wnid!r} listed twice (first on line "
                                          f"{wnids[wnid]})")
        wnids[wnid] = number
    if not 0 < len(wnids) <= NUM_CLASSES:
        raise TinyImageNetFormatError(f"{file}: expected 1 to {NUM_CLASSES} WordNet ids, found {len(wnids)}")
    return sorted(wnids)


def train_files(root: Path, wnids: Sequence[str]) -> tuple[list[Path], list[int]]:
    """Every JPEG of ``train/<wnid>/images/`` in file-name order, class by class, and their labels."""
    files, labels = [], []
    for label, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise TinyImageNetFormatError(f"no folder {str(folder)!r}: expected train/<wnid>/images/ for every "
                                          f"id of {WNIDS}")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in JPEG_SUFFIXES and p.is_file())
        if not found:
            raise TinyImageNetFormatError(f"no JPEG image in {str(folder)!r}")
        files += found
        labels += [label] * len(found)
    return files, labels


def val_files(root: Path, wnids: Sequence[str]) -> tuple[list[Path], list[int]]:
    """The images of ``val/val_annotations.txt`` in its order, and their labels."""
    file = root / "val" / ANNOTATIONS
    if not file.is_file():
        raise TinyImageNetFormatError(f"no {str(file)!r}: expected val/{ANNOTATIONS} labelling val/images/")
    index = {wnid: label for label, wnid in enumerate(wnids)}
    files, labels, seen = [], [], set()
    for number, line in _lines(file):
        fields = line.split("\t")
        name = fields[0]
        if (len(fields) != 6 or not all(re.fullmatch(r"-?\d+", f) for f in fields[2:])
                or Path(name).name != name or name in ("", ".", "..")):
            raise TinyImageNetFormatError(f"{file}, line {number}: expected 'file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1"
                                          f"<TAB>y1', got {line!r}")
        if fields[1] not in index:
            raise TinyImageNetFormatError(f"{file}, line {number}: unknown WordNet id {fields[1]!r} (not in "
                                          f"{WNIDS})")
        if name in seen:
            raise TinyImageNetFormatError(f"{file}, line {number}: {name!r} annotated twice")
        seen.add(name)
        files.append(root / "val" / "images" / name)
        labels.append(index[fields[1]])
    if not files:
        raise TinyImageNetFormatError(f"{file}: no annotation")
    return files, labels


def _decode_into(out: np.ndarray, i: int, file: Path, image: ModuleType) -> None:
    """Decode one JPEG into ``out[i]`` as ``(3, 64, 64)`` RGB."""
    try:
        with image.open(file, formats=("JPEG",)) as img:
            if img.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise TinyImageNetFormatError(f"{file}: a {img.size[0]}x{img.size[1]} image, expected "
                                              f"{IMAGE_SIZE}x{IMAGE_SIZE}")
            rgb = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except TinyImageNetFormatError:
        raise
    except FileNotFoundError:
        raise TinyImageNetFormatError(f"{file}: no such image") from None
    except Exception as err:  # not a JPEG, truncated, damaged: Pillow fails in many ways
        raise TinyImageNetFormatError(f"{file}: cannot be decoded as a JPEG image ({type(err).__name__}: "
                                      f"{err})") from None
    out[i] = rgb.transpose(2, 0, 1)


def decode(files: Sequence[Path], *, progress: bool = False, desc: str = "images") -> Tensor:
    """The JPEGs ``files`` as uint8 ``(N, 3, 64, 64)``, decoded on a few threads (Pillow releases the GIL)."""
    image = pillow()
    out = np.empty((len(files), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)

    def chunk(start: int) -> int:
        stop = min(start + CHUNK, len(files))
        for i in range(start, stop):
            _decode_into(out, i, files[i], image)
        return stop - start

    from tqdm.auto import tqdm

    pool = ThreadPoolExecutor(min(8, os.cpu_count() or 1))
    try:
        with tqdm(total=len(files), desc=desc, unit="image", disable=not progress, leave=False) as bar:
            for done in pool.map(chunk, range(0, len(files), CHUNK)):  # the first bad file, in order, raises
                bar.update(done)
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, the chunks not started are dropped
    return torch.from_numpy(out)


def read_tiny_imagenet(path: Path, train: bool, *, progress: bool = False) -> Splits:
    """The splits at ``path`` (see module docstring) as ``(x_train, y_train, x_test, y_test)``; ``train=False``
    reads only ``val/`` (the test split)."""
    root = tiny_imagenet_root(Path(path))
    wnids = read_wnids(root)
    test, test_labels = val_files(root, wnids)
    if train:
        files, labels = train_files(root, wnids)
        x_train = decode(files, progress=progress, desc="Tiny-ImageNet train")
        y_train = torch.tensor(labels, dtype=torch.int64)
    else:
        x_train, y_train = empty_split(IMAGE_SIZE)
    x_test = decode(test, progress=progress, desc="Tiny-ImageNet val")
    return x_train, y_train, x_test, torch.tensor(test_labels, dtype=torch.int64)


def load_tiny_imagenet(path: str | Path, train: bool = True, *, progress: bool = False) -> ImageData:
    """Tiny-ImageNet's splits from ``path`` (see module docstring); ``train=False`` reads only the test split
    (``val/``; the training tensors are then empty); ``progress`` shows a bar while decoding."""
    return ImageData(TINY_IMAGENET, *read_tiny_imagenet(Path(path), train, progress=progress))


TINY_IMAGENET = ImageSet("tiny_imagenet", NUM_CLASSES, IMAGE_SIZE, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                         stats_source="the LRwA authors' Tiny-ImageNet evaluation (gaurav104/LRA "
                                      "src/datasets/dfkd.py): ImageNet's statistics",
                         layout=f"the folder {FOLDER}/ as extracted from {FOLDER}.zip (holding {WNIDS}, train/ "
                                "and val/), or its parent",
                         reader=read_tiny_imagenet)
