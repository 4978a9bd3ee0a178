"""The checks of the ops' kernels (:mod:`lrwa_fast.runtime.selfcheck`) and the tolerances they and the tests judge the
kernels by: each check runs a Triton kernel on small seeded inputs of awkward shapes, forward and backward, and
returns its largest deviation from the float64 reference in units of the tolerance (≤ 1 passes).

Tolerances, elementwise ``|kernel − reference| ≤ atol + rtol·|reference|`` against the float64 reference on the
same (rounded) inputs. KD loss: the loss within :data:`KD_RTOL_LOSS` (atol 1e-6), the gradients within
:data:`KD_RTOL_GRAD` with the floor ``atol = KD_FLOOR · g``, ``g = max|grad_output| · (1/rows for mean) ·
max(T, 1/T, spread)`` (``spread`` the logits' range: the size of a gradient entry and of the log-probabilities it
comes from). Alignment: squared norms within :data:`ALIGNMENT_RTOL` relative, dot products within
``ALIGNMENT_RTOL · ‖a‖ ‖b‖`` (their natural scale).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import dispatch
from .losses import kd_loss_reference

KD_RTOL_LOSS = {torch.float32: 2e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}
KD_RTOL_GRAD = {torch.float32: 1e-4, torch.float16: 3e-3, torch.bfloat16: 2e-2}
KD_FLOOR = {torch.float32: 1e-6, torch.float16: 1e-6, torch.bfloat16: 1e-5}
ALIGNMENT_RTOL = 2e-5
CHECK_SHAPE = (7, 13)  # rows × classes of the KD check: odd, and more classes than one warp's lanes hold once
CHECK_SIZES = (1, 7, 33, 130)  # tensors of the alignment check, elements each


def deviation(actual: Tensor, expected: Tensor, rtol: float, atol: float) -> float:
    """``max |actual − expected| / (atol + rtol·|expected|)`` (float64)."""
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    return float(((actual - expected).abs() / (atol + rtol * expected.abs())).max())


def kd_loss_check(device: torch.device, dtype: torch.dtype) -> float:
    """The KD-loss kernel (L1, KL and JS at T = 2, mean over rows) against the reference: the loss and both
    gradients, for a random ``grad_output``; the largest deviation in units of the tolerance."""
    gen = torch.Generator().manual_seed(46)
    worst = 0.0
    for kind in ("l1", "kl", "js"):
        s, t = (torch.randn(CHECK_SHAPE, generator=gen, dtype=torch.float64).mul(3).to(dtype).to(device)
                .requires_grad_() for _ in range(2))
        go = (torch.rand((), generator=gen, dtype=torch.float64) + 0.5).to(dtype).to(device)
        out = dispatch.kernels().kd_loss.kd_loss_triton(s, t, kind, 2.0, "mean")
        grads = torch.autograd.grad(out, (s, t), go)
        s64, t64 = (x.detach().double().requires_grad_() for x in (s, t))
        ref = kd_loss_reference(s64, t64, kind=kind, temperature=2.0, reduction="mean")
        ref_grads = torch.autograd.grad(ref, (s64, t64), go.double())
        both = torch.cat([s64, t64]).detach()
        spread = float(both.max() - both.min())
        floor = KD_FLOOR[dtype] * float(go) * max(2.0, spread) / CHECK_SHAPE[0]
        worst = max(worst, deviation(out, ref, KD_RTOL_LOSS[dtype], 1e-6),
                    *(deviation(g, r, KD_RTOL_GRAD[dtype], floor) for g, r in zip(grads, ref_grads)))
    return worst


def grad_alignment_check(device: torch.device, dtype: torch.dtype) -> float:
    """The multi-tensor alignment kernel against the float64 reference on tensors of :data:`CHECK_SIZES`."""
    gen = torch.Generator().manual_seed(47)
    a, b = ([torch.randn(n, generator=gen).to(dtype).to(device) for n in CHECK_SIZES] for _ in range(2))
    got = dispatch.kernels().grad_alignment.per_tensor_alignment(a, b).double().cpu()
    pairs = [(x.double().cpu(), y.double().cpu()) for x, y in zip(a, b)]
    expected = torch.tensor([[x.dot(y), x.dot(x), y.dot(y)] for x, y in pairs], dtype=torch.float64)
    scale = torch.stack([(expected[:, 1] * expected[:, 2]).sqrt(), expected[:, 1], expected[:, 2]], dim=1)
    return float(((got - expected).abs() / (ALIGNMENT_RTOL * scale).clamp_min(1e-30)).max())


CHECKS = {"kd_loss": kd_loss_check, "grad_alignment": grad_alignment_check}
