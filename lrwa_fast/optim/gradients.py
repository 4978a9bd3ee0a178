"""Gradients of a loss, and what an update hands to its updater: gradients plus values to log."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class UpdateResult:
    """Gradients for the updater's parameters (same order) and 0-d tensors to log (no host sync)."""

    grads: list[Tensor]
    logged: dict[str, Tensor]


def gradients(loss: Tensor, params: list[Tensor], *, create_graph: bool = False) -> list[Tensor]:
    """``∂loss/∂params`` with zeros for parameters the loss does not depend on."""
    grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    return zeros_for_unused(grads, params)


def zeros_for_unused(grads: tuple[Tensor | None, ...], like: list[Tensor]) -> list[Tensor]:
    """``grads`` with a zero tensor shaped like ``like[i]`` wherever ``grads[i]`` is ``None``."""
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, like)]
