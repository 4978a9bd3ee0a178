"""One demo/study run (``distill_once``): interrupted and resumed from its checkpoint, it computes what an
uninterrupted run computes, and its wall time counts the part before the interruption too."""

from __future__ import annotations

import pytest
import torch

from lrwa_fast import TrainingInterrupted
from lrwa_fast.apps import embedded
from lrwa_fast.apps.runs import distill_once
from lrwa_fast.apps.study import StudySettings
from lrwa_fast.training.trainer import Trainer


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A 6-iteration DFAD run on the digits with evaluations (and checkpoints) every 2 iterations."""
    settings = StudySettings(benchmark="digits", methods=["dfad"], iterations=6, eval_every=2,
                             teacher_epochs=1).runs()
    bench = embedded.benchmark("digits")
    data = bench.load(None)
    teacher, _ = embedded.cached_teacher(bench, data, tmp_path_factory.mktemp("cache"), torch.device("cpu"),
                                         settings=settings.teacher)
    return settings, teacher, data


def run(digits_run, run_dir):
    settings, teacher, data = digits_run
    return distill_once("dfad", settings.methods["dfad"], teacher, data, settings, 0, False, run_dir=run_dir)


@pytest.mark.slow
def test_a_resumed_run_matches_and_counts_its_earlier_time(digits_run, tmp_path, monkeypatch, sigint_after):
    straight = run(digits_run, tmp_path / "straight")
    assert straight["iterations"] == [2, 4, 6] and straight["resumed_from"] is None
    sigint_after(Trainer, 4)
    with pytest.raises(TrainingInterrupted):
        run(digits_run, tmp_path / "resumed")
    monkeypatch.undo()
    checkpoint = torch.load(tmp_path / "resumed" / "ckpt-00000004.pt", weights_only=False)
    before = checkpoint["history"]["evaluations"][-1]["elapsed_s"]
    resumed = run(digits_run, tmp_path / "resumed")
    assert resumed["resumed_from"].endswith("ckpt-00000004.pt")
    assert resumed["accuracy"] == straight["accuracy"] and resumed["forgetting"] == straight["forgetting"]
    assert resumed["wall_time_s"] > before > 0, "the part before the checkpoint is counted"


def test_each_evaluation_records_the_runs_elapsed_time(digits_run, tmp_path):
    settings, *_ = digits_run
    first = run(digits_run, tmp_path / "run")
    again = run(digits_run, tmp_path / "run")  # finished: resumes at the last checkpoint and trains nothing
    assert again["resumed_from"].endswith(f"ckpt-{settings.iterations:08d}.pt")
    assert again["wall_time_s"] >= first["wall_time_s"] * 0.5 > 0
