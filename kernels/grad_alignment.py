"""Multi-tensor gradient alignment: ⟨a_i, b_i⟩, ‖a_i‖², ‖b_i‖² for two lists of tensors.

Pairs are grouped by dtype. For each group a table holds one row per ``CHUNK`` elements of each
tensor: the element offsets of the chunk from the group's lowest-addressed ``a`` and ``b`` tensors
(passed as base pointers) and the chunk length. One launch per group writes fp32 partials
(dot, ‖a‖², ‖b‖²) per chunk; a second, single launch sums each tensor's chunks in a fixed order.
No atomics, so results are deterministic. Tables are cached on the tensors' addresses and sizes,
so a training loop whose gradients reuse the same memory builds them once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from . import check_launchable, interpreter_enabled, on_device

INTERPRETED = interpreter_enabled()  # Triton reads the same flag as it decorates the kernels below

CHUNK = 16384
BLOCK = 1024
SEGMENT_BLOCK = 64
_CACHE_SIZE = 32


@triton.jit
def _chunk_partials_kernel(a_base, b_base, table_ptr, partial_ptr, BLOCK: tl.constexpr):
    """fp32 (dot, ‖a‖², ‖b‖²) of one table entry: ``n`` elements at element offsets of two bases."""
    entry = tl.program_id(0).to(tl.int64)
    off_a = tl.load(table_ptr + 3 * entry)
    off_b = tl.load(table_ptr + 3 * entry + 1)
    n = tl.load(table_ptr + 3 * entry + 2)
    dot = tl.zeros([BLOCK], tl.float32)
    sq_a = tl.zeros([BLOCK], tl.float32)
    sq_b = tl.zeros([BLOCK], tl.float32)
    for start in tl.range(0, n, BLOCK):
        idx = start + tl.arange(0, BLOCK)
        mask = idx < n
        a = tl.load(a_base + off_a + idx, mask=mask, other=0.0).to(tl.float32)
        b = tl.load(b_base + off_b + idx, mask=mask, other=0.0).to(tl.float32)
        dot += a * b
        sq_a += a * a
        sq_b += b * b
    tl.store(partial_ptr + 3 * entry, tl.sum(dot, axis=0))
    tl.store(partial_ptr + 3 * entry + 1, tl.sum(sq_a, axis=0))
    tl.store(partial_ptr + 3 * entry + 2, tl.sum(sq_b, axis=0))


@triton.jit
def _segment_sum_kernel(partial_ptr, segment_ptr, out_ptr, BLOCK: tl.constexpr):
    """Sum the partial triples of one tensor's chunks, in entry order."""
    i = tl.program_id(0).to(tl.int64)
    first = tl.load(segment_ptr + 2 * i)
    count = tl.load(segment_ptr + 2 * i + 1)
    cols = tl.arange(0, 4)
    acc = tl.zeros([BLOCK, 4], tl.float32)
    for start in tl.range(0, count, BLOCK):
        k = start + tl.arange(0, BLOCK)
        mask = (k < count)[:, None] & (cols < 3)[None, :]
        acc += tl.load(partial_ptr + (first + k)[:, None] * 3 + cols[None, :], mask=mask, other=0.0)
    tl.store(out_ptr + 3 * i + cols, tl.sum(acc, axis=0), mask=cols < 3)


@dataclass(frozen=True)
class _Group:
    """One launch: the tensors lending their base pointers and the table rows it owns."""

    base_a: int
    base_b: int
    first: int
    count: int


@dataclass(frozen=True)
class _Plan:
    """Device tables for a list of tensor pairs: chunk entries, per-tensor segments, groups."""

    table: Tensor
    segments: Tensor
    groups: tuple[_Group, ...]


_plans: OrderedDict[tuple, _Plan] = OrderedDict()


def _by_dtype(a: list[Tensor], b: list[Tensor]) -> dict[tuple[torch.dtype, torch.dtype], list[int]]:
    """Indices of the pairs, grouped by their ``(a.dtype, b.dtype)`` in first-seen order."""
    groups: dict[tuple[torch.dtype, torch.dtype], list[int]] = {}
    for i, (x, y) in enumerate(zip(a, b)):
        groups.setdefault((x.dtype, y.dtype), []).append(i)
    return groups


def _offset(t: Tensor, base: Tensor) -> int:
    """Element offset of ``t`` from ``base`` (same dtype)."""
    delta = t.data_ptr() - base.data_ptr()
    if delta % t.element_size():
        raise RuntimeError("tensor addresses are not aligned to their element size")
    return delta // t.element_size()


def _build_plan(a: list[Tensor], b: list[Tensor]) -> _Plan:
    """Chunk table, segments and launch groups for the pairs (all tensors contiguous)."""
    rows: list[tuple[int, int, int]] = []
    segments = [(0, 0)] * len(a)
    groups = []
    for members in _by_dtype(a, b).values():
        filled = [i for i in members if a[i].numel() > 0]
        if not filled:
            continue
        base_a = min(filled, key=lambda i: a[i].data_ptr())
        base_b = min(filled, key=lambda i: b[i].data_ptr())
        first = len(rows)
        for i in filled:
            off_a, off_b, numel = _offset(a[i], a[base_a]), _offset(b[i], b[base_b]), a[i].numel()
            segments[i] = (len(rows), triton.cdiv(numel, CHUNK))
            rows.extend((off_a + s, off_b + s, min(CHUNK, numel - s)) for s in range(0, numel, CHUNK))
        groups.append(_Group(base_a, base_b, first, len(rows) - first))
    device = a[0].device
    table = _to_device(torch.tensor(rows, dtype=torch.int64).reshape(-1, 3), device)
    return _Plan(table, _to_device(torch.tensor(segments, dtype=torch.int64), device), tuple(groups))


def _to_device(table: Tensor, device: torch.device) -> Tensor:
    """Copy a host table to ``device`` without blocking the host (pinned staging on CUDA)."""
    if device.type != "cuda":
        return table.to(device)
    return table.pin_memory().to(device, non_blocking=True)


def _plan(a: list[Tensor], b: list[Tensor]) -> _Plan:
    """The cached plan for these addresses, sizes and dtypes (built on a miss)."""
    key = (a[0].device, *((x.data_ptr(), y.data_ptr(), x.numel(), x.dtype, y.dtype)
                                 for x, y in zip(a, b)))
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = _build_plan(a, b)
        if len(_plans) > _CACHE_SIZE:
            _plans.popitem(last=False)
    else:
        _plans.move_to_end(key)
    return plan


def per_tensor_alignment(grads_a: list[Tensor], grads_b: list[Tensor]) -> Tensor:
    """fp32 ``(len, 3)`` rows of ``(⟨a_i, b_i⟩, ‖a_i‖², ‖b_i‖²)``; shapes already checked pairwise."""
    a = [x.contiguous() for x in grads_a]
    b = [y.contiguous() for y in grads_b]
    check_launchable(INTERPRETED, *a, *b)
    if len({t.device for t in a + b}) > 1:
        raise ValueError("grad_alignment needs every tensor on one device")
    out = torch.zeros(len(a), 3, dtype=torch.float32, device=a[0].device if a else None)
    if not a:
        return out
    with on_device(out):
        _launch_alignment(a, b, out)
    return out


def _launch_alignment(a: list[Tensor], b: list[Tensor], out: Tensor) -> None:
    """Per-chunk partials for every dtype group, then their per-tensor sums into ``out``."""
    plan = _plan(a, b)
    partials = torch.empty(plan.table.shape[0], 3, dtype=torch.float32, device=out.device)
    for g in plan.groups:
        end = g.first + g.count
        _chunk_partials_kernel[(g.count,)](a[g.base_a], b[g.base_b], plan.table[g.first:end],
                                           partials[g.first:end], BLOCK=BLOCK)
    if plan.groups:
        _segment_sum_kernel[(len(a),)](partials, plan.segments, out, BLOCK=SEGMENT_BLOCK)
