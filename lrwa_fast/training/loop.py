"""The one training loop: steps, evaluation cadence, progress, checkpoint cadence and signals.

It drives any :class:`Job` through two methods (one unit of work, write a checkpoint): the
distillation trainer (a step is an iteration), CIFAR teacher training and the embedded benchmarks'
teachers (a step is an epoch). The job owns what a step does and what its state holds.
Data-parallel: every rank runs the loop; rank 0 evaluates and shows progress; a signal received by
any rank, or the loss of a rank's torchrun launcher, stops all of them after the same step (the
ranks agree on it after each step) with one checkpoint.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..runtime.checkpoint import checkpoint_path
from ..runtime.distributed import LAUNCHER, Ranks
from .progress import progress as progress_display

DEFAULT_INTERRUPT_DIR = "lrwa_runs/interrupted"
LAUNCHER_GONE = signal.SIGHUP  # the stop request a rank makes when its launcher has exited (the "hang-up")
# Signals that stop training after the current step with a checkpoint: Ctrl-C, termination (a preemption),
# and SIGUSR2, which submitit asks Slurm to send before a job's time limit.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM arrived during training, or a rank's torchrun launcher exited (``signum`` is then
    :data:`LAUNCHER_GONE`); a checkpoint was written first."""

    def __init__(self, message: str, path: Path, signum: int) -> None:
        super().__init__(message)
        self.path, self.signum = path, signum


class Job(Protocol):
    """What the loop needs: a step counter, the ranks, one step of work and a checkpoint writer."""

    iteration: int
    ranks: Ranks

    def step(self) -> dict[str, float]: ...

    def write_checkpoint(self, folder: str | Path) -> Path: ...


def run(job: Job, steps: int, *, evaluate: Callable[[], dict[str, float]] | None = None, eval_every: int = 1,
        checkpoint_dir: str | Path = "", checkpoint_every: int = 0, progress: bool = True, name: str = "",
        unit: str = "it", resume_hint: str = "") -> None:
    """Run ``steps`` steps of ``job``.

    ``evaluate()`` (rank 0 only; the job records its result) runs after every ``eval_every``-th
    step and after the last; then, when ``checkpoint_dir`` and ``checkpoint_every`` are set, a
    checkpoint is written every ``checkpoint_every`` steps and after the last. SIGINT/SIGTERM/SIGUSR2 stop
    after the current step with a checkpoint (in ``checkpoint_dir``, else
    :data:`DEFAULT_INTERRUPT_DIR`) and raise :class:`TrainingInterrupted`, whose message ends with
    ``resume_hint`` (``{path}``: the checkpoint's); a second SIGINT stops at once. So does the exit
    of a rank's torchrun launcher (its workers would otherwise train on as orphans).
    Progress shows the step's ``loss*`` values and the last evaluation.
    """
    if steps < 0 or eval_every < 1:
        raise ValueError(f"iterations must be >= 0 and eval_every >= 1, got {steps} and {eval_every}")
    main = job.ranks.is_main
    bar = progress_display(steps, name or type(job).__name__, enabled=progress and main, unit=unit)
    checkpointed_at, scores = -1, {}
    with StopRequests() as stop:
        for i in range(steps):
            metrics = job.step()
            final = i == steps - 1
            if main and evaluate is not None and (job.iteration % eval_every == 0 or final):
                scores = evaluate()
            if checkpoint_dir and checkpoint_every and (final or job.iteration % checkpoint_every == 0):
                job.write_checkpoint(checkpoint_dir)
                checkpointed_at = job.iteration
            bar.update(_shown(metrics, scores) if metrics else None)  # None: keep what was shown
            signum = job.ranks.max(stop.requested())
            if signum:
                bar.close()
                raise _interrupted(job, signum, checkpoint_dir, checkpointed_at, name or type(job).__name__,
                                   unit, resume_hint)
    bar.close()


def _interrupted(job: Job, signum: int, checkpoint_dir: str | Path, checkpointed_at: int, name: str, unit: str,
                 resume_hint: str) -> TrainingInterrupted:
    """Write a checkpoint unless this step's is already written; the error to raise."""
    folder = checkpoint_dir or Path(DEFAULT_INTERRUPT_DIR) / f"{name}-{os.getpid()}"
    already = checkpointed_at == job.iteration  # then in checkpoint_dir, under the same name on every rank
    path = checkpoint_path(folder, job.iteration) if already else job.write_checkpoint(folder)
    hint = resume_hint.format(path=path) if resume_hint else f"--resume {path}"
    return TrainingInterrupted(f"{_cause(signum)}: stopped after {unit} {job.iteration}; checkpoint written to "
                               f"{path} (resume with {hint})", path, signum)


def _cause(signum: int) -> str:
    """What stopped the run, for its message."""
    if signum != LAUNCHER_GONE:
        return f"{signal.Signals(signum).name} received"
    if LAUNCHER.gone():
        return f"the launcher (torchrun, pid {LAUNCHER.pid}) has exited"
    return "another rank's launcher (torchrun) has exited"


def _shown(metrics: dict[str, float], scores: dict[str, float]) -> dict[str, str]:
    shown = {k: f"{v:.4g}" for k, v in metrics.items() if k.startswith("loss")}
    shown.update({k: f"{v:.4g}" for k, v in scores.items() if k != "iteration" and isinstance(v, int | float)})
    return shown


class StopRequests:
    """Turn :data:`STOP_SIGNALS` into a flag checked between steps (a second SIGINT stops at once); the exit
    of the torchrun launcher counts as a request too (:meth:`requested`).

    Only in the main thread (Python delivers signals there), and not for signals set to be ignored.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def requested(self) -> int:
        """The signal received, else :data:`LAUNCHER_GONE` when the launcher has exited, else 0."""
        if self.signum:
            return self.signum
        return int(LAUNCHER_GONE) if LAUNCHER.gone() else 0

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
