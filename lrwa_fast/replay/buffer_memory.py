"""The buffer memory (``memory_kind="buffer"``): :class:`BufferMemory` feeds a
:class:`~lrwa_fast.replay.buffer.ReplayBuffer` from the fresh batches on an :class:`InsertSchedule`
and writes every retention draw into one reused pair of tensors; :class:`BufferSettings` is what the
config says of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..runtime.phases import phase
from .buffer import ReplayBuffer


@dataclass(frozen=True, kw_only=True)
class BufferSettings:
    """The buffer memory (the config's ``memory_*`` fields); sizes are global, each of W ranks keeps 1/W."""

    capacity: int = 2048  # samples kept
    batch_size: int = 32  # samples drawn per retention batch
    policy: str = "reservoir"  # "reservoir" | "fifo"
    draw: str = "uniform"  # "uniform": batch_size of all stored samples | "entry": one whole insertion (fifo)
    insert_size: int = 32  # samples inserted per insertion: the first of the iteration's last fresh batch
    insert_every: int = 1  # iterations between insertions
    start: int = 0  # first iteration that inserts
    dtype: str = "float32"  # storage dtype
    backend: str = "auto"  # "auto" ($LRWA_FAST_MEMORY_BACKEND, else the extension where built) | torch | cpp | cuda
    seed: int = 0  # the Philox key of rank 0 (the others derive theirs; whole-entry draws share it)


@dataclass(frozen=True)
class InsertSchedule:
    """Insert the first ``insert_size`` samples of the iteration's last fresh batch every ``insert_every``
    iterations, from iteration ``start`` on (the config's ``memory_insert_size``, ``memory_insert_every``
    and ``memory_start``)."""

    insert_size: int = 32
    insert_every: int = 1
    start: int = 0

    def due(self, iteration: int) -> bool:
        since_start = iteration - self.start
        return since_start >= 0 and since_start % self.insert_every == 0


class BufferMemory:
    """Feeds the buffer from the fresh batches and serves retention batches of ``batch_size``."""

    def __init__(self, buffer: ReplayBuffer, batch_size: int, schedule: InsertSchedule | None = None) -> None:
        self.buffer, self.batch_size = buffer, batch_size
        self.schedule = schedule if schedule is not None else InsertSchedule()
        self._last: tuple[Tensor, Tensor] | None = None
        self._out: tuple[Tensor, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.buffer)

    def observe(self, x: Tensor, t: Tensor) -> None:
        """Remember a fresh batch: the iteration's last one is the candidate for insertion."""
        self._last = (x, t)

    def end_of_iteration(self, iteration: int, *, clean: bool) -> None:
        """Insert when the schedule says so and no step of the iteration was skipped (a skipped step
        may have met a non-finite batch)."""
        if self.schedule.due(iteration) and clean and self._last is not None:
            x, t = self._last
            size = self.schedule.insert_size
            with phase("memory insert"):
                self.buffer.add(x[:size], t[:size], step=iteration)
        self._last = None

    def draw(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """A retention batch, written into one reused pair of tensors (the previous step's graph, their
        only other user, is gone by the next draw)."""
        with phase("memory sample"):
            if self._out is None or self._out[0].dtype != dtype:
                self._out = self.buffer.empty_sample(self.batch_size, dtype)
            return self.buffer.sample(self.batch_size, dtype=dtype, out=self._out)

    def metrics(self) -> dict[str, float]:
        return {"memory_fill": len(self.buffer)}

    def state_dict(self) -> dict[str, Any]:
        return self.buffer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state)
