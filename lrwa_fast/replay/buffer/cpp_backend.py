"""Replay-memory backend in the compiled extension (``csrc/``): ``cpp`` on CPU storage, ``cuda`` on GPU.

Implements :class:`.base.ReplayBackend` with the results of :mod:`.torch_backend`: each call computes
the writer's or the sampler's slots (Philox) and does the writes or the gather in one pass.
The extension handles float32, float64, float16 and bfloat16 tensors (``ValueError`` otherwise).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _ext
from .storage import TensorStorage


def insert(storage: TensorStorage, x: Tensor, logits: Tensor, *, policy: str, seen: int,
           seed: int, step: int) -> None:
    """Write ``x`` and ``logits`` (already validated) into their slots."""
    _ext.require().insert(storage.x, storage.logits, storage.inserted_at, x, logits, policy == "reservoir",
                          seen, seed, step)


def sample(storage: TensorStorage, out_x: Tensor, out_logits: Tensor, *, fill: int, replace: bool, seed: int,
           counter: int, entry: int = 0) -> Tensor:
    """Draw ``len(out_x)`` slots, gather their rows into ``out_x`` / ``out_logits``; return the slots.

    The extension writes through raw pointers, so the outputs' version counters are bumped here:
    a graph that saved the previous contents then refuses to back-propagate, as after ``copy_``.
    """
    ext, args = _ext.require(), (storage.x, storage.logits, out_x, out_logits, fill, replace, seed, counter)
    slots = ext.sample(*args, entry) if entry else ext.sample(*args)  # an extension built before 0.4 has no entry
    for t in (out_x, out_logits):
        torch.autograd.graph.increment_version(t)
    return slots
