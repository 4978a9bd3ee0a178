"""Philox4x32-10 counter-based random numbers in plain PyTorch (any device, no host sync).

The replay memory draws every random number from ``philox(key, counter)`` so that a draw
depends only on (seed, what is drawn, its index): a batched insert equals a sequential one, a
run is reproducible, and the C++/CUDA backends (``csrc/philox.h``) draw the same numbers.

Values are uint32 held in int64 tensors; the 32×32-bit products are split into 16-bit halves
so nothing overflows int64.

Counter layout used by the memory (c0, c1 = low/high words of a 64-bit index, c2, c3 = stream):

=====================  =======================  ====  ====
draw                   index (c0, c1)           c2    c3
=====================  =======================  ====  ====
reservoir slot         item number              0     1
sample with repl.      draw number              0     2
sample w/o repl. key   slot                     call  3
whole-entry draw       call number              0     4
=====================  =======================  ====  ====
"""

from __future__ import annotations

import torch
from torch import Tensor

MASK32 = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10

STREAM_RESERVOIR = 1
STREAM_SAMPLE = 2
STREAM_PERMUTE = 3
STREAM_ENTRY = 4


def _mulhilo(constant: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """High and low 32-bit words of ``constant * x`` for uint32 ``x`` held in int64."""
    p_lo = constant * (x & 0xFFFF)
    p_hi = constant * (x >> 16)
    s = p_hi + (p_lo >> 16)
    return s >> 16, ((s & 0xFFFF) << 16) | (p_lo & 0xFFFF)


def philox_u32(key: int, c0: Tensor, c1: Tensor | int = 0, c2: int = 0, c3: int = 0) -> Tensor:
    """First output word of Philox4x32-10 for each counter ``(c0, c1, c2, c3)`` and 64-bit ``key``.

    ``c0`` is an int64 tensor of uint32 values; the result has its shape, dtype int64 in [0, 2³²).
    """
    k0, k1 = key & MASK32, (key >> 32) & MASK32
    x0 = c0
    x1 = c1 if isinstance(c1, Tensor) else torch.full_like(c0, c1 & MASK32)
    x2 = torch.full_like(c0, c2 & MASK32)
    x3 = torch.full_like(c0, c3 & MASK32)
    for r in range(ROUNDS):
        hi0, lo0 = _mulhilo(_M0, x0)
        hi1, lo1 = _mulhilo(_M1, x2)
        x0, x1, x2, x3 = hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0
        if r + 1 < ROUNDS:
            k0, k1 = (k0 + _W0) & MASK32, (k1 + _W1) & MASK32
    return x0


def split_index(index: Tensor) -> tuple[Tensor, Tensor]:
    """Low and high 32-bit words of a non-negative int64 index tensor."""
    return index & MASK32, index >> 32


def below(u32: Tensor, bound: Tensor | int) -> Tensor:
    """Map uint32 draws to integers in ``[0, bound)`` by multiply-shift (bound < 2³¹)."""
    return (u32 * bound) >> 32
