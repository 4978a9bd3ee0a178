"""The embedded benchmarks' teachers train through the one loop: seeded, cached by recipe, progress per
epoch, and a SIGINT that stops after an epoch with a checkpoint from which the next call continues
bit-exactly."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lrwa_fast import TrainingInterrupted
from lrwa_fast.apps import embedded
from lrwa_fast.apps.teacher import TeacherTraining
from lrwa_fast.models import build_model

CPU = torch.device("cpu")


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.clone() for t in model.state_dict().values()]


def digits(epochs: int, batch_size: int = 256, seed: int = 0):
    bench = embedded.benchmark("digits")
    return bench, bench.load(None), dataclasses.replace(bench.teacher, epochs=epochs, batch_size=batch_size, seed=seed)


def test_an_interrupted_teacher_resumes_bit_exactly(tmp_path, monkeypatch, sigint_after):
    bench, data, settings = digits(epochs=3)
    straight, acc = embedded.cached_teacher(bench, data, tmp_path / "straight", CPU, settings=settings)
    sigint_after(TeacherTraining, 1)
    with pytest.raises(TrainingInterrupted, match="SIGINT received: stopped after epoch 1") as stopped:
        embedded.cached_teacher(bench, data, tmp_path / "resumed", CPU, settings=settings)
    assert stopped.value.path.exists()
    monkeypatch.undo()
    resumed, resumed_acc = embedded.cached_teacher(bench, data, tmp_path / "resumed", CPU, settings=settings)
    assert all(torch.equal(a, b) for a, b in zip(weights(straight), weights(resumed)))
    assert resumed_acc == acc and not stopped.value.path.parent.exists(), "the checkpoint goes once the cache is filled"


def test_a_teacher_is_seeded_and_cached_by_recipe(tmp_path):
    bench, data, settings = digits(epochs=1)
    torch.manual_seed(123)  # whatever the global stream holds, the recipe's seed decides
    first, _ = embedded.cached_teacher(bench, data, tmp_path / "a", CPU, settings=settings)
    torch.manual_seed(456)
    again, _ = embedded.cached_teacher(bench, data, tmp_path / "b", CPU, settings=settings)
    other, _ = embedded.cached_teacher(bench, data, tmp_path / "a", CPU, settings=dataclasses.replace(settings, seed=1))
    assert all(torch.equal(a, b) for a, b in zip(weights(first), weights(again)))
    assert not all(torch.equal(a, b) for a, b in zip(weights(first), weights(other)))
    assert len(list((tmp_path / "a").glob("digits_teacher_*.pt"))) == 2


def test_teacher_training_shows_progress_per_epoch(tmp_path, capsys):
    bench, data, settings = digits(epochs=2, batch_size=512)
    embedded.cached_teacher(bench, data, tmp_path, CPU, settings=settings, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines and lines[-1].startswith("teacher cnn: 2/2 epoch (100%)") and "loss=" in lines[-1]


def test_an_unknown_benchmark_is_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown benchmark 'svhn'; expected one of \['digits', 'mnist1d'\]"):
        embedded.benchmark("svhn")


def recipe_model(settings) -> torch.nn.Module:
    torch.manual_seed(settings.seed)  # as cached_teacher builds the recipe's initial weights
    return build_model(settings.arch, num_classes=10, in_channels=1)


def test_a_teacher_checkpoint_of_0_4_resumes(tmp_path):
    """0.4 wrote an embedded teacher's stream as ``rng`` and no history: such a checkpoint still continues."""
    bench, data, settings = digits(epochs=2)
    straight, _ = embedded.cached_teacher(bench, data, tmp_path / "straight", CPU, settings=settings)
    first = embedded.teacher_training(recipe_model(settings), data, settings, CPU, bench.augment)
    first.step()
    state = first.state_dict()
    old = {k: v for k, v in state.items() if k not in ("history", "loader_rng")} | {"rng": state["loader_rng"]}
    second = embedded.teacher_training(recipe_model(settings), data, settings, CPU, bench.augment)
    second.load_state_dict(old)
    second.step()
    assert second.epoch == 2 and all(torch.equal(a, b) for a, b in zip(weights(straight), weights(second.model)))
