"""MNIST-1D generated locally: deterministic, standardised with training statistics, cached, and the global
NumPy random state left as it was."""

from __future__ import annotations

import numpy as np
import torch

from lrwa_fast.data import MNIST1DSpec, load_mnist1d


def test_generation_is_deterministic_cached_and_standardised(tmp_path):
    spec = MNIST1DSpec(num_samples=500, seed=3)
    np.random.seed(11)
    state = np.random.get_state()[1].copy()
    split = load_mnist1d(tmp_path, spec)
    assert np.array_equal(np.random.get_state()[1], state), "the global NumPy stream is untouched"
    assert split.x_train.shape == (400, 40) and split.x_test.shape == (100, 40) and split.sample_shape == (40,)
    assert split.x_train.dtype == torch.float32 and set(split.y_train.tolist()) <= set(range(10))
    assert abs(float(split.x_train.mean())) < 1e-5 and float(split.x_train.std()) == pytest_approx(1.0)
    cached = list(tmp_path.iterdir())
    assert len(cached) == 1 and cached[0].name == "mnist1d_500_3.pt"
    again = load_mnist1d(tmp_path, spec)
    assert all(torch.equal(a, b) for a, b in zip(split.tensors().values(), again.tensors().values()))
    other = load_mnist1d(None, MNIST1DSpec(num_samples=500, seed=4))
    assert not torch.equal(other.x_train, split.x_train)


def pytest_approx(value: float):
    import pytest

    return pytest.approx(value, abs=1e-4)
