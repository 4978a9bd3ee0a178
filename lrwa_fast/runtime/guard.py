"""The ``nonfinite`` policy: what happens when a loss or gradient becomes NaN/Inf.

``"raise"`` stops training with :class:`NonFiniteError` naming the iteration and step; ``"skip"``
skips the update (and restores the BatchNorm statistics the step touched), warns once and counts
the skips. On CUDA with ``"raise"`` the check is deferred so a step never waits for the device: the
first bad step is remembered on the device and reported at the next :meth:`NonFiniteGuard.check`
(metric read, checkpoint, end of ``train``, or after 4096 updates); updates between the bad step
and the report have already been applied, so resume from the last checkpoint (checkpoints are only
written after a check passes).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

MAX_PENDING = 4096  # deferred checks pending before one is forced (bounds the label list)


def all_finite(logged: dict[str, Tensor], grad_norm: Tensor) -> Tensor:
    """Whether an update's logged values and gradient norm are all finite (0-d bool, no sync)."""
    values = torch.stack([v.detach().float() for v in logged.values()] + [grad_norm.detach().float()])
    return torch.isfinite(values).all()


class NonFiniteError(RuntimeError):
    """A loss or gradient became NaN/Inf and the policy is ``nonfinite="raise"``."""


class NonFiniteGuard:
    """Applies the ``nonfinite`` policy to each update (see the module docstring)."""

    def __init__(self, policy: str, *, defer: bool) -> None:
        self.policy, self.defer = policy, defer and policy == "raise"
        self.skipped = 0
        self._first_bad: Tensor | None = None
        self._labels: list[str] = []

    def allows(self, finite: Tensor, logged: dict[str, Tensor], grad_norm: Tensor, where: str) -> bool:
        """Whether the update described by ``logged`` and ``grad_norm`` (``finite``: their
        :func:`all_finite`) may be applied."""
        if self.defer:
            self._remember(finite, where)
            return True
        if bool(finite):
            return True
        detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in logged.items())
        message = f"non-finite loss or gradient at {where} ({detail}, gradient norm={float(grad_norm):.4g})"
        if self.policy == "raise":
            raise NonFiniteError(message + "; set nonfinite='skip' to skip such steps instead")
        if self.skipped == 0:
            warnings.warn(message + "; step skipped (nonfinite='skip'); further skips are counted in "
                          "the 'skipped_steps' metric", RuntimeWarning, stacklevel=4)
        self.skipped += 1
        return False

    def state_dict(self) -> dict[str, int]:
        """The count of skipped steps (a pending deferred check is settled by :meth:`check` first)."""
        self.check()
        return {"skipped": self.skipped}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.skipped = int(state["skipped"])

    def _remember(self, finite: Tensor, where: str) -> None:
        if len(self._labels) >= MAX_PENDING:
            self.check()
        code = len(self._labels)
        self._labels.append(where)
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.int64, device=finite.device)
        first_bad = self._first_bad
        self._first_bad = torch.where((first_bad < 0) & ~finite, code, first_bad)

    def check(self) -> None:
        """Raise for a deferred non-finite value seen since the last check (one device sync)."""
        if self._first_bad is None:
            return
        code, labels = int(self._first_bad), self._labels
        self._first_bad, self._labels = None, []
        if code >= 0:
            raise NonFiniteError(f"non-finite loss or gradient first seen at {labels[code]} (detected at "
                                 "the next check; set log_every=1 to stop sooner, or nonfinite='skip')")
