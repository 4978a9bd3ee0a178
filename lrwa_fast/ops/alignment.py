"""Gradient alignment in plain PyTorch: the reference the multi-tensor kernel is tested against.

For two lists of tensors with pairwise equal shapes, per pair ``(⟨a_i, b_i⟩, ‖a_i‖², ‖b_i‖²)``
and their sums as fp32, accumulated in fp32 (float64 for float64 inputs); the cosine of the two
concatenated vectors follows from the sums. Values only: no autograd graph is recorded.

:func:`per_tensor_reference` (the rows) is also the PyTorch path of :mod:`lrwa_fast.ops`. It takes
three dot products per pair on flat views: no concatenation (on the CPU, copying a ResNet-18
gradient into fresh memory costs about five times the dots) and no ``torch.segment_reduce`` (it
sums each segment sequentially in fp32, about 1e-3 relative error on a 2.4M-element tensor).
"""

from __future__ import annotations

import functools
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
    dot, norm_a_sq, norm_b_sq = per_tensor.sum(dim=0).unbind()
    return dot, norm_a_sq, norm_b_sq


def grad_alignment_reference(grads_a: Sequence[Tensor], grads_b: Sequence[Tensor]) -> Alignment:
    """``(dot, ‖a‖², ‖b‖², per_tensor)``, accumulated in at least fp32 (see the module docstring)."""
    check_alignment_args(grads_a, grads_b)
    per_tensor = per_tensor_reference(grads_a, grads_b)
    return (*totals(per_tensor), per_tensor)


@torch.no_grad()
def per_tensor_reference(grads_a: Sequence[Tensor], grads_b: Sequence[Tensor]) -> Tensor:
    """fp32 ``(len, 3)`` rows of ``(⟨a_i, b_i⟩, ‖a_i‖², ‖b_i‖²)``; shapes already checked pairwise."""
    if not grads_a:
        return torch.zeros(0, 3)
    sums = [s for a, b in zip(grads_a, grads_b) for s in _pair_sums(a, b)]
    return torch.stack(sums).view(-1, 3).float()


def _pair_sums(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(⟨a,b⟩, ‖a‖², ‖b‖²)`` as 0-d tensors: three dots on flat views of the pair."""
    dtype = _accumulation_dtype(a.dtype, b.dtype)
    x, y = _flat(a, dtype), _flat(b, dtype)
    return x.dot(y), x.dot(x), y.dot(y)


# Small gradient lists cost per-call overhead more than arithmetic, hence the cache and the
# skipped no-op calls below (together about 15% of the time for a ~15k-parameter CNN on the CPU).
@functools.cache
def _accumulation_dtype(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    """The pair's promoted dtype, at least fp32."""
    return torch.promote_types(torch.promote_types(a, b), torch.float32)


def _flat(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` as a 1-D ``dtype`` tensor; ``t`` itself when it already is one."""
    flat = t if t.dim() == 1 else t.reshape(-1)
    return flat if flat.dtype == dtype else flat.to(dtype)


def cosine(dot: Tensor, norm_a_sq: Tensor, norm_b_sq: Tensor) -> Tensor:
    """``dot / (‖a‖ ‖b‖)`` clamped to [-1, 1]; 0 when either norm is 0."""
    den = norm_a_sq.sqrt() * norm_b_sq.sqrt()
    value = (dot / den.clamp_min(torch.finfo(den.dtype).tiny)).clamp(-1.0, 1.0)
    return torch.where(den > 0, value, torch.zeros_like(value))
