"""scikit-learn's bundled handwritten digits (1,797 images of 8×8, no download) in a fixed stratified split."""

from __future__ import annotations

import torch

from .splits import LabelledSplit


def load_digits_split(test_fraction: float = 0.25, seed: int = 0) -> LabelledSplit:
    """The fixed stratified split of scikit-learn's digits as ``(N, 1, 8, 8)`` images, standardised with
    training statistics."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(range(len(y)), test_size=test_fraction, random_state=seed,
                                           stratify=data.target)
    return LabelledSplit.standardised(x[idx_train], y[idx_train], x[idx_test], y[idx_test])
