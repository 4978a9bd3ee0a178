"""SVHN (Street View House Numbers, cropped digits) read from the MATLAB files as distributed, without torchvision.

Accepted paths: the folder holding ``train_32x32.mat`` and ``test_32x32.mat`` (the folder torchvision's
``SVHN(root)`` reads), or a root holding them in ``svhn/``. ``extra_32x32.mat`` (531,131 more training images)
is read only when asked (``load_svhn(..., extra=True)``): the DFKD code bases train their SVHN teachers on
``train`` alone, and so does ``load_images("svhn", ...)``. Nothing is downloaded.

The files are MATLAB v5 files read with ``scipy.io.loadmat``, which builds arrays and runs nothing from the file:
``X`` uint8 ``(32, 32, 3, N)`` (row, column, channel, image) and ``y`` ``(N, 1)`` with labels 1..10, where 10
is the digit 0; they become images ``(N, 3, 32, 32)`` and labels 0..9 (the digit itself). MATLAB v7.3 (HDF5)
files are refused: only the v5 files as distributed are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import ImageData, ImageFormatError, ImageSet, Splits, empty_split

IMAGE_SIZE = 32
NUM_CLASSES = 10
FOLDER = "svhn"
TRAIN_FILE, TEST_FILE, EXTRA_FILE = "train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"


class SvhnFormatError(ImageFormatError):
    """An SVHN file or folder that is missing, truncated, foreign, of the wrong version or of the wrong shape."""


def svhn_folder(path: Path, files: tuple[str, ...]) -> Path:
    """The folder holding ``files``: ``path`` itself or ``path/svhn``; ``SvhnFormatError`` naming what lacks."""
    candidates = [path, path / FOLDER]
    for folder in candidates:
        if all((folder / f).is_file() for f in files):
            return folder
    for folder in candidates:
        missing = [f for f in files if not (folder / f).is_file()]
        if len(missing) < len(files):
            raise SvhnFormatError(f"SVHN folder {str(folder)!r} lacks {', '.join(missing)} "
                                  f"(expected {', '.join(files)})")
    raise SvhnFormatError(f"no SVHN data at {str(path)!r}: expected {', '.join(files)} in that folder or in its "
                          f"{FOLDER!r} folder")


def _load_mat(file: Path) -> dict[str, Any]:
    """``X`` and ``y`` of a MATLAB v5 file (only those two variables are read)."""
    from scipy.io import loadmat, whosmat

    try:
        content = loadmat(file, variable_names=("X", "y"))
    except NotImplementedError:  # what scipy says of a v7.3 (HDF5) file
        raise SvhnFormatError(f"{file}: a MATLAB v7.3 (HDF5) file; only the MATLAB v5 files as distributed "
                              "(train_32x32.mat, test_32x32.mat from http://ufldl.stanford.edu/housenumbers/) are "
                              "read") from None
    except Exception as err:  # truncated or foreign bytes fail in many ways
        raise SvhnFormatError(f"{file}: truncated or not a MATLAB file ({type(err).__name__}: {err})") from None
    for key in ("X", "y"):
        if key not in content:
            found = sorted(name for name, _, _ in whosmat(file))
            raise SvhnFormatError(f"{file}: no {key!r} variable (found {found})")
    return content


def read_mat(file: Path) -> tuple[Tensor, Tensor]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels 0..9 ``(N,)`` int64 of one SVHN file, checked."""
    content = _load_mat(file)
    x, y = content["X"], content["y"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        got = f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise SvhnFormatError(f"{file}: 'X' must be a uint8 array of shape (32, 32, 3, N), got {got}")
    n = x.shape[3]
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "uif":
        got = f"{y.dtype} array" if isinstance(y, np.ndarray) else type(y).__name__
        raise SvhnFormatError(f"{file}: 'y' must be an array of integer labels, got {got}")
    if y.shape != (n, 1):
        raise SvhnFormatError(f"{file}: 'y' has shape {y.shape}, expected ({n}, 1) (one label per image)")
    labels = y[:, 0].astype(np.int64)
    if y.dtype.kind == "f" and not np.array_equal(labels, y[:, 0]):
        raise SvhnFormatError(f"{file}: 'y' holds labels that are not integers")
    if labels.size and (labels.min() < 1 or labels.max() > NUM_CLASSES):
        raise SvhnFormatError(f"{file}: labels must lie in 1..10 (10 stands for the digit 0), found "
                              f"{int(labels.min())}..{int(labels.max())}")
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # (row, column, channel, image) → (image, channel, ...)
    return torch.from_numpy(images), torch.from_numpy(labels % NUM_CLASSES)


def read_svhn(path: Path, train: bool, *, extra: bool = False) -> Splits:
    """The splits at ``path`` (see module docstring) as ``(x_train, y_train, x_test, y_test)``; ``extra`` appends
    ``extra_32x32.mat`` to the training split; ``train=False`` reads only the test file (``extra`` is then
    ignored)."""
    path = Path(path)
    train_files = ((TRAIN_FILE, EXTRA_FILE) if extra else (TRAIN_FILE,)) if train else ()
    folder = svhn_folder(path, (*train_files, TEST_FILE))
    if train:
        parts = [read_mat(folder / f) for f in train_files]
        x_train, y_train = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    else:
        x_train, y_train = empty_split(IMAGE_SIZE)
    return x_train, y_train, *read_mat(folder / TEST_FILE)


def load_svhn(path: str | Path, train: bool = True, *, extra: bool = False) -> ImageData:
    """SVHN's splits from ``path`` (see module docstring); ``extra=True`` adds ``extra_32x32.mat`` to the training
    split (after ``train``); ``train=False`` reads only the test split (the training tensors are then empty)."""
    return ImageData(SVHN, *read_svhn(Path(path), train, extra=extra))


SVHN = ImageSet("svhn", NUM_CLASSES, IMAGE_SIZE, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                stats_source="ZSKT (polo5/ZeroShotKnowledgeTransfer utils/datasets.py), the SVHN statistics the "
                             "DFKD code bases quote",
                layout=f"the folder holding {TRAIN_FILE} and {TEST_FILE} (torchvision's SVHN root), or a root "
                       f"holding them in {FOLDER}/",
                reader=read_svhn)
