"""The trainer's random streams: its own generator (latent codes) and the global ones it may touch."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .checkpoint import rng_state, set_rng_state


class RandomStreams:
    """A seeded ``torch.Generator`` on ``device`` for the latent codes, plus the process-wide Python,
    NumPy, torch and CUDA generators in its state (so a resumed run draws what the original would)."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.device = device

    def latent(self, batch: int, dim: int) -> Tensor:
        """``z ~ N(0, I)`` of shape ``(batch, dim)``."""
        return torch.randn(batch, dim, device=self.device, generator=self.generator)

    def state_dict(self) -> dict[str, Any]:
        return rng_state(self.generator)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(state, self.generator)
