"""The training loop: iterations, evaluation cadence, progress, checkpoint cadence and signals.

It drives any trainer through its public methods (:class:`Trainable`); the trainer owns what one
iteration does and how its state is saved. Data-parallel: every rank runs the loop; rank 0
evaluates and shows progress; a signal received by any rank stops all of them after the same
iteration (the ranks agree on it after each iteration) with one checkpoint.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from .checkpoint import checkpoint_path
from .config import DFADConfig
from .distributed import DataParallel
from .progress import progress as progress_display

Evaluate = Callable[[nn.Module], "float | dict[str, float]"]
DEFAULT_INTERRUPT_DIR = "lrwa_runs/interrupted"


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM arrived during training; a checkpoint was written first."""

    def __init__(self, message: str, path: Path, signum: int) -> None:
        super().__init__(message)
        self.path, self.signum = path, signum


class Trainable(Protocol):
    """What the loop needs from a trainer."""

    config: DFADConfig
    iteration: int
    ranks: DataParallel
    history: dict[str, list[dict[str, float]]]

    def step(self) -> dict[str, float]: ...

    def evaluate(self, evaluate: Evaluate) -> dict[str, float]: ...

    def check_horizon(self, iterations: int) -> None: ...

    def check_finite(self) -> None: ...

    def write_checkpoint(self, folder: str | Path) -> Path: ...


def train(trainer: Trainable, iterations: int | None = None, evaluate: Evaluate | None = None,
          eval_every: int = 100, progress: bool = True) -> dict[str, list[dict[str, float]]]:
    """Run ``iterations`` more iterations (default: up to ``config.iterations``); see
    :meth:`lrwa_fast.trainer.DFADTrainer.train`."""
    total = trainer.config.iterations - trainer.iteration if iterations is None else int(iterations)
    if total < 0 or eval_every < 1:
        raise ValueError(f"iterations must be >= 0 and eval_every >= 1, got {total} and {eval_every}")
    trainer.check_horizon(total)
    name = type(trainer).__name__
    main = trainer.ranks.is_main
    bar = progress_display(total, name, enabled=progress and main)
    checkpointed_at = -1
    with StopRequests() as stop:
        for i in range(total):
            metrics = trainer.step()
            final = i == total - 1
            if main and evaluate is not None and (trainer.iteration % eval_every == 0 or final):
                trainer.history["evaluations"].append(trainer.evaluate(evaluate))
            if _checkpoint_due(trainer.config, trainer.iteration, final):
                trainer.write_checkpoint(trainer.config.checkpoint_dir)
                checkpointed_at = trainer.iteration
            bar.update(_shown(metrics, trainer.history["evaluations"]) if metrics else None)
            signum = trainer.ranks.max(stop.signum or 0)
            if signum:
                bar.close()
                raise _interrupted(trainer, signum, checkpointed_at)
    bar.close()
    trainer.check_finite()
    trainer.history["evaluations"] = trainer.ranks.broadcast(trainer.history["evaluations"])  # rank 0's
    return trainer.history


def _checkpoint_due(cfg: DFADConfig, iteration: int, final: bool) -> bool:
    if not cfg.checkpoint_dir or not cfg.checkpoint_every:
        return False
    return final or iteration % cfg.checkpoint_every == 0


def _interrupted(trainer: Trainable, signum: int, checkpointed_at: int) -> TrainingInterrupted:
    """Write a checkpoint unless this iteration's is already written; the error to raise."""
    name = type(trainer).__name__
    folder = trainer.config.checkpoint_dir or Path(DEFAULT_INTERRUPT_DIR) / f"{name}-{os.getpid()}"
    if checkpointed_at == trainer.iteration:
        path = checkpoint_path(folder, trainer.iteration)  # checkpoint_dir's, the same on every rank
    else:
        path = trainer.write_checkpoint(folder)
    signame = signal.Signals(signum).name
    return TrainingInterrupted(f"{signame} received: stopped after iteration {trainer.iteration}; checkpoint "
                               f"written to {path} (resume with {name}.load or --resume {path})", path, signum)


def _shown(metrics: dict[str, float], evaluations: list[dict[str, float]]) -> dict[str, str]:
    shown = {k: f"{v:.4g}" for k, v in metrics.items() if k.startswith("loss")}
    if evaluations:
        shown.update({k: f"{v:.4g}" for k, v in evaluations[-1].items() if k != "iteration"})
    return shown


class StopRequests:
    """Turn SIGINT/SIGTERM into a flag checked between iterations (a second SIGINT stops at once).

    Only in the main thread (Python delivers signals there), and not for signals set to be ignored.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
