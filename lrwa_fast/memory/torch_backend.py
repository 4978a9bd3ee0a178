"""Replay-memory operations in plain PyTorch: the reference every other backend must equal.

A backend implements two operations over a :class:`TensorStorage`:

* ``insert``: write a batch under the ``fifo`` or ``reservoir`` policy. Item ``i`` (0-based count
  of all items ever offered) goes to slot ``i`` while the memory fills; afterwards ``fifo`` uses
  ``i mod capacity`` and ``reservoir`` draws ``j`` uniform in ``[0, i]`` and keeps the item in slot
  ``j`` when ``j < capacity``. When several items of a batch land in one slot the latest wins,
  exactly as inserting them one by one would.
* ``sample``: ``n`` slot indices uniform over the filled slots, with replacement (one draw each)
  or without (the ``n`` smallest Philox keys among the filled slots), then one gather of samples
  and logits into caller-given output tensors, converted to their dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .philox import (
    STREAM_PERMUTE,
    STREAM_RESERVOIR,
    STREAM_SAMPLE,
    below,
    philox_u32,
    split_index,
)
from .storage import TensorStorage


def assign_slots(policy: str, seen: int, batch: int, capacity: int, seed: int,
                 device: torch.device) -> tuple[Tensor, Tensor]:
    """Rows of the batch that survive and the slots they go to (later items win collisions)."""
    items = torch.arange(seen, seen + batch, device=device, dtype=torch.int64)
    if policy == "fifo":
        slots = items % capacity
    else:
        lo, hi = split_index(items)
        draws = below(philox_u32(seed, lo, hi, 0, STREAM_RESERVOIR), items + 1)
        slots = torch.where(items < capacity, items, draws)
    rows = torch.arange(batch, device=device, dtype=torch.int64)
    keep = slots < capacity
    slots, rows = slots[keep], rows[keep]
    winner = torch.full((capacity,), -1, device=device, dtype=torch.int64)
    winner.scatter_reduce_(0, slots, rows, reduce="amax")
    is_winner = winner[slots] == rows
    return rows[is_winner], slots[is_winner]


def insert(storage: TensorStorage, x: Tensor, logits: Tensor, *, policy: str, seen: int,
           seed: int, step: int) -> None:
    """Write ``x`` and ``logits`` (already validated) into their slots."""
    capacity = storage.x.shape[0]
    rows, slots = assign_slots(policy, seen, x.shape[0], capacity, seed, storage.x.device)
    storage.x.index_copy_(0, slots, x.index_select(0, rows).to(storage.x.dtype))
    storage.logits.index_copy_(0, slots, logits.index_select(0, rows).to(storage.logits.dtype))
    storage.inserted_at.index_fill_(0, slots, step)


def sample_indices(fill: int, n: int, *, replace: bool, seed: int, counter: int,
                   device: torch.device) -> Tensor:
    """``n`` indices into ``[0, fill)``; ``counter`` is the draw number (with replacement) or the
    call number (without)."""
    if replace:
        lo, hi = split_index(torch.arange(counter, counter + n, device=device, dtype=torch.int64))
        return below(philox_u32(seed, lo, hi, 0, STREAM_SAMPLE), fill)
    slots = torch.arange(fill, device=device, dtype=torch.int64)
    keys = philox_u32(seed, slots, 0, counter, STREAM_PERMUTE)
    composite = ((keys >> 1) << 32) | slots
    return torch.topk(composite, n, largest=False, sorted=True).values & 0xFFFFFFFF


def sample(storage: TensorStorage, out_x: Tensor, out_logits: Tensor, *, fill: int, replace: bool, seed: int,
           counter: int) -> Tensor:
    """Draw ``len(out_x)`` slots, gather their rows into ``out_x`` / ``out_logits``; return the slots."""
    idx = sample_indices(fill, out_x.shape[0], replace=replace, seed=seed, counter=counter, device=storage.x.device)
    _gather_into(storage.x, idx, out_x)
    _gather_into(storage.logits, idx, out_logits)
    return idx


def _gather_into(source: Tensor, idx: Tensor, out: Tensor) -> None:
    """``out[:] = source[idx]`` converted to ``out``'s dtype, without an intermediate when they match."""
    if out.dtype == source.dtype:
        torch.index_select(source, 0, idx, out=out)
    else:
        out.copy_(source.index_select(0, idx))
