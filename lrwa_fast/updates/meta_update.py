"""The LRwA update: acquire on fresh samples, retain on memory samples at the inner-step weights."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from ..optim import UpdateResult
from ..replay import Memory
from ..runtime.deprecation import warn_renamed
from .base import StepContext
from .kd import kd_gradients, refuse_state
from .meta_gradient import MetaSettings, meta_gradient


class MetaUpdate:
    """The meta-learned student update of :func:`~lrwa_fast.updates.meta_gradient.meta_gradient` with
    ``settings``, drawing its retention batch from ``memory`` (any :class:`~lrwa_fast.replay.Memory`: buffer
    or generative); plain KD while the memory is empty.

    ``settings.mode="none"`` drops the meta term (then ``settings.joint_replay`` must be on); the joint
    replay term adds the loss on fresh and memory samples together at the current weights, as the
    authors' code does. Both are :func:`~lrwa_fast.updates.meta_gradient.meta_gradient`'s.
    """

    def __init__(self, memory: Memory, settings: MetaSettings | None = None) -> None:
        self.memory = memory
        self.settings = settings if settings is not None else MetaSettings()
        self._unlogged = dataclasses.replace(self.settings, alignment=False)  # for steps whose metrics are not read

    def __call__(self, ctx: StepContext, x: Tensor, t: Tensor) -> UpdateResult:
        if len(self.memory) == 0:
            return kd_gradients(ctx, x, t)
        retention = self._retention_batch(torch.promote_types(x.dtype, torch.float32))
        settings = self.settings if ctx.wants_metrics else self._unlogged
        res = meta_gradient(ctx.student, (x, t), retention, loss=ctx.loss, settings=settings, ranks=ctx.ranks,
                            average=False, loss_scale=ctx.loss_scale)  # the updater averages and unscales
        logged = {"loss_student": res.loss_acq, "loss_retain": res.loss_ret, "grad_cosine": res.grad_cosine,
                  "loss_joint": res.loss_joint}
        return UpdateResult([res.grads[n] for n in ctx.names], {k: v for k, v in logged.items() if v is not None})

    def _retention_batch(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The memory's retention batch (a memory of 0.4 that only has ``draw`` still works, with a warning)."""
        if hasattr(self.memory, "retention_batch") or not hasattr(self.memory, "draw"):
            return self.memory.retention_batch(dtype)
        warn_renamed(f"{type(self.memory).__name__}.draw", "Memory.retention_batch", "0.5", stacklevel=4)
        return self.memory.draw(dtype)

    def state_dict(self) -> dict[str, Any]:
        """The memory is a part of its own; the update keeps no other state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore; a non-empty state belongs to another update."""
        refuse_state(self, state)
