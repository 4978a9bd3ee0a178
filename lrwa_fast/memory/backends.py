"""Choice of the replay-memory backend: the one place that maps a name and a device to an
implementation of ``insert`` and ``sample`` (see :mod:`.torch_backend` for the contract)."""

from __future__ import annotations

from types import ModuleType

import torch

from . import torch_backend

BACKENDS: tuple[str, ...] = ("auto", "torch")


def resolve_backend(name: str, device: torch.device) -> tuple[str, ModuleType]:
    """Return ``(resolved_name, implementation)`` for backend ``name`` on ``device``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown replay backend {name!r}; expected one of {BACKENDS}")
    return "torch", torch_backend
