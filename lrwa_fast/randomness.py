"""The trainer's random streams: its own generator (latent codes) and the global ones it may touch."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .checkpoint import rng_state, set_rng_state
from .distributed import DataParallel


class RandomStreams:
    """A seeded ``torch.Generator`` on ``device`` for the latent codes, plus the process-wide Python,
    NumPy, torch and CUDA generators in its state (so a resumed run draws what the original would).

    Under data parallelism every rank draws the whole global batch from the same stream and keeps
    its slice, so the ranks' codes differ and their union is the one-process draw.
    """

    def __init__(self, seed: int, device: torch.device, ranks: DataParallel | None = None) -> None:
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.device = device
        self.ranks = ranks if ranks is not None else DataParallel()

    def latent(self, batch: int, dim: int) -> Tensor:
        """This rank's slice of ``z ~ N(0, I)`` of shape ``(batch, dim)`` (``batch`` is global)."""
        z = torch.randn(batch, dim, device=self.device, generator=self.generator)
        return self.ranks.local_slice(z)

    def state_dict(self) -> dict[str, Any]:
        return rng_state(self.generator)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(state, self.generator)
