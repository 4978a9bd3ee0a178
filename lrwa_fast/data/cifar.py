"""CIFAR-10 / CIFAR-100 read from the "python version" users already keep on disk, without torchvision.

Accepted paths: a root holding ``cifar-10-batches-py/`` or ``cifar-100-python/`` (the root torchvision
downloads into) or their ``.tar.gz`` archives, the folder itself, or the archive itself. Nothing is
downloaded. The files are pickles; they are read with :class:`RestrictedUnpickler`, which admits only
what the format needs (dicts, lists, bytes, strings, numbers, numpy arrays), so a file that tries to
call a function is refused instead of run. :data:`CIFAR10` and :data:`CIFAR100` are their
:class:`~lrwa_fast.data.base.ImageSet` entries (with the normalisation) in :data:`lrwa_fast.data.images.IMAGE_SETS`.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import ImageData, ImageFormatError, ImageSet, Splits, empty_split

IMAGE_SHAPE = (3, 32, 32)
ROW_BYTES = 3 * 32 * 32


class CifarFormatError(ImageFormatError):
    """A CIFAR file or folder that is missing, truncated, foreign or of the wrong shape."""


@dataclass(frozen=True)
class CifarSpec:
    """Where a CIFAR variant lives on disk, how its labels are keyed and how many classes they name (the
    normalisation is its :class:`~lrwa_fast.data.base.ImageSet`'s: :data:`CIFAR10`, :data:`CIFAR100`)."""

    name: str
    folder: str
    archive: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int


DATASETS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec("cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                         tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "labels", 10),
    "cifar100": CifarSpec("cifar100", "cifar-100-python", "cifar-100-python.tar.gz", ("train",), ("test",),
                          "fine_labels", 100),
}

CifarData = ImageData  # the name of 0.4 and before: both splits, as every image dataset's


def dataset_spec(name: str) -> CifarSpec:
    """The :class:`CifarSpec` of ``"cifar10"`` or ``"cifar100"`` (``ValueError`` otherwise)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


# ----------------------------------------------------------------------------- restricted unpickling
class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a function or class the CIFAR format does not need."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What protocol-2 pickles written by Python 3 call to rebuild ``bytes``; only latin-1 is admitted."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise RefusedGlobal(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): np._core.numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): np._core.numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only containers, strings, numbers and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        """Return an admitted numpy constructor; refuse every other global (functions, classes)."""
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise RefusedGlobal(f"refused to load '{module}.{name}': a CIFAR file holds only dicts, "
                                     "lists, strings, numbers and numpy arrays")


def restricted_load(data: bytes, where: str) -> dict[str, Any]:
    """Unpickle one CIFAR file's bytes into a dict with ``str`` keys; ``where`` names it in errors."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except RefusedGlobal as err:
        raise CifarFormatError(f"{where}: {err}") from None
    except Exception as err:  # truncated or foreign bytes fail in many ways
        raise CifarFormatError(f"{where}: truncated or not a CIFAR pickle ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise CifarFormatError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


# ----------------------------------------------------------------------------- files and batches
def _decode_batch(content: dict[str, Any], spec: CifarSpec, where: str) -> tuple[Tensor, Tensor]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one file, checked."""
    for key in ("data", spec.label_key):
        if key not in content:
            raise CifarFormatError(f"{where}: no {key!r} entry (found keys {sorted(map(str, content))})")
    data = content["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW_BYTES:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CifarFormatError(f"{where}: 'data' must be a uint8 array of shape (N, {ROW_BYTES}), got {got}")
    try:
        labels = np.asarray(content[spec.label_key], dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise CifarFormatError(f"{where}: {spec.label_key!r} must be a list of integers ({err})") from None
    if labels.shape != (data.shape[0],):
        raise CifarFormatError(f"{where}: {spec.label_key!r} has shape {labels.shape}, expected "
                               f"({data.shape[0]},) (one label per image)")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise CifarFormatError(f"{where}: labels must lie in [0, {spec.num_classes}), found "
                               f"{int(labels.min())}..{int(labels.max())}")
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, *IMAGE_SHAPE).copy())
    return images, torch.from_numpy(labels)


def _reader(path: Path, spec: CifarSpec) -> tuple[Callable[[str], bytes], str]:
    """A function returning a member file's bytes, and a description of the source, for ``path``."""
    expected = ", ".join(spec.train_files + spec.test_files)
    if path.is_file():
        return _archive_reader(path, spec), str(path)
    if (path / spec.folder).is_dir():
        return _folder_reader(path / spec.folder, spec, expected), str(path / spec.folder)
    if (path / spec.archive).is_file():
        return _archive_reader(path / spec.archive, spec), str(path / spec.archive)
    if path.is_dir() and (path.name == spec.folder or any((path / f).exists() for f in spec.train_files)):
        return _folder_reader(path, spec, expected), str(path)
    raise CifarFormatError(
        f"no {spec.name} data at {str(path)!r}: expected the folder {spec.folder!r} (holding {expected}) or "
        f"the archive {spec.archive!r} in it, or the path of either")


def _folder_reader(folder: Path, spec: CifarSpec, expected: str) -> Callable[[str], bytes]:
    missing = [f for f in spec.train_files + spec.test_files if not (folder / f).is_file()]
    if missing:
        raise CifarFormatError(f"{spec.name} folder {str(folder)!r} lacks {', '.join(missing)} "
                               f"(expected {expected})")
    return lambda name: (folder / name).read_bytes()


def _archive_reader(archive: Path, spec: CifarSpec) -> Callable[[str], bytes]:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            wanted = {name: f"{spec.folder}/{name}" for name in spec.train_files + spec.test_files}
            missing = [m for m in wanted.values() if m not in members]
            if missing:
                raise CifarFormatError(f"archive {str(archive)!r} lacks {', '.join(missing)}")
            contents = {name: tar.extractfile(members[m]).read() for name, m in wanted.items()}
    except (tarfile.TarError, EOFError, OSError) as err:
        raise CifarFormatError(f"archive {str(archive)!r} is not a readable .tar.gz ({type(err).__name__}: "
                               f"{err})") from None
    return contents.__getitem__


def read_cifar(name: str, path: Path, train: bool) -> Splits:
    """The splits of ``name`` (``"cifar10"`` / ``"cifar100"``) at ``path`` (see module docstring) as
    ``(x_train, y_train, x_test, y_test)``; ``train=False`` reads only the test split."""
    spec = dataset_spec(name)
    read, source = _reader(Path(path), spec)

    def split(files: tuple[str, ...]) -> tuple[Tensor, Tensor]:
        parts = [_decode_batch(restricted_load(read(f), f"{source}/{f}"), spec, f"{source}/{f}") for f in files]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    x_train, y_train = split(spec.train_files) if train else empty_split(IMAGE_SHAPE[-1])
    return x_train, y_train, *split(spec.test_files)


def load_cifar(name: str, path: str | Path, train: bool = True) -> ImageData:
    """Read both splits of ``name`` (``"cifar10"`` / ``"cifar100"``) from ``path`` (see module docstring);
    ``train=False`` reads only the test split (the training tensors are then empty)."""
    dataset_spec(name)
    return ImageData(CIFAR_SETS[name], *read_cifar(name, Path(path), train))


def _image_set(name: str, mean: tuple[float, float, float], std: tuple[float, float, float]) -> ImageSet:
    spec = DATASETS[name]
    return ImageSet(name, spec.num_classes, IMAGE_SHAPE[-1], mean, std,
                    stats_source="per-channel mean / std of the 50,000 training images in [0, 1], the values the "
                                 "DFKD literature quotes",
                    layout=f"a root holding {spec.folder}/ or {spec.archive} (the root torchvision downloads into), "
                           "that folder, or that archive",
                    reader=partial(read_cifar, name))


CIFAR10 = _image_set("cifar10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100 = _image_set("cifar100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
CIFAR_SETS: dict[str, ImageSet] = {s.name: s for s in (CIFAR10, CIFAR100)}
