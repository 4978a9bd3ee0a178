"""Gradient alignment in plain PyTorch: the reference the multi-tensor kernel is tested against.

For two lists of tensors with pairwise equal shapes, per pair ``(⟨a_i, b_i⟩, ‖a_i‖², ‖b_i‖²)``
and their sums as fp32, accumulated in fp32 (float64 for float64 inputs); the cosine of the two
concatenated vectors follows from the sums. Values only: no autograd graph is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Alignment = tuple[Tensor, Tensor, Tensor, Tensor]


def check_alignment_args(grads_a: Sequence[Tensor], grads_b: Sequence[Tensor]) -> None:
    """Raise ``ValueError`` unless the lists have equal lengths and pairwise equal shapes."""
    if len(grads_a) != len(grads_b):
        raise ValueError(f"gradient lists differ in length: {len(grads_a)} and {len(grads_b)}")
    for i, (a, b) in enumerate(zip(grads_a, grads_b)):
        if a.shape != b.shape:
            raise ValueError(f"tensor pair {i} differs in shape: {tuple(a.shape)} and {tuple(b.shape)}")


def totals(per_tensor: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(dot, ‖a‖², ‖b‖²)`` as 0-d tensors from the ``(len, 3)`` per-tensor rows."""
    summed = per_tensor.sum(dim=0)
    return summed[0], summed[1], summed[2]


@torch.no_grad()
def grad_alignment_reference(grads_a: Sequence[Tensor], grads_b: Sequence[Tensor]) -> Alignment:
    """``(dot, ‖a‖², ‖b‖², per_tensor)``, accumulated in at least fp32 (see the module docstring)."""
    check_alignment_args(grads_a, grads_b)
    rows = []
    for a, b in zip(grads_a, grads_b):
        dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
        x, y = a.reshape(-1).to(dtype), b.reshape(-1).to(dtype)
        rows.append(torch.stack([x.dot(y), x.dot(x), y.dot(y)]).float())
    device = grads_a[0].device if len(grads_a) else None
    per_tensor = torch.stack(rows) if rows else torch.zeros(0, 3, device=device)
    return (*totals(per_tensor), per_tensor)


@torch.no_grad()
def flat_dots(grads_a: Sequence[Tensor], grads_b: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """``(Σ⟨a_i,b_i⟩, Σ‖a_i‖², Σ‖b_i‖²)`` as fp32 0-d tensors, from the concatenated vectors."""
    if not grads_a:
        zero = torch.zeros(())
        return zero, zero, zero
    dtype = torch.promote_types(torch.promote_types(grads_a[0].dtype, grads_b[0].dtype), torch.float32)
    a = torch.cat([g.reshape(-1).to(dtype) for g in grads_a])
    b = torch.cat([g.reshape(-1).to(dtype) for g in grads_b])
    return a.dot(b).float(), a.dot(a).float(), b.dot(b).float()


def cosine(dot: Tensor, norm_a_sq: Tensor, norm_b_sq: Tensor) -> Tensor:
    """``dot / (‖a‖ ‖b‖)`` clamped to [-1, 1]; 0 when either norm is 0."""
    den = norm_a_sq.sqrt() * norm_b_sq.sqrt()
    value = (dot / den.clamp_min(torch.finfo(den.dtype).tiny)).clamp(-1.0, 1.0)
    return torch.where(den > 0, value, torch.zeros_like(value))
