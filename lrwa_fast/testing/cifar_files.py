"""Synthetic CIFAR files in the exact on-disk format (random pixels), for tests and benchmarks."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from ..data.cifar import ROW_BYTES, dataset_spec


def write_synthetic_cifar(root: str | Path, name: str, train: int = 20, test: int = 10, seed: int = 0,
                          archive: bool = False) -> Path:
    """Write ``name``'s folder (or its ``.tar.gz`` when ``archive``) under ``root`` with random images.

    The training rows are split across the training files as in the real data; files are protocol-2
    pickles with byte-string keys, like the originals read with ``encoding="bytes"``. Returns the
    folder or archive written.
    """
    spec = dataset_spec(name)
    rng = np.random.default_rng(seed)
    folder = Path(root) / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    per_file = np.array_split(np.arange(train), len(spec.train_files))
    sizes = [len(p) for p in per_file] + [test]
    for file_name, rows in zip(spec.train_files + spec.test_files, sizes):
        _dump(folder / file_name, _batch(spec.name, file_name, rows, spec.num_classes, rng))
    meta_name, meta = (("batches.meta", {b"label_names": [f"class{i}".encode() for i in range(10)]})
                       if spec.name == "cifar10" else
                       ("meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                                 b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}))
    _dump(folder / meta_name, meta)
    if not archive:
        return folder
    path = Path(root) / spec.archive
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=spec.folder)
    return path


def _batch(dataset: str, file_name: str, rows: int, num_classes: int, rng: np.random.Generator) -> dict:
    """One file's dict: images as (rows, 3072) uint8, labels, file names and the batch label."""
    labels = rng.integers(0, num_classes, rows).tolist()
    batch = {b"batch_label": f"synthetic {file_name}".encode(),
             b"filenames": [f"img_{i}.png".encode() for i in range(rows)],
             b"data": rng.integers(0, 256, (rows, ROW_BYTES), dtype=np.uint8)}
    if dataset == "cifar10":
        return batch | {b"labels": labels}
    return batch | {b"fine_labels": labels, b"coarse_labels": [label // 5 for label in labels]}


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)
