"""A study on a Slurm cluster, through submitit (``pip install 'lrwa_fast[slurm]'``): the teacher unit as one
job, then the run units as one job array that starts once the teacher's job has succeeded (``afterok``).

Each job runs one unit from the shared study folder. On Slurm's pre-timeout signal (``SIGUSR2``, which
submitit asks for ``signal_delay_s`` before the time limit) or a preemption's ``SIGTERM``, the training loop
stops after the current step and writes a checkpoint; on ``SIGUSR2`` the job then requeues itself through
submitit, on ``SIGTERM`` Slurm requeues it (``scontrol requeue``, preemption with ``PreemptMode=REQUEUE``).
Either way the unit resumes from its checkpoint, bit for bit where it stopped.

Job ids, log paths and the last states seen are kept in ``slurm.json`` in the study folder; a unit's state
is ``finished`` when its result is in the folder, else what Slurm says of its newest job (``squeue``, then
``sacct`` for jobs that have left the queue).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..runtime.checkpoint import atomic_write_text
from ..training.loop import TrainingInterrupted
from .units import Unit

RECORD = "slurm.json"
LOGS = "slurm"
PRE_TIMEOUT = signal.SIGUSR2  # the signal submitit asks Slurm to send before the time limit
RESULT_GRACE_S = 120.0  # how long a completed job's result may take to appear in the folder
LIVE = {"FINISHING", "PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
        "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "STOPPED"}


def minutes(text: str) -> int:
    """A Slurm time limit (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``) in whole minutes, rounded up."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a Slurm time (minutes, H:M:S or D-H:M:S)")
    days, a, b, c = (int(g) if g else None for g in match.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # H:M:S
        seconds = a * 3600 + b * 60 + c
    else:  # M or M:S
        seconds = a * 60 + (b or 0)
    return max(1, -(-seconds // 60))


# --slurm KEY=VALUE: the keys, each with how its value is read
KEYS: dict[str, Callable[[str], Any]] = {
    "partition": str, "time": minutes, "gpus_per_task": int, "cpus_per_task": int, "mem": str,
    "account": str, "qos": str, "constraint": str,
}


@dataclass(frozen=True)
class SlurmSettings:
    """Where and how the jobs run: the resources of each job (``None``: the site's default), setup lines run
    before each job (``module load cuda``), how many array tasks run at once and how many times a job may be
    requeued after its time limit."""

    partition: str | None = None
    time: int = 60  # minutes per job (a job that runs out is requeued and resumes)
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None  # e.g. 16G
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: tuple[str, ...] = ()
    array_parallelism: int = 256
    max_requeues: int = 20  # submitit's max_num_timeout

    def __post_init__(self) -> None:
        if self.time < 1 or self.array_parallelism < 1 or self.max_requeues < 0:
            raise ValueError(f"slurm: time and array_parallelism must be >= 1 and max_requeues >= 0, got "
                             f"{self.time}, {self.array_parallelism} and {self.max_requeues}")

    @classmethod
    def parse(cls, text: str, setup: Sequence[str] = (), array_parallelism: int = 256) -> SlurmSettings:
        """``"partition=gpu,time=4:00:00,gpus_per_task=1"`` and the setup lines (unknown keys refused)."""
        fields: dict[str, Any] = {}
        for item in (part.strip() for part in text.split(",") if part.strip()):
            key, sep, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in KEYS:
                raise ValueError(f"--slurm: {item!r} is not KEY=VALUE with KEY one of {', '.join(KEYS)}")
            try:
                fields[key] = KEYS[key](value.strip())
            except ValueError as err:
                raise ValueError(f"--slurm {key}={value}: {err}") from None
        return cls(**fields, setup=tuple(setup), array_parallelism=array_parallelism)

    def parameters(self) -> dict[str, Any]:
        """submitit's ``SlurmExecutor`` parameters."""
        given = {k: getattr(self, k) for k in KEYS if getattr(self, k) is not None}
        return {**given, "setup": list(self.setup), "array_parallelism": self.array_parallelism}


class ClusterUnavailable(RuntimeError):
    """Slurm cannot take the study's jobs here (no submitit, no ``sbatch``, no controller)."""


def submitit_module() -> Any:
    """submitit, or an error that says how to install it."""
    try:
        import submitit
    except ImportError:
        raise ClusterUnavailable("--executor slurm needs submitit: pip install 'lrwa_fast[slurm]'") from None
    return submitit


def check_cluster() -> None:
    """Refuse, before anything is submitted, where Slurm cannot take jobs: no submitit, no ``sbatch``, or a
    controller that does not answer."""
    submitit_module()
    if shutil.which("sbatch") is None:
        raise ClusterUnavailable("--executor slurm: sbatch is not on the PATH (run the study where Slurm's commands "
                                 "are)")
    done = subprocess.run(["squeue", "-h", "-o", "%i", "-u", "nobody"], capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        raise ClusterUnavailable(f"--executor slurm: the Slurm controller does not answer ({done.stderr.strip()})")


def max_array_size() -> int:
    """The cluster's ``MaxArraySize`` (an array's task ids must stay below it; Slurm's default 1001)."""
    found = re.search(r"MaxArraySize\s*=\s*(\d+)", _slurm(["scontrol", "show", "config"]) or "")
    return int(found.group(1)) if found else 1001


class Requeueable:
    """A unit as a submitit job: on the pre-timeout signal it has stopped with a checkpoint, and hands the signal
    back to submitit, which calls :meth:`checkpoint`, requeues the job and exits; the requeued job runs the
    same unit, which resumes."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit

    def __call__(self) -> Any:
        if os.environ.get("SLURM_CPUS_PER_TASK"):  # the threads the job was given (--slurm cpus_per_task=N)
            torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
        try:
            return self.unit()
        except TrainingInterrupted as stop:
            if stop.signum == PRE_TIMEOUT:
                signal.raise_signal(stop.signum)  # submitit's handler (back in place): requeue, then exit
            raise

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """What the requeued job runs: this unit again (its state is in its folder)."""
        return submitit_module().helpers.DelayedSubmission(self)


@dataclass
class UnitState:
    """What one unit is: ``finished`` (its result is in the folder), a Slurm state of its newest job
    (``PENDING``, ``RUNNING``, ``FAILED``, ``CANCELLED``, ...) or ``not run``; with its job's logs."""

    name: str
    state: str
    job_id: str | None = None
    stdout: str | None = None
    stderr: str | None = None

    @property
    def live(self) -> bool:
        return self.state in LIVE

    @property
    def failed(self) -> bool:
        return self.state not in LIVE and self.state not in ("finished", "not run")


class SlurmExecutor:
    """Submits a study's units to Slurm and tells their states, keeping job ids, logs and states in
    ``out/slurm.json``."""

    def __init__(self, settings: SlurmSettings) -> None:
        self.settings = settings

    def submit(self, out: Path, teacher: Unit, units: list[Unit]) -> list[UnitState]:
        """Submit what is neither finished nor waiting or running in Slurm already: the teacher (then the runs
        depend on its job), and the runs as one array; returns every unit's state after submitting."""
        check_cluster()
        out = out.resolve()
        states = unit_states(out, [teacher, *units])
        todo = [u for u, s in zip(units, states[1:]) if not u.finished() and not s.live]
        if len(todo) >= max_array_size():
            raise ClusterUnavailable(f"{len(todo)} runs exceed this cluster's MaxArraySize ({max_array_size()}); "
                                     "run the study in parts (--seeds, --first-seed)")
        with _locked(out):
            record = _read_record(out)
            after = states[0].job_id if states[0].live else None
            if not teacher.finished() and not states[0].live:
                (job,) = self._submit(out, [teacher], record, dependency=None)
                after = job.job_id
            if todo:
                self._submit(out, todo, record, dependency=f"afterok:{after}" if after else None)
        return unit_states(out, [teacher, *units])

    def _submit(self, out: Path, units: Sequence[Unit], record: dict[str, Any], dependency: str | None
                ) -> list[Any]:
        submitit = submitit_module()
        executor = submitit.SlurmExecutor(folder=out / LOGS / "%j", max_num_timeout=self.settings.max_requeues)
        # a run whose teacher's job failed is cancelled by Slurm (not left pending forever), and resubmitted later
        after = ({"dependency": dependency, "additional_parameters": {"kill_on_invalid_dep": "yes"}}
                 if dependency else {})
        executor.update_parameters(**self.settings.parameters(), job_name=f"lrwa-{out.name}", **after)
        absolute = [dataclasses.replace(u, out_dir=str(out), cache_dir=str(Path(u.cache_dir).resolve()))
                    for u in units]
        try:
            with executor.batch():
                jobs = [executor.submit(Requeueable(u)) for u in absolute]
        except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedSubmissionError, OSError) as err:
            raise ClusterUnavailable(f"sbatch refused the jobs: {str(err).strip()}") from None
        for unit, job in zip(units, jobs):
            record["units"][unit.name] = {"job_id": str(job.job_id), "stdout": str(job.paths.stdout),
                                          "stderr": str(job.paths.stderr), "state": "PENDING",
                                          "jobs": [*record["units"].get(unit.name, {}).get("jobs", []),
                                                   str(job.job_id)]}
        _write_record(out, record)
        return jobs

    def wait(self, out: Path, teacher: Unit, units: list[Unit], *, poll_s: float = 10.0,
             progress: bool = True) -> list[UnitState]:
        """Poll until no unit is waiting or running; the states then."""
        shown = None
        while True:
            states = unit_states(out, [teacher, *units])
            summary = count_states(states)
            if progress and summary != shown:
                print(f"[{time.strftime('%H:%M:%S')}] {summary}", flush=True)
                shown = summary
            if not any(s.live for s in states):
                return states
            time.sleep(poll_s)


def unit_states(out: Path, units: Sequence[Unit]) -> list[UnitState]:
    """Each unit's state (see :class:`UnitState`); Slurm is asked only about unfinished units' newest jobs.
    When Slurm does not answer, a unit keeps the state last seen; a job that completed without leaving its
    result is ``FINISHING`` for :data:`RESULT_GRACE_S` (a shared filesystem may show the file late)."""
    if not (out / RECORD).exists():  # nothing was submitted: the folder alone tells
        return [_state_of(unit, {}, {}) for unit in units]
    with _locked(out):
        record = _read_record(out)
        known = record["units"]
        asked = [known[u.name]["job_id"] for u in units if not u.finished() and u.name in known]
        slurm = slurm_states(asked) if asked else {}
        states = [_state_of(unit, known.get(unit.name, {}), slurm) for unit in units]
        if asked:
            _write_record(out, record)
    return states


def _state_of(unit: Unit, entry: dict[str, Any], slurm: dict[str, str]) -> UnitState:
    """One unit's state from its folder, Slurm's answer and its record (updated in place)."""
    if unit.finished():
        state = "finished"
    elif not entry:
        state = "not run"
    else:
        state = slurm.get(entry["job_id"], entry.get("state", "UNKNOWN"))
        if state == "COMPLETED":  # but no result (yet)
            since = entry.setdefault("completed_at", time.time())
            state = "FINISHING" if time.time() - since < RESULT_GRACE_S else state
        entry["state"] = state
    return UnitState(unit.name, state, entry.get("job_id"), entry.get("stdout"), entry.get("stderr"))


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Job id → Slurm state: ``squeue`` for jobs still queued or running, then ``scontrol show job`` for jobs that
    ended recently (an array task cancelled before it started is known there, not to ``sacct``), then ``sacct``;
    a job known to none: ``UNKNOWN``. Empty when the controller does not answer (the states stay as they were)."""
    queue = _slurm(["squeue", "-h", "-r", "-o", "%i|%T", "-j", _jobs(job_ids)], gone_ok=True)
    if queue is None:
        return {}
    states: dict[str, str] = {}
    for line in queue.splitlines():
        job, _, state = line.partition("|")
        states[job.strip()] = state.strip()
    for job in (j for j in job_ids if j not in states):
        found = re.search(r"\bJobState=(\S+)", _slurm(["scontrol", "-o", "show", "job", job], gone_ok=True) or "")
        if found:
            states[job] = found.group(1)
    rest = [j for j in job_ids if j not in states]
    if rest:
        for line in (_slurm(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", _jobs(rest)]) or "").splitlines():
            job, _, state = line.partition("|")
            if job in rest and state.strip():
                states[job] = state.split()[0]  # "CANCELLED by 0" → CANCELLED
    return {j: states.get(j, "UNKNOWN") for j in job_ids}


def _jobs(job_ids: list[str]) -> str:
    """The jobs (arrays as a whole) of ``job_ids`` for ``-j``."""
    return ",".join(sorted({j.split("_")[0] for j in job_ids}))


def _slurm(command: list[str], gone_ok: bool = False) -> str | None:
    """A Slurm command's output; ``None`` when it fails or is missing (``sacct`` without accounting, a controller
    that does not answer). ``gone_ok``: a job id Slurm no longer knows is an answer (empty), not a failure."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode == 0:
        return done.stdout
    return "" if gone_ok and "Invalid job id" in done.stderr else None


def count_states(states: Sequence[UnitState]) -> str:
    """``"3 finished, 2 RUNNING, 1 PENDING"``, in the order first seen."""
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in counts.items())


def format_states(states: Sequence[UnitState]) -> str:
    """One line per unfinished unit (state, job id, log), after the counts."""
    lines = [f"units: {count_states(states)}"]
    for s in states:
        if s.state != "finished":
            where = f" job {s.job_id}, log {s.stderr}" if s.job_id else ""
            gone = " (Slurm no longer knows the job: cancelled before it started, or forgotten)" \
                if s.state == "UNKNOWN" else ""
            lines.append(f"  {s.name}: {s.state}{where}{gone}")
    return "\n".join(lines)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Exclusive use of ``slurm.json`` (a poll and a resubmission may run at once)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{RECORD}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_record(out: Path) -> dict[str, Any]:
    path = out / RECORD
    if not path.exists():
        return {"units": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def _write_record(out: Path, record: dict[str, Any]) -> None:
    atomic_write_text(json.dumps(record, indent=2), out / RECORD)
