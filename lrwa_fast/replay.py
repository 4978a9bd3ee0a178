"""The trainer's memory part: the protocol every memory follows (:class:`Memory`), and the buffer memory
(:class:`ReplayMemory`: a :class:`~lrwa_fast.memory.ReplayBuffer`, when to insert into it, and the
tensors every retention draw is written into)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from .memory import ReplayBuffer
from .phases import phase

MEMORY_KINDS: tuple[str, ...] = ("buffer", "generative")  # config memory_kind: this class, or a VAE


@runtime_checkable
class Memory(Protocol):
    """What the trainer and :class:`~lrwa_fast.updates.MetaUpdate` use of a memory part: fed with the
    fresh batches, told when an iteration ends, asked for retention batches, checkpointed."""

    def __len__(self) -> int: ...

    def observe(self, x: Tensor, t: Tensor) -> None: ...

    def end_of_iteration(self, iteration: int, *, clean: bool) -> None: ...

    def draw(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]: ...

    def metrics(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class InsertSchedule:
    """Insert the first ``size`` samples of the iteration's last fresh batch every ``every`` iterations,
    from iteration ``start`` on."""

    size: int = 32
    every: int = 1
    start: int = 0

    def due(self, iteration: int) -> bool:
        since_start = iteration - self.start
        return since_start >= 0 and since_start % self.every == 0


class ReplayMemory:
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
            size = self.schedule.size
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
