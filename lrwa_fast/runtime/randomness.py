"""The trainer's random streams: its own ``torch.Generator`` (latent codes) and the process-wide ones it may
touch, captured and restored as plain tensors (``weights_only``-safe checkpoints)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .distributed import Ranks


class RandomStreams:
    """A seeded ``torch.Generator`` on ``device`` for the latent codes, plus the process-wide Python,
    NumPy, torch and CUDA generators in its state (so a resumed run draws what the original would).

    Under data parallelism every rank draws the whole global batch from the same stream and keeps
    its slice, so the ranks' codes differ and their union is the one-process draw.
    """

    def __init__(self, seed: int, device: torch.device, ranks: Ranks | None = None) -> None:
        self.rng = torch.Generator(device=device).manual_seed(seed)
        self.device = device
        self.ranks = ranks if ranks is not None else Ranks()

    def latent(self, batch: int, dim: int) -> Tensor:
        """This rank's slice of ``z ~ N(0, I)`` of shape ``(batch, dim)`` (``batch`` is global)."""
        z = torch.randn(batch, dim, device=self.device, generator=self.rng)
        return self.ranks.local_slice(z)

    def state_dict(self) -> dict[str, Any]:
        return rng_state(self.rng)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(state, self.rng)


def rng_state(rng: torch.Generator) -> dict[str, Any]:
    """Every random generator in use, as tensors and plain containers (weights_only-safe)."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_cached],
        "torch": torch.get_rng_state(),
        "trainer": rng.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # never start CUDA just to save it
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], rng: torch.Generator) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    rng.set_state(state["trainer"])
    if "cuda" in state and torch.cuda.is_available():  # as many GPUs as both machines have
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
