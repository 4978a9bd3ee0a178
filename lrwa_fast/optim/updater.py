"""From gradients to new weights, in one place: non-finite policy (with the BatchNorm rollback of a
skipped step), gradient clipping, optimiser and learning-rate schedule, and the data-parallel average.

Every update of a trainer goes through :meth:`Updater.apply` (after a :meth:`Updater.snapshot` of what
the update's computation may change): under data parallelism this is where the gradients and logged
values are averaged over the ranks, in one all-reduce, so every rank sees the same values, takes the
same non-finite decision and the same optimiser step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..config import OptimizerConfig
from ..rules import check, nested, non_negative
from ..runtime.distributed import Ranks
from ..runtime.guard import all_finite
from ..runtime.phases import phase
from ..runtime.precision import LossScaler
from ..runtime.services import Runtime
from .gradients import UpdateResult
from .optimizers import build_optimizer, optimizer_problems


@dataclass(frozen=True, kw_only=True)
class UpdaterSettings:
    """An updater's optimiser and schedule, the run length the schedule spans, gradient clipping, loss scaling."""

    optimizer: OptimizerConfig
    horizon: int  # iterations of the run: the cosine schedule reaches 0 there
    clip: float = 0.0  # max global gradient norm; 0 = off (the student's is the config's grad_clip)
    loss_scaling: bool = False  # fp16: scale losses before their backward (:class:`LossScaler`)
    averaged: bool = True  # average over the runtime's ranks (False: each rank updates its own copy, e.g. a VAE)

    def __post_init__(self) -> None:
        check(self, [*nested("optimizer", optimizer_problems(self.optimizer)), *non_negative(self, "clip")])


BufferSnapshot = Sequence[tuple[Tensor, Tensor]]


class Updater:
    """Applies updates to ``params`` with its own optimiser and schedule (:class:`UpdaterSettings`).

    The runtime's guard decides on non-finite updates and its metrics receive the logged values and the
    gradient norm (as ``grad_norm_<name>``); its phases are ``finite check (<name>)`` and ``optimizer
    (<name>)``, so each updater's share shows in a profile. Gradients and logged values are averaged over the
    runtime's ranks (unless ``settings.averaged`` is off). ``rollback`` lists the modules whose buffers
    (BatchNorm statistics) an update's computation may change: take a :meth:`snapshot` before it, and
    :meth:`apply` restores them when it skips the update (``nonfinite="skip"``). With loss scaling (fp16),
    :attr:`loss_scale` is the factor losses are multiplied by before their backward; the gradients are
    unscaled here, and an overflow skips the step (counted by the scaler) instead of meeting the non-finite
    policy (until the scale has fallen to 1: a step still non-finite then meets the policy).
    """

    def __init__(self, name: str, params: Sequence[Tensor], settings: UpdaterSettings, runtime: Runtime, *,
                 rollback: Sequence[nn.Module] = ()) -> None:
        self.name, self.params, self.clip = name, list(params), settings.clip
        self.guard, self.metrics = runtime.guard, runtime.metrics
        self.ranks = runtime.ranks if settings.averaged else Ranks()  # Ranks(): this process alone
        self.rollback = list(rollback)
        self.optimizer, self.schedule = build_optimizer(self.params, settings.optimizer, settings.horizon)
        self.scaler = LossScaler(settings.loss_scaling, self.params[0].device)

    @property
    def loss_scale(self) -> Tensor | None:
        """The factor for losses before their backward (``None`` without loss scaling)."""
        return self.scaler.scale if self.scaler.enabled else None

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def snapshot(self) -> BufferSnapshot:
        """Copies of the rollback buffers, taken before an update's computation when a skip is possible
        (``nonfinite="skip"``; otherwise nothing is copied)."""
        if self.guard.policy != "skip":
            return []
        return [(b, b.clone()) for m in self.rollback for b in m.buffers()]

    def apply(self, result: UpdateResult, where: str, snapshot: BufferSnapshot = ()) -> bool:
        """Check finiteness (policy ``nonfinite``), clip, take the optimiser step and log; ``False`` if
        skipped, and then the buffers of ``snapshot`` are restored."""
        applied = self._apply(result, where)
        if not applied:
            for buffer, value in snapshot:
                buffer.copy_(value)
        return applied

    def _apply(self, result: UpdateResult, where: str) -> bool:
        result = self._averaged(result)
        grads = self.scaler.unscale(result.grads)
        with phase(f"finite check ({self.name})"):
            grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            finite = all_finite(result.logged, grad_norm)
            if self.scaler.overflowed(finite):
                return False
            if not self.guard.allows(finite, result.logged, grad_norm, where):
                return False
            self.scaler.update(overflow=False)
        with phase(f"optimizer ({self.name})"):
            if self.clip > 0:  # as clip_grad_norm_, reusing the norm computed above
                torch._foreach_mul_(grads, (self.clip / (grad_norm + 1e-6)).clamp(max=1.0))
            for p, g in zip(self.params, grads):
                p.grad = g
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.metrics.add({**result.logged, f"grad_norm_{self.name}": grad_norm})
        return True

    def _averaged(self, result: UpdateResult) -> UpdateResult:
        """The mean over the ranks of the gradients and logged values (one all-reduce)."""
        if not self.ranks.enabled:
            return result
        with phase("all-reduce"):
            grads, logged = self.ranks.average_both(result.grads, list(result.logged.values()))
        return UpdateResult(grads, dict(zip(result.logged, logged)))

    def advance_schedule(self) -> None:
        """One iteration of the learning-rate schedule."""
        self.schedule.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])

