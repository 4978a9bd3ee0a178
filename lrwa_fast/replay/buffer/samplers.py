"""The samplers: which filled slots a draw takes, and the counters that make draws reproducible.

:class:`UniformSampler` (``draw="uniform"``): with replacement, draw number ``d`` (counted over the
buffer's life) takes slot ``philox(seed, d) * fill >> 32``; without, call number ``c`` takes the ``n``
filled slots with the smallest Philox keys ``philox(seed, slot, c)``.

:class:`EntrySampler` (``draw="entry"``, the authors' replay): call number ``c`` takes one whole stored
insertion, the ``size`` consecutive slots of entry ``philox(seed, c) * (fill // size) >> 32``; with a FIFO
writer, a capacity of whole entries and insertions of ``size`` samples, an entry is exactly one insertion.

The compiled backend implements the same rules in ``csrc/``; the samplers' ``indices`` are their
PyTorch references.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...runtime.deprecation import renamed_method
from .base import ReplayBackend
from .philox import STREAM_ENTRY, STREAM_PERMUTE, STREAM_SAMPLE, below, philox_u32, split_index
from .storage import TensorStorage


def call_key(seed: int, rng: torch.Generator | None) -> int:
    """The Philox key of one draw: the sampler's ``seed``, or a key drawn from ``rng`` when one is given."""
    return seed if rng is None else int(torch.randint(0, 2**62, (1,), generator=rng, device=rng.device))


class UniformSampler:
    """Owns the Philox key (``seed``) and the counters of draws with (``draws``) and without (``calls``)
    replacement, so each draw depends only on them."""

    kind = "uniform"

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

    def sample_into(self, backend: ReplayBackend, storage: TensorStorage, out_x: Tensor, out_logits: Tensor, *,
                    fill: int, replace: bool, rng: torch.Generator | None) -> Tensor:
        """Fill ``out_x`` / ``out_logits`` with a checked draw of ``len(out_x)`` items, advance the
        counter, return the slots; ``rng`` (optional) supplies this call's key instead of ``seed``."""
        key = call_key(self.seed, rng)
        slots = backend.sample(storage, out_x, out_logits, fill=fill, replace=replace, seed=key,
                               counter=self.draws if replace else self.calls)
        if replace:
            self.draws += out_x.shape[0]
        else:
            self.calls += 1
        return slots

    draw = renamed_method("draw", "sample_into", since="0.5")

    def state_dict(self) -> dict[str, int]:
        """The key and counters, which determine every later draw."""
        return {"seed": self.seed, "draws": self.draws, "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (other keys are ignored)."""
        self.seed, self.draws, self.calls = int(state["seed"]), int(state["draws"]), int(state["calls"])


class EntrySampler:
    """Draws one whole stored insertion of ``size`` samples per call, the entry chosen uniformly among the full
    ones; owns the Philox key (``seed``) and the count of calls, so each draw depends only on them."""

    kind = "entry"

    def __init__(self, seed: int, size: int) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"an entry's size must be an integer >= 1, got {size!r}")
        self.seed, self.size = seed, size
        self.calls = 0  # draws so far: the counter of the next one

    @property
    def draws(self) -> int:
        """Samples drawn so far."""
        return self.calls * self.size

    @staticmethod
    def indices(fill: int, size: int, *, seed: int, counter: int, device: torch.device) -> Tensor:
        """The ``size`` slots of the entry call number ``counter`` takes among the ``fill // size`` full ones."""
        lo, hi = split_index(torch.tensor([counter], device=device, dtype=torch.int64))
        entry = below(philox_u32(seed, lo, hi, 0, STREAM_ENTRY), fill // size)
        return entry * size + torch.arange(size, device=device, dtype=torch.int64)

    def check(self, n: int, fill: int, replace: bool) -> None:
        """Raise ``ValueError`` unless a draw of ``n`` can be one whole entry of ``fill`` filled slots."""
        if fill < self.size:
            raise ValueError(f"cannot draw a whole entry of {self.size} from a buffer holding {fill}")
        if n != self.size:
            raise ValueError(f"a whole-entry draw takes the entry's {self.size} samples, not {n!r}")

    def sample_into(self, backend: ReplayBackend, storage: TensorStorage, out_x: Tensor, out_logits: Tensor, *,
                    fill: int, replace: bool, rng: torch.Generator | None) -> Tensor:
        """Fill ``out_x`` / ``out_logits`` with one whole entry, count the call, return the slots (``replace``
        does not apply: an entry's slots are distinct)."""
        slots = backend.sample(storage, out_x, out_logits, fill=fill, replace=True, seed=call_key(self.seed, rng),
                               counter=self.calls, entry=self.size)
        self.calls += 1
        return slots

    draw = renamed_method("draw", "sample_into", since="0.5")

    def state_dict(self) -> dict[str, Any]:
        """The kind, key, entry size and count of calls, which determine every later draw."""
        return {"kind": self.kind, "seed": self.seed, "size": self.size, "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; ``ValueError`` for another sampler's state or another entry size."""
        if state.get("kind") != self.kind or int(state["size"]) != self.size:
            raise ValueError(f"replay state holds a {state.get('kind', 'uniform')} sampler (entry size "
                             f"{state.get('size')}), this buffer draws whole entries of {self.size}")
        self.seed, self.calls = int(state["seed"]), int(state["calls"])

