"""The 1-D zoo models for MNIST-1D: shapes, sizes, and what they refuse."""

from __future__ import annotations

import pytest
import torch

from lrwa_fast.models import SignalCNN, SignalGenerator, build_model


@pytest.mark.parametrize(("name", "params"), [("cnn1d", 25_322), ("cnn1d_small", 2_882)])
def test_signal_cnns_take_signals_and_return_logits(name, params):
    model = build_model(name, num_classes=10, in_channels=1)
    assert sum(p.numel() for p in model.parameters()) == params
    for rows in (1, 5):
        assert model.eval()(torch.randn(rows, 40)).shape == (rows, 10)
    assert model(torch.randn(3, 1, 40)).shape == (3, 10), "a channel axis is accepted too"


def test_the_generator_emits_standardised_signals():
    torch.manual_seed(0)
    generator = SignalGenerator(latent_dim=16, length=40, ngf=8)
    x = generator(torch.randn(64, 16))
    assert x.shape == (64, 40)
    assert abs(float(x.mean())) < 1e-4 and float(x.std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="single-channel"):
        SignalCNN(in_channels=3)
    with pytest.raises(ValueError, match="multiple of 4"):
        SignalGenerator(length=42)
