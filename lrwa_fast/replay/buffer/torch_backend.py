"""Replay-memory backend in plain PyTorch (any device): the reference every other backend must equal.

Implements :class:`.base.ReplayBackend` with the writers' and the samplers' reference rules
(:meth:`.writers.Writer.assign_slots`, :meth:`.samplers.UniformSampler.indices`,
:meth:`.samplers.EntrySampler.indices`), then one scatter of the surviving rows or one gather of the
drawn ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .samplers import EntrySampler, UniformSampler
from .storage import TensorStorage
from .writers import WRITERS


def insert(storage: TensorStorage, x: Tensor, logits: Tensor, *, policy: str, seen: int,
           seed: int, step: int) -> None:
    """Write ``x`` and ``logits`` (already validated) into the slots the ``policy`` writer assigns."""
    rows, slots = WRITERS[policy].assign_slots(seen, x.shape[0], storage.x.shape[0], seed, storage.x.device)
    storage.x.index_copy_(0, slots, x.index_select(0, rows).to(storage.x.dtype))
    storage.logits.index_copy_(0, slots, logits.index_select(0, rows).to(storage.logits.dtype))
    storage.inserted_at.index_fill_(0, slots, step)


def sample(storage: TensorStorage, out_x: Tensor, out_logits: Tensor, *, fill: int, replace: bool, seed: int,
           counter: int, entry: int = 0) -> Tensor:
    """Draw ``len(out_x)`` slots (``entry > 0``: one whole entry), gather their rows into ``out_x`` /
    ``out_logits``; return the slots."""
    device = storage.x.device
    if entry:
        idx = EntrySampler.indices(fill, entry, seed=seed, counter=counter, device=device)
    else:
        idx = UniformSampler.indices(fill, out_x.shape[0], replace=replace, seed=seed, counter=counter, device=device)
    _gather_into(storage.x, idx, out_x)
    _gather_into(storage.logits, idx, out_logits)
    return idx


def _gather_into(source: Tensor, idx: Tensor, out: Tensor) -> None:
    """``out[:] = source[idx]`` converted to ``out``'s dtype, without an intermediate when they match."""
    if out.dtype == source.dtype:
        torch.index_select(source, 0, idx, out=out)
    else:
        out.copy_(source.index_select(0, idx))
