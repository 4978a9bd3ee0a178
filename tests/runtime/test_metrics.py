"""Accuracy-curve statistics (μ, σ², largest drop) and the sync-free metric accumulator."""

from __future__ import annotations

import pytest
import torch

from lrwa_fast.runtime.metrics import MetricAccumulator, curve_statistics


def test_curve_statistics_whole_curve():
    stats = curve_statistics([0.5, 0.8, 0.6, 0.9, 0.7])
    assert stats["final"] == 0.7 and stats["best"] == 0.9
    assert stats["mean"] == pytest.approx(0.7)
    assert stats["variance"] == pytest.approx(sum((v - 0.7) ** 2 for v in [0.5, 0.8, 0.6, 0.9, 0.7]) / 5)
    assert stats["max_drop"] == pytest.approx(0.2)


def test_curve_statistics_second_half_and_monotone_curve():
    stats = curve_statistics([0.1, 0.2, 0.9, 0.8, 0.95, 0.9], from_fraction=0.5)
    assert stats["mean"] == pytest.approx((0.8 + 0.95 + 0.9) / 3)
    assert stats["max_drop"] == pytest.approx(0.05), "the 0.9 → 0.8 drop before the window does not count"
    assert stats["best"] == 0.95 and stats["final"] == 0.9
    assert curve_statistics([0.1, 0.2, 0.3])["max_drop"] == 0.0
    assert curve_statistics([0.4])["variance"] == 0.0
    with pytest.raises(ValueError):
        curve_statistics([])


def test_accumulator_means_and_reset():
    acc = MetricAccumulator()
    acc.add({"a": torch.tensor(1.0), "b": torch.tensor(4.0)})
    acc.add({"a": torch.tensor(3.0)})
    assert acc.read() == {"a": 2.0, "b": 4.0}
    assert acc.read() == {}
    acc.add({"a": torch.tensor(5.0)})
    state = acc.state_dict()
    other = MetricAccumulator()
    other.load_state_dict(state, torch.device("cpu"))
    assert other.read() == {"a": 5.0}
