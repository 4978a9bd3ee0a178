"""Shared set-up and fixtures of the test suite.

Without CUDA the Triton kernels are tested in Triton's interpreter on CPU tensors. Triton chooses
interpreter or compiler when it decorates a function, its own library functions included, at
import time; and importing ``torch._dynamo`` (as ``torch.compile`` does) imports Triton. So the
choice is made here, before any test module is collected.

Tests marked ``gpu`` need a CUDA device and are skipped, saying so, where there is none (one hook
below); ``slow`` and ``distributed`` are described in ``pyproject.toml``.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

from lrwa_fast import testing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the ``gpu`` tests on a machine without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_models():
    """The factory of the smallest teacher, student and generator (:func:`lrwa_fast.testing.tiny_models`)."""
    return testing.tiny_models


@pytest.fixture
def tiny_run() -> dict:
    """Config fields of a run of 10 iterations on those models (a fresh copy per test)."""
    return dict(testing.TINY_RUN)


@pytest.fixture
def sigint_delivered():
    """SIGINT handled as in a terminal's foreground job, for the tests that send it: a job started in the
    background by a non-interactive shell inherits SIGINT ignored, and the trainer keeps an ignored signal
    ignored. Restored after the test."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def sigint_after(monkeypatch, sigint_delivered):
    """``sigint_after(cls, n)`` makes ``cls.step`` send this process SIGINT (delivered, see above) once its
    ``iteration`` reaches ``n``; ``monkeypatch.undo()`` (or the test's end) puts the step back."""

    def patch(cls: type, iteration: int) -> None:
        step = cls.step

        def step_then_interrupt(self):
            metrics = step(self)
            if self.iteration == iteration:
                os.kill(os.getpid(), signal.SIGINT)
            return metrics

        monkeypatch.setattr(cls, "step", step_then_interrupt)

    return patch
