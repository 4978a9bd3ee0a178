"""The LRwA update: acquire on fresh samples, retain on memory samples at the inner-step weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..choices import BN_MODES, META_MODES
from ..config import check_fd_args
from ..optim import UpdateResult, gradients
from ..replay import Memory
from ..runtime.phases import phase
from ..runtime.precision import scaled
from .base import StepContext
from .kd import kd_gradients, refuse_state
from .meta_gradient import forward_for_pass, meta_gradient


class MetaUpdate:
    """The meta-learned student update of :func:`~lrwa_fast.updates.meta_gradient.meta_gradient`, drawing its retention
    batch from ``memory`` (any :class:`~lrwa_fast.replay.Memory`: buffer or generative); plain KD while
    the memory is empty.

    ``mode="none"`` drops the meta term (then ``joint_replay`` should be on); ``joint_replay`` adds
    the loss on fresh and memory samples together at the current weights, as the authors' code does.
    """

    def __init__(self, memory: Memory, *, mode: str = "exact", inner_lr: float = 0.05,
                 retain_weight: float = 1.0, joint_replay: bool = False, bn_mode: str = "acquire",
                 fd_scheme: str = "central", fd_epsilon: float | None = None) -> None:
        if mode not in META_MODES or bn_mode not in BN_MODES:
            raise ValueError(f"mode must be one of {META_MODES} and bn_mode one of {BN_MODES}, "
                             f"got {mode!r} and {bn_mode!r}")
        check_fd_args(fd_scheme, fd_epsilon)
        self.memory, self.mode, self.inner_lr = memory, mode, inner_lr
        self.retain_weight, self.joint_replay, self.bn_mode = retain_weight, joint_replay, bn_mode
        self.fd_scheme, self.fd_epsilon = fd_scheme, fd_epsilon

    def __call__(self, ctx: StepContext, x: Tensor, t: Tensor) -> UpdateResult:
        if len(self.memory) == 0:
            return kd_gradients(ctx, x, t)
        x_mem, t_mem = self.memory.draw(torch.promote_types(x.dtype, torch.float32))
        result = kd_gradients(ctx, x, t) if self.mode == "none" else self._meta(ctx, x, t, x_mem, t_mem)
        if self.joint_replay:
            result = self._with_joint_replay(ctx, result, torch.cat([x, x_mem]), torch.cat([t, t_mem]))
        return result

    def _meta(self, ctx: StepContext, x: Tensor, t: Tensor, x_mem: Tensor, t_mem: Tensor) -> UpdateResult:
        loss = ctx.loss
        res = meta_gradient(ctx.student, x, t, x_mem, t_mem, inner_lr=self.inner_lr, mode=self.mode,
                            loss=loss.kind, temperature=loss.temperature, retain_weight=self.retain_weight,
                            bn_mode=self.bn_mode, backend=loss.backend, alignment=ctx.wants_metrics,
                            fd_scheme=self.fd_scheme, fd_epsilon=self.fd_epsilon, ranks=ctx.ranks,
                            average=False, loss_scale=ctx.loss_scale)  # the updater averages and unscales
        logged = {"loss_student": res.loss_acq, "loss_retain": res.loss_ret}
        if res.grad_cosine is not None:
            logged["grad_cosine"] = res.grad_cosine
        return UpdateResult([res.grads[n] for n in ctx.names], logged)

    def _with_joint_replay(self, ctx: StepContext, result: UpdateResult, x: Tensor, t: Tensor) -> UpdateResult:
        with phase("joint replay forward/backward"):
            params = dict(zip(ctx.names, ctx.params))
            joint = ctx.loss(forward_for_pass(ctx.student, params, x, self.bn_mode), t)
            grads = torch._foreach_add(result.grads, gradients(scaled(joint, ctx.loss_scale), ctx.params))
        return UpdateResult(grads, {**result.logged, "loss_joint": joint})

    def state_dict(self) -> dict[str, Any]:
        """The memory is a part of its own; the update keeps no other state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore; a non-empty state belongs to another update."""
        refuse_state(self, state)
