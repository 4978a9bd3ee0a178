"""Replay-memory operations in the compiled extension (``csrc/``), on CPU or CUDA storage.

Same contract and results as :mod:`.torch_backend`; ``sample`` draws and gathers in one call.
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


def sample(storage: TensorStorage, n: int, *, fill: int, replace: bool, seed: int, counter: int,
           out_dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Draw ``n`` slots and gather ``(x, logits, slots)``."""
    x, logits, slots = _ext.require().sample(storage.x, storage.logits, n, fill, replace, seed, counter,
                                             out_dtype)
    return x, logits, slots
