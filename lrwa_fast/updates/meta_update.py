"""The LRwA update: acquire on fresh samples, retain on memory samples at the inner-step weights."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from ..optim import UpdateResult
from ..replay import Memory
from .base import StepContext
from .kd import kd_gradients, refuse_state
from .meta_gradient import MetaSettings, joint_gradients, keeping_buffers, meta_gradient


class MetaUpdate:
    """The meta-learned student update of :func:`~lrwa_fast.updates.meta_gradient.meta_gradient` with
    ``settings``, drawing its retention batch from ``memory`` (any :class:`~lrwa_fast.replay.Memory`: buffer
    or generative); plain KD while the memory is empty.

    ``settings.mode="none"`` drops the meta term (then ``settings.joint_replay`` must be on); the joint
    replay term adds the loss on fresh and memory samples together at the current weights, as the
    authors' code does.
    """

    def __init__(self, memory: Memory, settings: MetaSettings | None = None) -> None:
        self.memory = memory
        self.settings = settings if settings is not None else MetaSettings()
        self._unlogged = dataclasses.replace(self.settings, alignment=False)  # for steps whose metrics are not read

    def __call__(self, ctx: StepContext, x: Tensor, t: Tensor) -> UpdateResult:
        if len(self.memory) == 0:
            return kd_gradients(ctx, x, t)
        x_mem, t_mem = self.memory.draw(torch.promote_types(x.dtype, torch.float32))
        if self.settings.mode == "none":
            return self._acquisition_only(ctx, (x, t), (x_mem, t_mem))
        settings = self.settings if ctx.wants_metrics else self._unlogged
        res = meta_gradient(ctx.student, (x, t), (x_mem, t_mem), loss=ctx.loss, settings=settings, ranks=ctx.ranks,
                            average=False, loss_scale=ctx.loss_scale)  # the updater averages and unscales
        logged = {"loss_student": res.loss_acq, "loss_retain": res.loss_ret, "grad_cosine": res.grad_cosine,
                  "loss_joint": res.loss_joint}
        return UpdateResult([res.grads[n] for n in ctx.names], {k: v for k, v in logged.items() if v is not None})

    def _acquisition_only(self, ctx: StepContext, fresh: tuple[Tensor, Tensor],
                          memory: tuple[Tensor, Tensor]) -> UpdateResult:
        """No meta term: the KD gradient on the fresh batch weighted by ``acquire_weight`` (skipped at 0), plus
        the joint replay term when it is on."""
        settings, grads, logged = self.settings, None, {}
        if settings.acquire_weight or not settings.joint_replay:
            with keeping_buffers(ctx.student, settings.bn_mode == "joint"):
                kd = kd_gradients(ctx, *fresh)
            grads = kd.grads if settings.acquire_weight == 1 else torch._foreach_mul(kd.grads, settings.acquire_weight)
            logged = kd.logged
        if settings.joint_replay:
            joint, g_joint = joint_gradients(ctx.student, dict(zip(ctx.names, ctx.params)), fresh, memory, ctx.loss,
                                             settings.bn_mode, ctx.loss_scale)
            grads = g_joint if grads is None else torch._foreach_add(grads, g_joint)
            logged = {**logged, "loss_joint": joint}
        return UpdateResult(grads, logged)

    def state_dict(self) -> dict[str, Any]:
        """The memory is a part of its own; the update keeps no other state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore; a non-empty state belongs to another update."""
        refuse_state(self, state)
