"""Reference losses (plain PyTorch): the specification the fused kernels are tested against.

Student losses compare logits row by row; ``reduction`` always reduces over rows:

* ``l1``: mean over classes of ``|s - t|`` (so ``reduction="mean"`` equals ``F.l1_loss``);
  the temperature does not apply to it.
* ``kl``: ``T² · KL(softmax(t/T) ‖ softmax(s/T))`` (Hinton scaling, so gradients keep their size
  across temperatures).
* ``js``: Jensen-Shannon divergence ``½KL(p_t‖m) + ½KL(p_s‖m)``, ``m = (p_t + p_s)/2``, of the
  softmaxes at temperature ``T``; not scaled, so it lies in ``[0, ln 2]``.

Generator terms (each multiplied by its weight in :class:`~lrwa_fast.config.GeneratorLossWeights`):
adversarial discrepancy, one-hot cross-entropy, class balance and activation; the teacher hooks that
collect the activation's features and the BatchNorm-statistics prior live with the generator's
objective (:mod:`lrwa_fast.training.generator_objective`).
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..choices import LOSS_KINDS
from ..rules import Problem, SettingsError, one_of, positive_finite

LossKind = Literal["l1", "kl", "js"]
Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


@functools.lru_cache(maxsize=64, typed=True)
def _argument_problems(kind: str, temperature: float, reduction: str) -> tuple[Problem, ...]:
    """The rules on a call's scalar arguments, judged once per distinct set (every loss of every step calls)."""
    args = SimpleNamespace(kind=kind, temperature=temperature, reduction=reduction)
    return (*loss_problems(args), *one_of(args, reduction=REDUCTIONS))


def loss_problems(settings: object) -> list[Problem]:
    """The rules of a KD loss's ``kind`` and ``temperature`` (fields of ``settings``): the op's arguments,
    the student's loss and the generator's discrepancy all follow these."""
    return [*one_of(settings, kind=LOSS_KINDS), *positive_finite(settings, "temperature")]


def check_kd_args(student: Tensor, teacher: Tensor, kind: str, temperature: float, reduction: str) -> None:
    """Raise ``ValueError`` unless the arguments of a KD loss are well formed."""
    problems = _argument_problems(kind, temperature, reduction)
    if problems:
        raise SettingsError("kd_loss arguments", problems)
    if student.dim() != 2 or student.shape != teacher.shape:
        raise ValueError(
            "student and teacher logits must be 2-D tensors of equal shape (rows, classes), "
            f"got {tuple(student.shape)} and {tuple(teacher.shape)}"
        )
    if student.shape[0] == 0 or student.shape[1] == 0:
        raise ValueError(f"logits must have at least one row and one class, got {tuple(student.shape)}")


def kd_row_losses(student: Tensor, teacher: Tensor, kind: str, temperature: float) -> Tensor:
    """Per-row loss of ``kind`` (shape ``(rows,)``), computed in the inputs' dtype."""
    if kind == "l1":
        return (student - teacher).abs().mean(dim=1)
    log_ps = F.log_softmax(student / temperature, dim=1)
    log_pt = F.log_softmax(teacher / temperature, dim=1)
    if kind == "kl":
        return temperature**2 * (log_pt.exp() * (log_pt - log_ps)).sum(dim=1)
    log_m = torch.logaddexp(log_pt, log_ps) - math.log(2.0)
    return 0.5 * (log_pt.exp() * (log_pt - log_m) + log_ps.exp() * (log_ps - log_m)).sum(dim=1)


def kd_loss_reference(
    student: Tensor,
    teacher: Tensor,
    *,
    kind: LossKind = "kl",
    temperature: float = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Knowledge-distillation loss between logit matrices (see the module docstring)."""
    check_kd_args(student, teacher, kind, temperature, reduction)
    return reduce_rows(kd_row_losses(student, teacher, kind, temperature), reduction)


def reduce_rows(rows: Tensor, reduction: str) -> Tensor:
    """Per-row losses reduced over rows as ``reduction`` says (``"none"``: unchanged)."""
    if reduction == "none":
        return rows
    return rows.sum() if reduction == "sum" else rows.mean()


def adversarial_loss(student: Tensor, teacher: Tensor, *, kind: LossKind = "l1",
                     temperature: float = 1.0) -> Tensor:
    """Generator's adversarial term: minimising it maximises the teacher-student discrepancy.

    ``-L1`` and ``-KL`` as in DFAD, ``1 - JS`` as in the LRwA authors' code.
    """
    discrepancy = kd_loss_reference(student, teacher, kind=kind, temperature=temperature)
    return adversarial_from_discrepancy(discrepancy, kind)


def adversarial_from_discrepancy(discrepancy: Tensor, kind: str) -> Tensor:
    """``1 - JS`` for ``js``, ``-D`` otherwise (lets callers use a fused discrepancy)."""
    return 1.0 - discrepancy if kind == "js" else -discrepancy


def one_hot_loss(teacher_logits: Tensor, targets: Tensor | None = None) -> Tensor:
    """Cross-entropy of the teacher against ``targets``, by default its own argmax: pushes samples to confident
    classes (the classes a synthesis round drew, for DeepInversion, CMI and Fast)."""
    return F.cross_entropy(teacher_logits, teacher_logits.argmax(dim=1) if targets is None else targets)


def class_balance_loss(teacher_logits: Tensor) -> Tensor:
    """``log C - H(p̄)``, p̄ the batch-mean teacher softmax: zero when classes are balanced."""
    mean_prob = F.softmax(teacher_logits, dim=1).mean(dim=0)
    entropy = -(mean_prob * torch.log(mean_prob.clamp_min(1e-30))).sum()
    return math.log(teacher_logits.shape[1]) - entropy


def activation_loss(features: Tensor) -> Tensor:
    """``-mean |features|`` of the teacher's penultimate features (DAFL's activation prior)."""
    return -features.abs().mean()
