"""Plain knowledge distillation on the fresh batch (the DFAD student update)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..optim import UpdateResult, gradients
from ..runtime.phases import phase
from ..runtime.precision import scaled
from .base import StepContext


def kd_gradients(ctx: StepContext, x: Tensor, t: Tensor) -> UpdateResult:
    """Gradient of ``ctx.loss(student(x), t)``, logged as ``loss_student``."""
    with phase("student forward"):
        loss = ctx.loss(ctx.student(x), t)
    with phase("student backward"):
        grads = gradients(scaled(loss, ctx.loss_scale), ctx.params)
    return UpdateResult(grads, {"loss_student": loss})


class KDUpdate:
    """DFAD's update: the KD loss on fresh samples only. Stateless."""

    def __call__(self, ctx: StepContext, x: Tensor, t: Tensor) -> UpdateResult:
        return kd_gradients(ctx, x, t)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore; a non-empty state belongs to another update."""
        refuse_state(self, state)


def refuse_state(update: object, state: dict[str, Any]) -> None:
    """``ValueError`` when a stateless update is given a state (it was written by another update)."""
    if state:
        raise ValueError(f"{type(update).__name__} keeps no state, but was given {sorted(state)} "
                         "(a checkpoint of another student update)")
