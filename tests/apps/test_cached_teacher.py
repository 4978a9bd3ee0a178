"""The embedded demo's teacher trains through the one loop: progress, and a SIGINT that stops it after an
epoch with a checkpoint from which the next call continues bit-exactly."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from lrwa_fast import TrainingInterrupted
from lrwa_fast.apps import demo


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.clone() for t in model.state_dict().values()]


def test_an_interrupted_teacher_resumes_bit_exactly(tmp_path, monkeypatch):
    data = demo.load_digits_split()
    settings = demo.TeacherSettings(epochs=3, batch_size=256)
    torch.manual_seed(5)
    straight, acc = demo.cached_teacher(data, settings, tmp_path / "straight", torch.device("cpu"))
    step = demo.TeacherTraining.step

    def interrupted_after_the_first_epoch(self):
        metrics = step(self)
        if self.iteration == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return metrics

    monkeypatch.setattr(demo.TeacherTraining, "step", interrupted_after_the_first_epoch)
    torch.manual_seed(5)
    with pytest.raises(TrainingInterrupted, match="SIGINT received: stopped after epoch 1") as stopped:
        demo.cached_teacher(data, settings, tmp_path / "resumed", torch.device("cpu"))
    assert stopped.value.path.exists()
    monkeypatch.setattr(demo.TeacherTraining, "step", step)
    torch.manual_seed(5)  # the teacher's initial weights come from the global stream, as they always have
    resumed, resumed_acc = demo.cached_teacher(data, settings, tmp_path / "resumed", torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(weights(straight), weights(resumed)))
    assert resumed_acc == acc and not stopped.value.path.parent.exists(), "the checkpoint goes once the cache is filled"


def test_teacher_training_shows_progress_per_epoch(tmp_path, capsys):
    data = demo.load_digits_split()
    demo.cached_teacher(data, demo.TeacherSettings(epochs=2, batch_size=512), tmp_path, torch.device("cpu"),
                        progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines and lines[-1].startswith("teacher cnn: 2/2 epoch (100%)") and "loss=" in lines[-1]
