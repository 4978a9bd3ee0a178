"""The Slurm executor's parts that need no cluster: its settings and their errors, Slurm's time formats, the
requeue hand-over on the pre-timeout signal, and the refusals before anything is submitted. The cluster itself:
``test_slurm_cluster.py`` (marker ``slurm``)."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from lrwa_fast import LRwAConfig, LRwATrainer
from lrwa_fast.apps.cli import main
from lrwa_fast.apps.slurm import ClusterUnavailable, Requeueable, SlurmSettings, UnitState, check_cluster, minutes
from lrwa_fast.runtime.checkpoint import list_checkpoints
from lrwa_fast.training.loop import STOP_SIGNALS, TrainingInterrupted


@pytest.mark.parametrize(("text", "expected"), [
    ("90", 90), ("1:30", 2), ("2:00:00", 120), ("1-0", 1440), ("1-2:30", 1590), ("0-0:0:1", 1), ("0", 1),
])
def test_slurm_time_limits_read_in_minutes(text, expected):
    assert minutes(text) == expected


def test_slurm_settings_by_name_become_submitits_parameters():
    settings = SlurmSettings.parse("partition=gpu, time=4:00:00,gpus_per_task=1,cpus-per-task=8,mem=32G,"
                                   "account=lab,qos=high,constraint=h100", ["module load cuda"], 16)
    assert settings.parameters() == {"partition": "gpu", "time": 240, "gpus_per_task": 1, "cpus_per_task": 8,
                                     "mem": "32G", "account": "lab", "qos": "high", "constraint": "h100",
                                     "setup": ["module load cuda"], "array_parallelism": 16}
    assert SlurmSettings.parse("").parameters() == {"time": 60, "setup": [], "array_parallelism": 256}


@pytest.mark.parametrize(("text", "message"), [
    ("partition=gpu,nodes=2", r"'nodes=2' is not KEY=VALUE with KEY one of partition, time"),
    ("partition", "'partition' is not KEY=VALUE"),
    ("time=soon", r"--slurm time=soon: 'soon' is not a Slurm time"),
    ("gpus_per_task=one", "--slurm gpus_per_task=one"),
])
def test_unknown_or_malformed_slurm_settings_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        SlurmSettings.parse(text)


def test_the_cli_refuses_slurm_options_without_the_slurm_executor(tmp_path, capsys):
    assert main(["study", "--no-wait", "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]) == 2
    assert "go with --executor slurm" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_no_sbatch_is_a_clear_error_before_anything_is_submitted(tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm command on it
    with pytest.raises(ClusterUnavailable, match="sbatch is not on the PATH"):
        check_cluster()
    argv = ["study", "--executor", "slurm", "--benchmark", "digits", "--methods", "dfad,joint", "--seeds", "2",
            "--fast", "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]
    assert main(argv) == 2
    assert "sbatch is not on the PATH" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()


def test_the_pre_timeout_signal_stops_training_after_the_step_with_a_checkpoint(tmp_path, tiny_models):
    """SIGUSR2 (Slurm's pre-timeout signal, as submitit asks for it) arrives during iteration 2: the run stops
    after it, with its checkpoint, and the error names the signal (the job then requeues itself)."""
    assert {signal.SIGINT, signal.SIGTERM, signal.SIGUSR2} <= set(STOP_SIGNALS)
    cfg = LRwAConfig(batch_size=16, latent_dim=8, iterations=100, student_steps=1, device="cpu",
                     checkpoint_dir=str(tmp_path))
    trainer = LRwATrainer(*tiny_models(), cfg)
    step = trainer.step

    def step_with_a_signal():
        if trainer.iteration == 1:
            os.kill(os.getpid(), signal.SIGUSR2)
        return step()

    trainer.step = step_with_a_signal
    with pytest.raises(TrainingInterrupted, match="SIGUSR2 received: stopped after iteration 2;") as stopped:
        trainer.train(progress=False)
    assert stopped.value.signum == signal.SIGUSR2 and trainer.iteration == 2
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000002.pt"]
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL  # the handler the loop found is back


class _Stopped:
    """A unit whose training was stopped by ``signum`` after writing its checkpoint."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __call__(self) -> None:
        raise TrainingInterrupted("stopped", path=None, signum=self.signum)


@pytest.mark.parametrize(("signum", "handed_back"), [(signal.SIGUSR2, True), (signal.SIGTERM, False)])
def test_a_stopped_unit_hands_the_pre_timeout_signal_back_to_submitit(signum, handed_back):
    """On SIGUSR2 submitit's handler (here a recorder) must run, to requeue the job; on SIGTERM Slurm requeues it
    itself (a preemption or ``scontrol requeue``) and the error ends the job."""
    seen = []
    previous = signal.signal(signal.SIGUSR2, lambda s, f: seen.append(s))
    try:
        with pytest.raises(TrainingInterrupted):
            Requeueable(_Stopped(signum))()
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert seen == ([signal.SIGUSR2] if handed_back else [])


def test_the_requeued_job_runs_the_same_unit():
    submitit = pytest.importorskip("submitit")
    job = Requeueable(_Stopped(signal.SIGUSR2))
    again = job.checkpoint()
    assert isinstance(again, submitit.helpers.DelayedSubmission) and again.function is job


@pytest.mark.parametrize(("state", "live", "failed"), [
    ("finished", False, False), ("not run", False, False), ("PENDING", True, False), ("RUNNING", True, False),
    ("REQUEUED", True, False), ("FAILED", False, True), ("CANCELLED", False, True), ("TIMEOUT", False, True),
    ("COMPLETED", False, True),  # a job that completed without leaving its result
])
def test_unit_states_are_live_or_failed(state, live, failed):
    assert (UnitState("u", state).live, UnitState("u", state).failed) == (live, failed)


def test_a_slurm_job_uses_the_threads_it_was_given(monkeypatch):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    given = before % 2 + 1  # not what torch uses now
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", str(given))
    try:
        assert Requeueable(torch.get_num_threads)() == given
    finally:
        torch.set_num_threads(before)


def test_without_submitit_the_error_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now raises ImportError
    with pytest.raises(ClusterUnavailable, match=r"pip install 'lrwa_fast\[slurm\]'"):
        check_cluster()
