"""Mixed precision: autocast for the forwards, fp32 master weights, and loss scaling for fp16.

``precision="bf16"`` runs the generator, teacher and student forwards under ``torch.autocast`` in
bfloat16; weights, gradients, optimiser states and the memory's stored logits stay fp32, and the
KD losses are computed in fp32 from the low-precision logits. ``"fp16"`` does the same in float16
and scales each loss before its backward (:class:`LossScaler`) so small gradients do not flush to
zero; a step whose gradients overflow is skipped and counted (``scaler_skips``), not an error.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor

from ..choices import PRECISIONS

AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """The autocast context of ``precision`` on ``device`` (disabled for ``"fp32"``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def compute_dtype(like: Tensor) -> torch.dtype:
    """The dtype the forwards run in: autocast's when it is on for ``like``'s device, else ``like``'s."""
    device = like.device.type
    if like.is_floating_point() and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return like.dtype


def scaled(loss: Tensor, scale: Tensor | None) -> Tensor:
    """``loss`` times the loss scale, for its backward (unchanged without one)."""
    return loss if scale is None else loss * scale


def unscaled(grads: list[Tensor], scale: Tensor | None) -> list[Tensor]:
    """Gradients of a scaled loss divided by the scale (unchanged without one)."""
    return grads if scale is None else torch._foreach_div(grads, scale)


class LossScaler:
    """Dynamic loss scale: losses are multiplied by :attr:`scale` before their backward, gradients
    divided by it after. A step with a non-finite loss or gradient is an overflow while the scale is
    above 1 (scaled values, the inner step's included, may overflow): the scale halves and the step is
    skipped; at a scale of 1 nothing was scaled up, so the trainer's non-finite policy decides.
    ``growth_interval`` clean steps in a row double the scale. Disabled: the scale is 1."""

    def __init__(self, enabled: bool, device: torch.device, init_scale: float = 2.0**16,
                 growth_interval: int = 2000) -> None:
        self.enabled, self.growth_interval = enabled, growth_interval
        self.scale = torch.tensor(init_scale if enabled else 1.0, device=device)
        self.clean_steps, self.skips = 0, 0

    def unscale(self, grads: list[Tensor]) -> list[Tensor]:
        """The true gradients of scaled-loss gradients."""
        return unscaled(grads, self.scale if self.enabled else None)

    def overflowed(self, finite: Tensor) -> bool:
        """Whether a step whose values are ``finite`` (0-d bool) overflowed (then the scale is backed
        off: skip the step); one device sync for a finite step."""
        if not self.enabled or bool(finite) or not bool(self.scale > 1):
            return False
        self.update(overflow=True)
        return True

    def update(self, overflow: bool) -> None:
        """After a step: back off on overflow, grow after a run of clean steps."""
        if not self.enabled:
            return
        if overflow:
            self.scale /= 2
            self.clean_steps, self.skips = 0, self.skips + 1
            return
        self.clean_steps += 1
        if self.clean_steps == self.growth_interval:
            self.scale *= 2
            self.clean_steps = 0

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale.clone(), "clean_steps": self.clean_steps, "skips": self.skips}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale.copy_(state["scale"])
        self.clean_steps, self.skips = int(state["clean_steps"]), int(state["skips"])
