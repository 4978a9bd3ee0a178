"""MNIST-1D (Greydanus & Kobak, ICML 2024): 10 classes of 40-sample signals, generated locally by the
``mnist1d`` package from its digit templates (never downloaded), standardised with training statistics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..runtime.checkpoint import atomic_save
from .splits import LabelledSplit

LENGTH = 40  # samples per signal


@dataclass(frozen=True)
class MNIST1DSpec:
    """What the generated split depends on (the package's ``seed`` and sample count; 80/20 split)."""

    num_samples: int = 10_000
    seed: int = 42


def generate_mnist1d(spec: MNIST1DSpec = MNIST1DSpec()) -> LabelledSplit:
    """Generate the dataset with ``mnist1d.data.make_dataset`` (the global NumPy state is left as found)."""
    from mnist1d.data import get_dataset_args, make_dataset  # the package imports requests and matplotlib

    args = get_dataset_args()
    args.num_samples, args.seed = spec.num_samples, spec.seed
    state = np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    return LabelledSplit.standardised(torch.tensor(data["x"], dtype=torch.float32), torch.tensor(data["y"]),
                                      torch.tensor(data["x_test"], dtype=torch.float32), torch.tensor(data["y_test"]))


def load_mnist1d(cache_dir: str | Path | None = None, spec: MNIST1DSpec = MNIST1DSpec()) -> LabelledSplit:
    """:func:`generate_mnist1d`, kept in ``cache_dir`` (generation takes seconds) when one is given."""
    if cache_dir is None:
        return generate_mnist1d(spec)
    path = Path(cache_dir) / f"mnist1d_{spec.num_samples}_{spec.seed}.pt"
    if path.exists():
        return LabelledSplit(**torch.load(path, map_location="cpu", weights_only=True))
    split = generate_mnist1d(spec)
    atomic_save(split.tensors(), path)
    return split
