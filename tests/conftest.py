"""Shared set-up and fixtures of the test suite.

Without CUDA the Triton kernels are tested in Triton's interpreter on CPU tensors. Triton chooses
interpreter or compiler when it decorates a function, its own library functions included, at
import time; and importing ``torch._dynamo`` (as ``torch.compile`` does) imports Triton. So the
choice is made here, before any test module is collected.

Tests marked ``gpu`` need a CUDA device and ``slurm`` a running Slurm cluster (``bash .ci/slurm up``); each
is skipped, saying so, where there is none (one hook below); ``slow`` and ``distributed`` are described in
``pyproject.toml``.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

from lrwa_fast import testing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the ``gpu`` tests on a machine without CUDA, the ``slurm`` tests where no Slurm cluster answers."""
    needs = {"gpu": None if torch.cuda.is_available() else "needs a CUDA device"}
    if any(item.get_closest_marker("slurm") for item in items):
        needs["slurm"] = _no_slurm()
    for item in items:
        for marker, reason in needs.items():
            if reason and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


def _no_slurm() -> str | None:
    """Why the ``slurm`` tests cannot run here, or ``None`` when a cluster with an idle or busy node answers."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "needs submitit (pip install -e '.[test]')"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"needs a running Slurm cluster (bash .ci/slurm up): {err}"
    if done.returncode != 0 or not {"idle", "mixed", "allocated"} & set(done.stdout.split()):
        return f"needs a running Slurm cluster (bash .ci/slurm up): sinfo says {(done.stdout + done.stderr).strip()!r}"
    return None


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
