"""The torchrun harness of the multi-process tests here: ``torchrun --standalone --nproc_per_node=2`` under a
deadline, every process it started found through ``/proc`` and killed on the way out, and orphaned workers
reaped by this process (a child subreaper); :data:`USER_SCRIPT`, a user's script for it to run."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .processes import subprocess_env

USER_SCRIPT = Path(__file__).with_name("torchrun_user.py")  # run with an output folder: see its docstring


class TorchrunJob:
    """``torchrun --standalone --nproc_per_node=2 ARGS`` in its own session, one thread per process, its
    output (the workers' too) in ``folder/torchrun.log``, under a deadline: ``with TorchrunJob(...) as
    job``; on leaving, every process it started is killed (the workers run in sessions of their own)."""

    def __init__(self, args: list[str], folder: Path, deadline_s: float = 90.0) -> None:
        self.args, self.log, self.deadline = args, folder / "torchrun.log", time.monotonic() + deadline_s
        self.marker = str(folder)  # in the command line of every process of the job
        self.proc: subprocess.Popen | None = None
        self.pids: set[int] = set()

    def __enter__(self) -> TorchrunJob:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *self.args]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         env=subprocess_env(OMP_NUM_THREADS="1"))
        self.pids.add(self.proc.pid)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def left(self) -> float:
        """Seconds to the deadline (``TimeoutError`` once it has passed)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"torchrun {' '.join(self.args)} ran past its deadline:\n{self.output()[-3000:]}")
        return left

    def wait(self) -> int:
        """torchrun's exit status."""
        return self.proc.wait(timeout=self.left())

    def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.left()
            time.sleep(0.05)

    def workers(self) -> dict[int, int]:
        """The pid of each rank, once torchrun has started both."""
        ranks: dict[int | None, int] = {}
        while not {0, 1} <= set(ranks):
            self.left()
            time.sleep(0.05)
            ranks = {_rank_of(pid): pid for pid in _all_pids() if _stat(pid)[1:2] == [str(self.proc.pid)]}
        self.pids.update(ranks[r] for r in (0, 1))
        return {r: ranks[r] for r in (0, 1)}

    def exit_statuses(self, pids: list[int]) -> list[int]:
        """The exit statuses of orphaned workers, reaped here (:func:`child_subreaper`)."""
        statuses = {}
        while len(statuses) < len(pids):
            for pid in set(pids) - set(statuses):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    statuses[pid] = os.waitstatus_to_exitcode(status)
            if len(statuses) < len(pids):
                self.left()
                time.sleep(0.05)
        return [statuses[pid] for pid in pids]

    def running(self) -> list[int]:
        """The processes of the job still running (zombies are finished)."""
        return [pid for pid in _all_pids() if self.marker in _read(pid, "cmdline") and _stat(pid)[:1] != ["Z"]]

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in self.running():
            os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        for pid in self.pids - {self.proc.pid}:  # orphans handed to this process by child_subreaper, all ended
            if _stat(pid)[1:2] == [str(os.getpid())]:
                with suppress(ChildProcessError):
                    os.waitpid(pid, 0)


@contextmanager
def child_subreaper() -> Iterator[None]:
    """Orphaned descendants (workers whose launcher died) become this process's children while inside, so
    their exit status can be read and nothing outlives the test unseen (Linux ``PR_SET_CHILD_SUBREAPER``)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl(36, 1, 0, 0, 0)
    try:
        yield
    finally:
        prctl(36, 0, 0, 0, 0)


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _read(pid: int, name: str) -> str:
    try:
        return (Path("/proc") / str(pid) / name).read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # gone meanwhile
        return ""


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command's name: state, parent pid, ...; [] when gone."""
    stat = _read(pid, "stat")
    return stat[stat.rfind(")") + 2:].split()


def _rank_of(pid: int) -> int | None:
    ranks = [v.split("=", 1)[1] for v in _read(pid, "environ").split(" ") if v.startswith("RANK=")]
    return int(ranks[0]) if ranks else None
