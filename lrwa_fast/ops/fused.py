"""The public fused ops, each the one entry of its op: it checks the arguments once, then runs the
Triton kernel or the PyTorch reference as :func:`lrwa_fast.ops.dispatch.resolve` decides (backend,
device and dtype rules are all there).

* :func:`kd_loss`: KD loss between logit matrices, defined by :func:`lrwa_fast.ops.losses.kd_loss_reference`.
* :func:`grad_alignment` / :func:`grad_cosine`: alignment of two gradient lists, defined by
  :func:`lrwa_fast.ops.alignment.grad_alignment_reference` (whose rows are the PyTorch path's).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from . import dispatch, kernel_checks
from .alignment import Alignment, check_alignment_args, cosine, per_tensor_reference, totals
from .losses import LossKind, Reduction, check_kd_args, kd_row_losses, reduce_rows

HALF_DTYPES = (torch.float16, torch.bfloat16)


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    kind: LossKind = "kl",
    temperature: float = 1.0,
    reduction: Reduction = "mean",
    backend: str = "auto",
) -> Tensor:
    """KD loss ``kind`` between ``(rows, classes)`` logits, reduced over rows (differentiable twice).

    Half-precision logits (mixed precision) are read as they are by the kernels, which accumulate in
    fp32, and upcast to fp32 on the reference path: the loss is fp32 either way.
    """
    check_kd_args(student_logits, teacher_logits, kind, temperature, reduction)
    if dispatch.resolve((student_logits, teacher_logits), backend, "kd_loss", kernel_checks.kd_loss_check) == "triton":
        return dispatch.kernels().kd_loss.kd_loss_triton(student_logits, teacher_logits, kind, temperature,
                                                          reduction)
    student_logits, teacher_logits = (t.float() if t.dtype in HALF_DTYPES else t
                                      for t in (student_logits, teacher_logits))
    return reduce_rows(kd_row_losses(student_logits, teacher_logits, kind, temperature), reduction)


def grad_alignment(grads_a: Sequence[Tensor], grads_b: Sequence[Tensor], *,
                   backend: str = "auto") -> Alignment:
    """``(Σ⟨a_i,b_i⟩, Σ‖a_i‖², Σ‖b_i‖², per_tensor (len, 3))`` in fp32; values only, no graph."""
    a, b = list(grads_a), list(grads_b)
    check_alignment_args(a, b)
    if dispatch.resolve(a + b, backend, "grad_alignment", kernel_checks.grad_alignment_check) == "triton":
        per_tensor = dispatch.kernels().grad_alignment.per_tensor_alignment(a, b)
    else:
        per_tensor = per_tensor_reference(a, b)
    return (*totals(per_tensor), per_tensor)


def grad_cosine(grads_a: Sequence[Tensor], grads_b: Sequence[Tensor], backend: str = "auto") -> Tensor:
    """Cosine between the two lists as concatenated vectors (0-d fp32; 0 when a norm is 0).

    The sums are :func:`grad_alignment`'s, so off the kernel path they are the tested reference's.
    """
    dot, norm_a_sq, norm_b_sq, _ = grad_alignment(grads_a, grads_b, backend=backend)
    return cosine(dot, norm_a_sq, norm_b_sq)
