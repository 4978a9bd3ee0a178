"""The sampler: uniform draws over the filled slots, and the counters that make them reproducible.

With replacement, draw number ``d`` (counted over the buffer's life) takes slot
``philox(seed, d) * fill >> 32``; without, call number ``c`` takes the ``n`` filled slots with the
smallest Philox keys ``philox(seed, slot, c)``. The compiled backend implements the same rule in
``csrc/``; :meth:`UniformSampler.indices` is the PyTorch reference of it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import ReplayBackend
from .philox import STREAM_PERMUTE, STREAM_SAMPLE, below, philox_u32, split_index
from .storage import TensorStorage


class UniformSampler:
    """Owns the Philox key (``seed``) and the counters of draws with (``draws``) and without (``calls``)
    replacement, so each draw depends only on them."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.draws = 0  # items drawn with replacement so far: the counter of the next one
        self.calls = 0  # calls without replacement so far: the counter of the next one

    @staticmethod
    def indices(fill: int, n: int, *, replace: bool, seed: int, counter: int, device: torch.device) -> Tensor:
        """``n`` indices into ``[0, fill)``; ``counter`` is the first draw number (with replacement) or
        the call number (without)."""
        if replace:
            lo, hi = split_index(torch.arange(counter, counter + n, device=device, dtype=torch.int64))
            return below(philox_u32(seed, lo, hi, 0, STREAM_SAMPLE), fill)
        slots = torch.arange(fill, device=device, dtype=torch.int64)
        keys = philox_u32(seed, slots, 0, counter, STREAM_PERMUTE)
        composite = ((keys >> 1) << 32) | slots
        return torch.topk(composite, n, largest=False, sorted=True).values & 0xFFFFFFFF

    @staticmethod
    def check(n: int, fill: int, replace: bool) -> None:
        """Raise ``ValueError`` unless ``n`` items can be drawn from ``fill`` filled slots."""
        if fill == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        if not replace and n > fill:
            raise ValueError(f"cannot draw {n} distinct items from a buffer holding {fill}")

    def draw(self, backend: ReplayBackend, storage: TensorStorage, out_x: Tensor, out_logits: Tensor, *,
             fill: int, replace: bool, rng: torch.Generator | None) -> Tensor:
        """Fill ``out_x`` / ``out_logits`` with a checked draw of ``len(out_x)`` items, advance the
        counter, return the slots; ``rng`` (optional) supplies this call's key instead of ``seed``."""
        key = self.seed if rng is None else int(torch.randint(0, 2**62, (1,), generator=rng, device=rng.device))
        slots = backend.sample(storage, out_x, out_logits, fill=fill, replace=replace, seed=key,
                               counter=self.draws if replace else self.calls)
        if replace:
            self.draws += out_x.shape[0]
        else:
            self.calls += 1
        return slots

    def state_dict(self) -> dict[str, int]:
        """The key and counters, which determine every later draw."""
        return {"seed": self.seed, "draws": self.draws, "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (other keys are ignored)."""
        self.seed, self.draws, self.calls = int(state["seed"]), int(state["draws"]), int(state["calls"])
