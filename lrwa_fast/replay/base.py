"""The memory-part protocol: what the trainer and the LRwA update use of a replay memory, whatever it
keeps (stored samples or a generative model of them)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Memory(Protocol):
    """What the trainer and :class:`~lrwa_fast.updates.MetaUpdate` use of a memory part: fed with the
    fresh batches, told when an iteration ends, asked for retention batches, checkpointed."""

    def __len__(self) -> int: ...

    def observe(self, x: Tensor, t: Tensor) -> None: ...

    def end_of_iteration(self, iteration: int, *, clean: bool) -> None: ...

    def retention_batch(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]: ...  # ``draw`` before 0.5

    def metrics(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def is_memory(part: object) -> bool:
    """Whether ``part`` is a memory: it follows :class:`Memory`, or it is a memory written for 0.4, with
    ``draw`` where :class:`Memory` now has ``retention_batch`` (kept one release)."""
    if isinstance(part, Memory):
        return True
    needed = ("__len__", "observe", "end_of_iteration", "draw", "metrics", "state_dict", "load_state_dict")
    return all(callable(getattr(part, name, None)) for name in needed)
