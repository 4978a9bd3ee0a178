"""Public fused ops: each runs the Triton kernel or the PyTorch reference, as
:func:`lrwa_fast.dispatch.resolve` decides. Inputs in float64 (or any dtype other than
fp32/fp16/bf16) always take the reference path.

* :func:`kd_loss`: KD loss between logit matrices, defined by :func:`lrwa_fast.losses.kd_loss_reference`.
* :func:`grad_alignment` / :func:`grad_cosine`: alignment of two gradient lists, defined by
  :func:`lrwa_fast.alignment.grad_alignment_reference`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from . import dispatch
from .alignment import Alignment, check_alignment_args, cosine, flat_dots, grad_alignment_reference, totals
from .losses import LossKind, Reduction, check_kd_args, kd_loss_reference

KERNEL_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)


def uses_kernels(tensors: Sequence[Tensor], backend: str | None = None) -> bool:
    """Whether an op on ``tensors`` would run the Triton kernels (dispatch and dtype rules)."""
    return dispatch.resolve(tensors, backend) == "triton" and all(t.dtype in KERNEL_DTYPES for t in tensors)


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    kind: LossKind = "kl",
    temperature: float = 1.0,
    reduction: Reduction = "mean",
    backend: str | None = None,
) -> Tensor:
    """KD loss ``kind`` between ``(rows, classes)`` logits, reduced over rows (differentiable twice)."""
    check_kd_args(student_logits, teacher_logits, kind, temperature, reduction)
    if uses_kernels((student_logits, teacher_logits), backend):
        return dispatch.kernels().kd_loss.kd_loss_triton(student_logits, teacher_logits, kind, temperature,
                                                          reduction)
    return kd_loss_reference(student_logits, teacher_logits, kind=kind, temperature=temperature,
                             reduction=reduction)


def grad_alignment(grads_a: Sequence[Tensor], grads_b: Sequence[Tensor], *,
                   backend: str | None = None) -> Alignment:
    """``(Σ⟨a_i,b_i⟩, Σ‖a_i‖², Σ‖b_i‖², per_tensor (len, 3))`` in fp32; values only, no graph."""
    a, b = list(grads_a), list(grads_b)
    check_alignment_args(a, b)
    if uses_kernels(a + b, backend):
        per_tensor = dispatch.kernels().grad_alignment.per_tensor_alignment(a, b)
        return (*totals(per_tensor), per_tensor)
    return grad_alignment_reference(a, b)


def grad_cosine(grads_a: Sequence[Tensor], grads_b: Sequence[Tensor], backend: str | None = None) -> Tensor:
    """Cosine between the two lists as concatenated vectors (0-d fp32; 0 when a norm is 0).

    Off the kernel path the three sums come from two concatenations and three dot products,
    which costs a handful of launches instead of three per tensor.
    """
    a, b = list(grads_a), list(grads_b)
    if uses_kernels(a + b, backend):
        dot, norm_a_sq, norm_b_sq, _ = grad_alignment(a, b, backend=backend)
        return cosine(dot, norm_a_sq, norm_b_sq)
    check_alignment_args(a, b)
    return cosine(*flat_dots(a, b))
