"""What stops a run besides its end: the exit of the torchrun launcher, noticed between steps like a
signal, with a checkpoint, a message naming the cause and the CLI's exit status 128 + SIGHUP."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from lrwa_fast import LRwAConfig, LRwATrainer, TrainingInterrupted
from lrwa_fast.apps.cli import main
from lrwa_fast.runtime.checkpoint import list_checkpoints
from lrwa_fast.runtime.distributed import LAUNCHER, Launcher
from tests.support import write_distill_config


@pytest.fixture
def launcher_gone(monkeypatch) -> int:
    """The launcher this process remembers is a process that has exited (its parent is another one)."""
    launcher = subprocess.Popen(["true"])
    launcher.wait()
    monkeypatch.setattr(LAUNCHER, "pid", launcher.pid)
    return launcher.pid


def test_the_launcher_is_the_parent_under_torchrun_only(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    alone = Launcher()
    assert alone.pid is None and not alone.gone()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    started = Launcher()
    assert started.pid == os.getppid() and not started.gone()
    started.pid = os.getppid() + 1  # the parent changed: the launcher has exited
    assert started.gone()


def test_a_gone_launcher_stops_training_after_the_step_with_a_checkpoint(tmp_path, launcher_gone, tiny_models):
    cfg = LRwAConfig(batch_size=16, latent_dim=8, iterations=100, student_steps=1, device="cpu",
                     checkpoint_dir=str(tmp_path))
    trainer = LRwATrainer(*tiny_models(), cfg)
    with pytest.raises(TrainingInterrupted, match=rf"launcher \(torchrun, pid {launcher_gone}\) has exited: "
                                                 r"stopped after iteration 1;") as stopped:
        trainer.train(progress=False)
    assert stopped.value.signum == signal.SIGHUP and trainer.iteration == 1
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000001.pt"]


def test_the_cli_exits_with_128_plus_sighup_when_its_launcher_is_gone(tmp_path, launcher_gone, capsys):
    config = write_distill_config(tmp_path, iterations=100)
    assert main(["distill", "--config", str(config), "--quiet"]) == 128 + signal.SIGHUP
    assert f"lrwa-fast: the launcher (torchrun, pid {launcher_gone}) has exited" in capsys.readouterr().err
