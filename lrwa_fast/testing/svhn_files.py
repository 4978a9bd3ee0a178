"""Synthetic SVHN files in the exact distributed format (MATLAB v5, random pixels), for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.svhn import EXTRA_FILE, NUM_CLASSES, TEST_FILE, TRAIN_FILE


def write_svhn_files(root: str | Path, train: int = 20, test: int = 10, seed: int = 0, extra: int = 0) -> Path:
    """Write ``train_32x32.mat`` and ``test_32x32.mat`` (and ``extra_32x32.mat`` when ``extra`` > 0) in ``root``.

    Each is a MATLAB v5 file, as distributed: ``X`` uint8 ``(32, 32, 3, N)`` of random pixels and ``y`` uint8
    ``(N, 1)`` of labels 1..10, 10 standing for the digit 0 (every non-empty file's first label is 10). Returns
    ``root``, the folder ``load_images("svhn", root)`` reads.
    """
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in ((TRAIN_FILE, train), (TEST_FILE, test), (EXTRA_FILE, extra)):
        if name == EXTRA_FILE and not rows:
            continue
        labels = rng.integers(1, NUM_CLASSES + 1, (rows, 1), dtype=np.uint8)
        labels[:1] = NUM_CLASSES
        savemat(folder / name, {"X": rng.integers(0, 256, (32, 32, 3, rows), dtype=np.uint8), "y": labels},
                format="5")
    return folder
