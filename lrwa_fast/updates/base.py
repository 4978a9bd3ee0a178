"""The protocol a student update follows, and what it is given (:class:`StepContext`, :class:`KDLoss`);
it returns an :class:`~lrwa_fast.optim.UpdateResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn
from torch.distributed import ProcessGroup

from .. import ops
from ..choices import KERNEL_BACKENDS
from ..config import default_of
from ..ops.losses import loss_problems
from ..optim import UpdateResult
from ..rules import check, one_of
from ..runtime.distributed import Ranks


@dataclass(frozen=True, kw_only=True)
class KDLoss:
    """The configured distillation loss D(student logits, teacher logits) (fused kernel where available)."""

    kind: str = default_of("loss")  # "l1" | "kl" | "js" (lrwa_fast.ops.losses)
    temperature: float = default_of("temperature")  # kl / js
    backend: str = default_of("backend")  # "auto": $LRWA_FAST_BACKEND, else by device (lrwa_fast.ops.dispatch)

    def __post_init__(self) -> None:
        if self.backend is None:  # None meant "auto" before 0.4; it still does
            object.__setattr__(self, "backend", "auto")
        check(self, [*loss_problems(self), *one_of(self, backend=KERNEL_BACKENDS)])

    def __call__(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return ops.kd_loss(student_logits, teacher_logits, kind=self.kind, temperature=self.temperature,
                           backend=self.backend)


@dataclass(frozen=True)
class StepContext:
    """What a student update may use: the student, its trainable parameters (in order) and the loss.

    ``wants_metrics`` says whether this iteration's metrics will be read, so quantities that are only
    logged (e.g. a gradient cosine) can be skipped otherwise. ``ranks`` are those of a data-parallel
    run (this process alone by default; :attr:`group` is their process group): the batches are this
    rank's shards, and the updater averages the returned gradients and logged values over the ranks.
    ``loss_scale`` (fp16 runs): multiply each loss by it before its backward (:func:`scaled`); the
    updater unscales the gradients.
    """

    student: nn.Module
    params: list[Tensor]
    names: list[str]
    loss: KDLoss
    iteration: int
    wants_metrics: bool
    ranks: Ranks = field(default_factory=Ranks)
    loss_scale: Tensor | None = None

    @property
    def group(self) -> ProcessGroup | None:
        """The ranks' process group, looked up now (``None`` alone)."""
        return self.ranks.group


@runtime_checkable
class StudentUpdate(Protocol):
    """A student update: ``update(ctx, x, t)`` with fresh samples ``x`` and the teacher's logits ``t``.

    It must not touch ``.grad`` or step an optimiser (the updater does); its own state, if any,
    goes into checkpoints through ``state_dict``/``load_state_dict``.
    """

    def __call__(self, ctx: StepContext, x: Tensor, t: Tensor) -> UpdateResult: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
