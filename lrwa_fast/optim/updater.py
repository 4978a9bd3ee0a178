"""From gradients to new weights, in one place: non-finite policy (with the BatchNorm rollback of a
skipped step), gradient clipping, optimiser and learning-rate schedule, and the data-parallel average.

Every update of a trainer goes through :meth:`Updater.step`: under data parallelism this is where
the gradients and logged values are averaged over the ranks, in one all-reduce, so every rank sees
the same values, takes the same non-finite decision and the same optimiser step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..config import OptimizerConfig
from ..runtime.distributed import Ranks
from ..runtime.guard import NonFiniteGuard, all_finite
from ..runtime.metrics import MetricAccumulator
from ..runtime.phases import phase
from ..runtime.precision import LossScaler
from .gradients import UpdateResult
from .optimizers import build_optimizer


class Updater:
    """Applies updates to ``params`` with its own optimiser and schedule.

    ``rollback`` lists the modules whose buffers (BatchNorm statistics) an update's computation may
    change; under ``nonfinite="skip"`` they are restored when the update is skipped. Logged values
    and the gradient norm (as ``grad_norm_<name>``) go to ``metrics``; its phases are ``finite check
    (<name>)`` and ``optimizer (<name>)``, so each updater's share shows in a profile. ``ranks``: the data-parallel
    ranks over which gradients and logged values are averaged. ``loss_scaling`` (fp16):
    :attr:`loss_scale` is the factor losses are multiplied by before their backward; the gradients
    are unscaled here, and an overflow skips the step (counted by the scaler) instead of meeting the
    non-finite policy (until the scale has fallen to 1: a step still non-finite then meets the policy).
    """

    def __init__(self, name: str, params: Sequence[Tensor], optimizer: OptimizerConfig, horizon: int, *,
                 guard: NonFiniteGuard, metrics: MetricAccumulator, clip: float = 0.0,
                 rollback: Sequence[nn.Module] = (), ranks: Ranks | None = None,
                 loss_scaling: bool = False) -> None:
        self.name, self.params, self.clip = name, list(params), clip
        self.guard, self.metrics, self.rollback = guard, metrics, list(rollback)
        self.ranks = ranks if ranks is not None else Ranks()
        self.optimizer, self.schedule = build_optimizer(self.params, optimizer, horizon)
        self.scaler = LossScaler(loss_scaling, self.params[0].device)

    @property
    def loss_scale(self) -> Tensor | None:
        """The factor for losses before their backward (``None`` without loss scaling)."""
        return self.scaler.scale if self.scaler.enabled else None

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self, compute: Callable[[], UpdateResult], where: str) -> bool:
        """Run ``compute`` (which returns gradients for ``params``) and apply them; ``False`` if skipped,
        and then the buffers of ``rollback`` are as they were before ``compute``."""
        saved = self._save_buffers()
        applied = self.apply(compute(), where)
        if not applied:
            for buffer, value in saved:
                buffer.copy_(value)
        return applied

    def apply(self, result: UpdateResult, where: str) -> bool:
        """Check finiteness (policy ``nonfinite``), clip, take the optimiser step and log; ``False`` if
        skipped (nothing to roll back here: use :meth:`step` for updates that change buffers)."""
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

    def _save_buffers(self) -> list[tuple[Tensor, Tensor]]:
        """Copies of the rollback buffers, when a skip is possible (``nonfinite="skip"``)."""
        if self.guard.policy != "skip":
            return []
        return [(b, b.clone()) for m in self.rollback for b in m.buffers()]

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])

