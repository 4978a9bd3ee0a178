"""Fused knowledge-distillation loss: Triton kernel, autograd Function and functional entry point.

Each program owns ``BLOCK_R`` rows (one for wide rows, several for narrow ones) and sweeps their
columns in blocks of ``BLOCK_C``, accumulating in fp32:

1. (``kl``, ``js``) an online softmax gives the running max and normaliser of ``s/T`` and ``t/T``;
2. the row loss from the exact log-probabilities; ``kl`` also writes ``∂L/∂s = T (p_s − p_t)``;
3. only when needed, the gradients that depend on the row loss: ``kl`` teacher
   ``T p_t (log p_t − log p_s − KL)``, ``js`` ``p (½(log p − log m) − ½KL(p‖m)) / T`` for each side.

``l1`` needs one sweep: ``mean |s − t|`` and ``±sign(s − t)/C``. Gradients are multiplied by the
reduction's scale (``1/rows`` for ``mean``) in the kernel, so the backward pass only scales them by
``grad_output``. Under ``create_graph`` the backward recomputes them differentiably with the
reference (:func:`lrwa_fast.ops.losses.kd_loss_reference`), so double backward is exact.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from lrwa_fast.ops.losses import kd_row_losses, reduce_rows

from . import check_launchable, interpreter_enabled, on_device

INTERPRETED = interpreter_enabled()  # Triton reads the same flag as it decorates the kernels below

KINDS: dict[str, int] = {"l1": 0, "kl": 1, "js": 2}
MAX_BLOCK_C = 4096
TILE = 2048


@triton.jit
def _online_stats(ptr, rows, n_cols, temperature, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Running max and normaliser of ``x/T`` over each row (one read of the row)."""
    m = tl.full([BLOCK_R], float("-inf"), tl.float32)
    d = tl.zeros([BLOCK_R], tl.float32)
    for c0 in range(0, n_cols, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        mask = (cols < n_cols)[None, :]
        x = tl.load(ptr + rows[:, None] * n_cols + cols[None, :], mask=mask, other=float("-inf"))
        x = x.to(tl.float32) / temperature
        m_new = tl.maximum(m, tl.max(x, axis=1))
        d = d * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new[:, None]), axis=1)
        m = m_new
    return m, tl.log(d)


@triton.jit
def _log_probs(ptr, offs, mask, temperature, m, log_d):
    """Log-softmax of ``x/T`` on a tile, from the row statistics of :func:`_online_stats`; 0 in
    masked lanes (a padding value read against a row maximum of −1e4/T would be a log-probability
    of +1e4/T, whose exp overflows: inf·0 = NaN in lanes the sums drop, but NaN all the same)."""
    x = tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32) / temperature
    return tl.where(mask, (x - m[:, None]) - log_d[:, None], 0.0)


@triton.jit
def _tile_log_probs(s_ptr, t_ptr, rows, row_ok, c0, n_cols, temperature, m_s, log_ds, m_t, log_dt,
                    BLOCK_C: tl.constexpr):
    """Offsets, mask and both log-probability tiles of the column block starting at ``c0``."""
    cols = c0 + tl.arange(0, BLOCK_C)
    mask = (cols < n_cols)[None, :] & row_ok[:, None]
    offs = rows[:, None] * n_cols + cols[None, :]
    ls = _log_probs(s_ptr, offs, mask, temperature, m_s, log_ds)
    lt = _log_probs(t_ptr, offs, mask, temperature, m_t, log_dt)
    return offs, mask, ls, lt


@triton.jit
def _log_mean(lt, ls):
    """``log((p_t + p_s) / 2)`` from the two log-probabilities, without overflow."""
    hi = tl.maximum(lt, ls)
    return hi + tl.log(tl.exp(lt - hi) + tl.exp(ls - hi)) - 0.6931471805599453


@triton.jit
def _kd_loss_kernel(s_ptr, t_ptr, gs_ptr, gt_ptr, loss_ptr, n_rows, n_cols, temperature, grad_scale,
                    KIND: tl.constexpr, WRITE_GS: tl.constexpr, WRITE_GT: tl.constexpr,
                    THIRD_SWEEP: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Row losses of one block of rows, and their gradients when asked (see the module docstring)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R).to(tl.int64)
    row_ok = rows < n_rows
    rows = tl.minimum(rows, n_rows - 1)  # padding rows repeat the last row; never stored
    acc_t = tl.zeros([BLOCK_R], tl.float32)
    acc_s = tl.zeros([BLOCK_R], tl.float32)
    if KIND == 0:
        for c0 in range(0, n_cols, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            mask = (cols < n_cols)[None, :] & row_ok[:, None]
            offs = rows[:, None] * n_cols + cols[None, :]
            diff = (tl.load(s_ptr + offs, mask=mask, other=0.0).to(tl.float32)
                    - tl.load(t_ptr + offs, mask=mask, other=0.0).to(tl.float32))
            acc_s += tl.sum(tl.abs(diff), axis=1)
            g = tl.where(diff > 0, 1.0, tl.where(diff < 0, -1.0, 0.0)) * (grad_scale / n_cols)
            if WRITE_GS:
                tl.store(gs_ptr + offs, g.to(gs_ptr.dtype.element_ty), mask=mask)
            if WRITE_GT:
                tl.store(gt_ptr + offs, (-g).to(gt_ptr.dtype.element_ty), mask=mask)
        loss = acc_s / n_cols
    else:
        m_s, log_ds = _online_stats(s_ptr, rows, n_cols, temperature, BLOCK_R, BLOCK_C)
        m_t, log_dt = _online_stats(t_ptr, rows, n_cols, temperature, BLOCK_R, BLOCK_C)
        for c0 in range(0, n_cols, BLOCK_C):
            offs, mask, ls, lt = _tile_log_probs(s_ptr, t_ptr, rows, row_ok, c0, n_cols, temperature,
                                                 m_s, log_ds, m_t, log_dt, BLOCK_C)
            pt = tl.exp(lt)
            if KIND == 1:
                acc_t += tl.sum(tl.where(mask, pt * (lt - ls), 0.0), axis=1)
                if WRITE_GS:
                    g = (grad_scale * temperature) * (tl.exp(ls) - pt)
                    tl.store(gs_ptr + offs, g.to(gs_ptr.dtype.element_ty), mask=mask)
            else:
                lm = _log_mean(lt, ls)
                acc_t += tl.sum(tl.where(mask, pt * (lt - lm), 0.0), axis=1)
                acc_s += tl.sum(tl.where(mask, tl.exp(ls) * (ls - lm), 0.0), axis=1)
        loss = temperature * temperature * acc_t if KIND == 1 else 0.5 * (acc_t + acc_s)
        if THIRD_SWEEP:
            for c0 in range(0, n_cols, BLOCK_C):
                offs, mask, ls, lt = _tile_log_probs(s_ptr, t_ptr, rows, row_ok, c0, n_cols, temperature,
                                                     m_s, log_ds, m_t, log_dt, BLOCK_C)
                if KIND == 1:
                    g = (grad_scale * temperature) * tl.exp(lt) * (lt - ls - acc_t[:, None])
                    tl.store(gt_ptr + offs, g.to(gt_ptr.dtype.element_ty), mask=mask)
                else:
                    lm = _log_mean(lt, ls)
                    scale = 0.5 * grad_scale / temperature
                    if WRITE_GS:
                        g = scale * tl.exp(ls) * ((ls - lm) - acc_s[:, None])
                        tl.store(gs_ptr + offs, g.to(gs_ptr.dtype.element_ty), mask=mask)
                    if WRITE_GT:
                        g = scale * tl.exp(lt) * ((lt - lm) - acc_t[:, None])
                        tl.store(gt_ptr + offs, g.to(gt_ptr.dtype.element_ty), mask=mask)
    tl.store(loss_ptr + rows, loss, mask=row_ok)


def _blocks(n_rows: int, n_cols: int) -> tuple[int, int]:
    """``(BLOCK_R, BLOCK_C)``: whole narrow rows, several per program; wide rows in column blocks."""
    block_c = min(triton.next_power_of_2(n_cols), MAX_BLOCK_C)
    block_r = max(1, min(TILE // block_c, triton.next_power_of_2(n_rows)))
    return block_r, block_c


def kd_row_losses_triton(student: Tensor, teacher: Tensor, kind: str, temperature: float, *,
                         grad_scale: float = 1.0, grad_student: bool = False,
                         grad_teacher: bool = False) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """fp32 row losses and, when asked, ``grad_scale ·`` their gradients (in the inputs' dtypes)."""
    check_launchable(INTERPRETED, student, teacher)
    student, teacher = student.contiguous(), teacher.contiguous()
    n_rows, n_cols = student.shape
    rows = torch.empty(n_rows, dtype=torch.float32, device=student.device)
    gs = torch.empty_like(student) if grad_student else None
    gt = torch.empty_like(teacher) if grad_teacher else None
    block_r, block_c = _blocks(n_rows, n_cols)
    with on_device(student):
        _kd_loss_kernel[(triton.cdiv(n_rows, block_r),)](
            student, teacher, student if gs is None else gs, teacher if gt is None else gt, rows,
            n_rows, n_cols, float(temperature), float(grad_scale),
            KIND=KINDS[kind], WRITE_GS=grad_student, WRITE_GT=grad_teacher,
            THIRD_SWEEP=(kind == "kl" and grad_teacher) or (kind == "js" and (grad_student or grad_teacher)),
            BLOCK_R=block_r, BLOCK_C=block_c,
            num_warps=8 if block_r * block_c >= 2048 else 4,
        )
    return rows, gs, gt


def _reduce(rows: Tensor, reduction: str, dtype: torch.dtype) -> Tensor:
    """``rows`` (fp32) reduced as the reference reduces them (:func:`reduce_rows`), in the output dtype."""
    return reduce_rows(rows, reduction).to(dtype)


class KDLossFunction(torch.autograd.Function):
    """Autograd wrapper: the forward kernel stores the gradients, the backward scales them."""

    @staticmethod
    def forward(ctx, student: Tensor, teacher: Tensor, kind: str, temperature: float, reduction: str,
                want_s: bool, want_t: bool) -> Tensor:
        """Run the kernel; keep the gradients the graph will need (``want_s``, ``want_t``)."""
        grad_scale = 1.0 / student.shape[0] if reduction == "mean" else 1.0
        rows, gs, gt = kd_row_losses_triton(student, teacher, kind, temperature, grad_scale=grad_scale,
                                            grad_student=want_s, grad_teacher=want_t)
        ctx.save_for_backward(student, teacher, gs, gt)
        ctx.kind, ctx.temperature, ctx.reduction = kind, temperature, reduction
        return _reduce(rows, reduction, torch.promote_types(student.dtype, teacher.dtype))

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        """Scale the stored gradients; recompute them differentiably under ``create_graph``."""
        student, teacher, gs, gt = ctx.saved_tensors
        if torch.is_grad_enabled():
            grads = _differentiable_grads(ctx, student, teacher, grad_out)
        else:
            scale = grad_out[:, None] if ctx.reduction == "none" else grad_out
            grads = tuple(None if g is None else g * scale.to(g.dtype) for g in (gs, gt))
        return (*grads, None, None, None, None, None)


def _differentiable_grads(ctx, student: Tensor, teacher: Tensor,
                          grad_out: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """Input gradients as a graph of the inputs (and ``grad_out``), through the reference loss."""
    wanted = [x for x, need in zip((student, teacher), ctx.needs_input_grad[:2]) if need]
    loss = reduce_rows(kd_row_losses(student, teacher, ctx.kind, ctx.temperature), ctx.reduction)
    found = iter(torch.autograd.grad(loss, wanted, grad_out, create_graph=True))
    return tuple(next(found) if need else None for need in ctx.needs_input_grad[:2])


def kd_loss_triton(student: Tensor, teacher: Tensor, kind: str = "kl", temperature: float = 1.0,
                   reduction: str = "mean") -> Tensor:
    """KD loss through the fused kernel (arguments as :func:`lrwa_fast.ops.losses.kd_loss_reference`,
    already checked by :func:`lrwa_fast.ops.kd_loss`, the one entry that calls it)."""
    grad_on = torch.is_grad_enabled()
    return KDLossFunction.apply(student, teacher, kind, temperature, reduction,
                                grad_on and student.requires_grad, grad_on and teacher.requires_grad)
