"""A study through a real Slurm cluster (``bash .ci/slurm up`` brings a one-node one up on this machine; CI
does): submitted without waiting and collected later, runs interrupted mid-way by Slurm's pre-timeout signal
and by ``scontrol requeue``, requeued, a cancelled run reported with its log and resubmitted by the same
command, and the study finishing bit-identical to the local executor's."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from lrwa_fast.apps.cli import main
from lrwa_fast.apps.study import StudyIncomplete, collect_study

pytestmark = pytest.mark.slurm

# 2 methods x 2 seeds on the digits, 60 iterations (a checkpoint every 2), a 2-epoch teacher
STUDY = ["study", "--benchmark", "digits", "--methods", "dfad,joint", "--seeds", "2", "--fast", "--iterations", "60",
         "--quiet"]
DEADLINE_S = 600


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def job_of(out: Path, name: str) -> str:
    return json.loads((out / "slurm.json").read_text(encoding="utf-8"))["units"][name]["job_id"]


def pre_timeout_signal(job: str) -> None:
    """What Slurm sends before a job's time limit (as submitit's ``job._interrupt(timeout=True)`` does). The job
    requeues itself before scancel has signalled every step, and scancel then retries the rest ("Job can not
    be altered now") until the job runs again: it is stopped once the signal has been sent."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(["scancel", "--signal=USR2", job], timeout=10, check=False)


def mid_way(out: Path, name: str) -> None:
    """Wait until run ``name`` has written a checkpoint and not yet its result."""
    deadline = time.monotonic() + DEADLINE_S
    folder, result = out / "checkpoints" / name, out / "runs" / f"{name}.json"
    while time.monotonic() < deadline:
        if folder.exists() and any(folder.glob("*.pt")) and not result.exists():
            return
        assert not result.exists(), f"{name} finished before it could be interrupted"
        time.sleep(0.05)
    raise AssertionError(f"{name} never got mid-way")


def failed_states(out: Path) -> str:
    """The states once a unit has ended without a result."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            collect_study(out)
        except StudyIncomplete as err:
            if err.failed:
                return str(err)
        time.sleep(1)
    raise AssertionError("no unit failed")


def numbers(report: dict) -> list[dict]:
    """Everything a run computed, without what depends on the machine's speed or on being resumed."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in ("elapsed_s", "seconds", "wall_time_s",
                                                                        "resumed_from")}
        return [clean(v) for v in value] if isinstance(value, list) else value
    return clean(report["runs"])


def test_a_study_on_slurm_survives_requeues_and_a_cancel_and_equals_the_local_one(tmp_path, cache, capsys):
    """Submitted without waiting (``--executor slurm --no-wait``) and collected while it runs; one run gets the
    pre-timeout signal, one is requeued by ``scontrol requeue``, one is cancelled (reported with its log, then
    resubmitted by the same command); every interrupted run resumes from the checkpoint it wrote, and the
    numbers equal the local study's."""
    out = tmp_path / "slurm"
    command = [*STUDY, "--out", str(out), "--cache-dir", str(cache), "--executor", "slurm", "--slurm", "time=10"]
    assert main([*command, "--no-wait"]) == 0
    submitted = capsys.readouterr().out
    assert "dfad-seed0: PENDING job" in submitted and "_log.err" in submitted and "--collect" in submitted
    assert main(["study", "--collect", str(out)]) == 0  # not finished yet: states and logs, exit 0
    assert "has not finished" in capsys.readouterr().err
    mid_way(out, "dfad-seed0")
    pre_timeout_signal(job_of(out, "dfad-seed0"))
    mid_way(out, "joint-seed0")
    cancelled = job_of(out, "joint-seed0")
    subprocess.run(["scancel", cancelled], check=True, timeout=60)
    line = next(line for line in failed_states(out).splitlines() if "joint-seed0" in line)
    assert line.split() == ["joint-seed0:", "CANCELLED", "job", f"{cancelled},", "log", line.split()[-1]]
    assert Path(line.split()[-1]).exists()
    mid_way(out, "joint-seed1")
    subprocess.run(["scontrol", "requeue", job_of(out, "joint-seed1")], check=True, timeout=60)
    assert main(command) == 0  # the same command: resubmits the cancelled run, waits, reports
    assert job_of(out, "joint-seed0") != cancelled
    report = json.loads((out / "study.json").read_text())
    resumed = {f"{r['method']}-seed{r['seed']}" for r in report["runs"] if r["resumed_from"]}
    assert resumed == {"dfad-seed0", "joint-seed0", "joint-seed1"}, resumed
    assert main([*STUDY, "--out", str(tmp_path / "local"), "--cache-dir", str(cache)]) == 0
    local = json.loads((tmp_path / "local" / "study.json").read_text())
    assert numbers(report) == numbers(local)
    paired = [[c["statistics"][k] for k in ("mean", "forgetting", "final")] for c in (*report["comparisons"],
                                                                                     *local["comparisons"])]
    assert paired[: len(paired) // 2] == paired[len(paired) // 2:]
    capsys.readouterr()
    assert main(["study", "--collect", str(out)]) == 0 and "wrote" in capsys.readouterr().out


def test_a_failed_teacher_cancels_the_runs_and_the_same_command_resubmits_both(tmp_path):
    """The teacher's job fails (its cache folder cannot be made: a file stands there): Slurm cancels the runs
    waiting on it instead of keeping them pending, the command reports the failure (exit 1) with the teacher's
    log, and once the cause is gone the same command resubmits the teacher and the runs and finishes."""
    blocked = tmp_path / "cache"
    blocked.write_text("not a folder")
    out = tmp_path / "slurm"
    command = ["study", "--benchmark", "digits", "--methods", "dfad,joint", "--seeds", "2", "--fast", "--quiet",
               "--out", str(out), "--cache-dir", str(blocked), "--executor", "slurm", "--slurm", "time=10"]
    assert main(command) == 1
    states = failed_states(out)
    assert "teacher: FAILED job" in states, states
    assert re.search(r"dfad-seed0: (CANCELLED|UNKNOWN) job", states), states  # a cancelled pending task may vanish
    blocked.unlink()
    assert main(command) == 0
    report = json.loads((out / "study.json").read_text())
    assert len(report["runs"]) == 4 and report["teacher"]["test_accuracy"] > 0
