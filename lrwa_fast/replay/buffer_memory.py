"""The buffer memory (``memory_kind="buffer"``): :class:`BufferMemory` feeds a
:class:`~lrwa_fast.replay.buffer.ReplayBuffer` from the fresh batches on an :class:`InsertSchedule`
and writes every retention draw into one reused pair of tensors; :class:`BufferSettings` is what the
config says of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..choices import MEMORY_BACKENDS, MEMORY_DTYPES
from ..config import default_of
from ..rules import Problem, check, non_negative, one_of, positive
from ..runtime.deprecation import renamed_method
from ..runtime.phases import phase
from .buffer import ReplayBuffer
from .buffer.replay_buffer import draw_problems


@dataclass(frozen=True, kw_only=True)
class BufferSettings:
    """The buffer memory (the config's ``memory_*`` fields); sizes are global, each of W ranks keeps 1/W."""

    capacity: int = default_of("memory_capacity")  # samples kept
    batch_size: int = default_of("memory_batch_size")  # samples drawn per retention batch
    policy: str = default_of("memory_policy")  # "reservoir" | "fifo"
    draw: str = default_of("memory_draw")  # "uniform": batch_size of all stored samples | "entry": one insertion
    insert_size: int = default_of("memory_insert_size")  # samples per insertion: the first of the last fresh batch
    insert_every: int = default_of("memory_insert_every")  # iterations between insertions
    start: int = default_of("memory_start")  # first iteration that inserts
    dtype: str = default_of("memory_dtype")  # storage dtype
    backend: str = default_of("memory_backend")  # "auto" ($LRWA_FAST_MEMORY_BACKEND, else the extension) | ...
    seed: int = default_of("seed")  # the Philox key of rank 0 (the others derive theirs; whole-entry draws share it)

    def __post_init__(self) -> None:
        check(self, [*positive(self, "capacity", "batch_size", "insert_size", "insert_every"),
                     *non_negative(self, "start"), *one_of(self, dtype=MEMORY_DTYPES, backend=MEMORY_BACKENDS),
                     *draw_problems(self, "insert_size"), *self._entry_draw_problems()])

    def _entry_draw_problems(self) -> list[Problem]:
        """A whole-entry draw is one entry: the retention batch is an insertion's size."""
        if self.draw != "entry" or self.batch_size == self.insert_size:
            return []
        return [Problem(f"{{draw}}='entry' draws one entry: {{batch_size}} ({self.batch_size}) must equal "
                        f"{{insert_size}} ({self.insert_size})")]


@dataclass(frozen=True)
class InsertSchedule:
    """Insert the first ``insert_size`` samples of the iteration's last fresh batch every ``insert_every``
    iterations, from iteration ``start`` on (the config's ``memory_insert_size``, ``memory_insert_every``
    and ``memory_start``)."""

    insert_size: int = default_of("memory_insert_size")
    insert_every: int = default_of("memory_insert_every")
    start: int = default_of("memory_start")

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

    def retention_batch(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """A retention batch, written into one reused pair of tensors (the previous step's graph, their
        only other user, is gone by the next draw)."""
        with phase("memory sample"):
            if self._out is None or self._out[0].dtype != dtype:
                self._out = self.buffer.empty_sample(self.batch_size, dtype)
            return self.buffer.sample(self.batch_size, dtype=dtype, out=self._out)

    draw = renamed_method("draw", "retention_batch", since="0.5")

    def metrics(self) -> dict[str, float]:
        return {"memory_fill": len(self.buffer)}

    def state_dict(self) -> dict[str, Any]:
        return self.buffer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state)
