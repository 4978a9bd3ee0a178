"""The contract of a replay-memory backend: the work done on a :class:`TensorStorage`.

The writer (:mod:`.writers`) and the sampler (:mod:`.samplers`) own the counters and the rules that
pick slots; a backend applies those rules to the tensors. The compiled backend computes the slots
inside its one call (Philox, see :mod:`.philox`), so the rule's inputs (policy, counters, key) are
what crosses this interface. :mod:`.torch_backend` is the reference every backend equals bit for bit.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from .storage import TensorStorage


@runtime_checkable
class ReplayBackend(Protocol):
    """Batched insert and draw-and-gather over a storage (modules :mod:`.torch_backend`, :mod:`.cpp_backend`)."""

    def insert(self, storage: TensorStorage, x: Tensor, logits: Tensor, *, policy: str, seen: int,
               seed: int, step: int) -> None:
        """Write the batch ``x`` / ``logits`` (already validated) where the writer of ``policy`` puts
        items ``seen, seen + 1, ...`` (Philox key ``seed``), stamping ``inserted_at`` with ``step``."""

    def sample(self, storage: TensorStorage, out_x: Tensor, out_logits: Tensor, *, fill: int, replace: bool,
               seed: int, counter: int, entry: int = 0) -> Tensor:
        """Draw ``len(out_x)`` slots of the first ``fill`` as the uniform sampler does for key ``seed`` and
        ``counter`` (``entry > 0``: the ``entry`` slots of one whole entry, as the entry sampler does), gather
        their rows into ``out_x`` / ``out_logits`` (converting dtype), return the slots."""
