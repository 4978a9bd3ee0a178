"""Writers: which slot each offered item goes to, and the insertion counters that decide it.

Item ``i`` (0-based count of all items ever offered) goes to slot ``i`` while the memory fills;
afterwards :class:`FIFOWriter` uses ``i mod capacity`` and :class:`ReservoirWriter` draws ``j``
uniform in ``[0, i]`` (Philox) and keeps the item in slot ``j`` when ``j < capacity``. When several
items of a batch land in one slot the latest wins, exactly as inserting them one by one would.
The compiled backend implements the same rules in ``csrc/``; :meth:`Writer.assign_slots` is the
PyTorch reference of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from .base import ReplayBackend
from .philox import STREAM_RESERVOIR, below, philox_u32, split_index
from .storage import TensorStorage

MAX_ITEMS = 2**31 - 1  # counter-based draws map 32-bit numbers onto [0, items]


class Writer(ABC):
    """Counts the items (``seen``) and batches (``adds``) offered; a subclass names the slot rule."""

    policy: ClassVar[str]

    def __init__(self, seed: int) -> None:
        self.seed = seed  # Philox key of the slot draws
        self.seen = 0  # items offered so far: the number of the next one
        self.adds = 0  # batches written so far: the default step of the next one

    @staticmethod
    @abstractmethod
    def slots_for(items: Tensor, capacity: int, seed: int) -> Tensor:
        """Slot of each item number in ``items`` (``>= capacity``: the item is not kept)."""

    @classmethod
    def assign_slots(cls, seen: int, batch: int, capacity: int, seed: int,
                     device: torch.device) -> tuple[Tensor, Tensor]:
        """Rows of a batch of items ``seen, ...`` that survive and their slots (later items win collisions)."""
        items = torch.arange(seen, seen + batch, device=device, dtype=torch.int64)
        slots = cls.slots_for(items, capacity, seed)
        rows = torch.arange(batch, device=device, dtype=torch.int64)
        keep = slots < capacity
        slots, rows = slots[keep], rows[keep]
        winner = torch.full((capacity,), -1, device=device, dtype=torch.int64)
        winner.scatter_reduce_(0, slots, rows, reduce="amax")
        is_winner = winner[slots] == rows
        return rows[is_winner], slots[is_winner]

    def write(self, backend: ReplayBackend, storage: TensorStorage, x: Tensor, logits: Tensor,
              step: int | None) -> None:
        """Insert a validated batch with ``backend``, stamped ``step`` (default: ``adds``), and count it."""
        batch = x.shape[0]
        if self.seen + batch > MAX_ITEMS:
            raise ValueError(f"a replay buffer accepts at most {MAX_ITEMS} items in its lifetime")
        backend.insert(storage, x, logits, policy=self.policy, seen=self.seen, seed=self.seed,
                       step=self.adds if step is None else int(step))
        self.seen += batch
        self.adds += 1

    def state_dict(self) -> dict[str, int]:
        """The key and counters, which with the storage determine every later slot."""
        return {"seed": self.seed, "seen": self.seen, "adds": self.adds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (other keys are ignored)."""
        self.seed, self.seen, self.adds = int(state["seed"]), int(state["seen"]), int(state["adds"])


class FIFOWriter(Writer):
    """Keeps the newest ``capacity`` items."""

    policy = "fifo"

    @staticmethod
    def slots_for(items: Tensor, capacity: int, seed: int) -> Tensor:
        """Item ``i`` overwrites slot ``i mod capacity``."""
        return items % capacity


class ReservoirWriter(Writer):
    """Keeps every item offered with equal probability ``capacity / seen`` (Algorithm R)."""

    policy = "reservoir"

    @staticmethod
    def slots_for(items: Tensor, capacity: int, seed: int) -> Tensor:
        """Item ``i`` fills slot ``i`` while there is room, else draws its slot uniform in ``[0, i]``."""
        lo, hi = split_index(items)
        draws = below(philox_u32(seed, lo, hi, 0, STREAM_RESERVOIR), items + 1)
        return torch.where(items < capacity, items, draws)


WRITERS: dict[str, type[Writer]] = {w.policy: w for w in (ReservoirWriter, FIFOWriter)}
