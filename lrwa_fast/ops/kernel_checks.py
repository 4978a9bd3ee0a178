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
# rows × classes of the KD check: one program of whole rows, three programs of whole rows (the last part-full),
# three programs of rows in two column blocks (the kernel's blocks: kernels/kd_loss.py _blocks)
CHECK_SHAPES = ((7, 13), (37, 100), (3, 4100))
# which logits need gradients (student, teacher): the distillation step's (the teacher's detached), the generator's
# step (both), an evaluation (none): each its own variant of the kernel
GRADIENTS = ((True, False), (True, True), (False, False))
CHECK_SIZES = (1, 7, 33, 130, 40_000)  # tensors of the alignment check: in one block, and across several chunks


def deviation(actual: Tensor, expected: Tensor, rtol: float, atol: float) -> float:
    """``max |actual − expected| / (atol + rtol·|expected|)`` (float64)."""
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    return float(((actual - expected).abs() / (atol + rtol * expected.abs())).max())


def kd_loss_check(device: torch.device, dtype: torch.dtype) -> float:
    """The KD-loss kernel against the float64 reference: L1, KL and JS at T = 2 (mean over rows) on each of
    :data:`CHECK_SHAPES`, for each variant of :data:`GRADIENTS`, the teacher's logits in ``dtype`` and (for a half
    dtype) in fp32; the loss and every gradient asked for, for a random ``grad_output``. The largest deviation in
    units of the tolerance."""
    gen = torch.Generator().manual_seed(46)
    teacher_dtypes = (dtype,) if dtype == torch.float32 else (dtype, torch.float32)
    worst = 0.0
    shapes = CHECK_SHAPES if device.type == "cuda" else CHECK_SHAPES[:2]  # the widest takes seconds in the interpreter
    for shape in shapes:
        for kind in ("l1", "kl", "js"):
            for t_dtype in teacher_dtypes:
                for grads in GRADIENTS:
                    worst = max(worst, _kd_deviation(gen, device, shape, kind, dtype, t_dtype, grads))
                    if worst > 1:  # failed: the rest cannot change the verdict
                        return worst
    return worst


def _kd_deviation(gen: torch.Generator, device: torch.device, shape: tuple[int, int], kind: str,
                  s_dtype: torch.dtype, t_dtype: torch.dtype, grads: tuple[bool, bool]) -> float:
    """One variant of :func:`kd_loss_check`: the kernel's loss and gradients against the reference's."""
    s, t = (torch.randn(shape, generator=gen, dtype=torch.float64).mul(3).to(d).to(device).requires_grad_(g)
            for d, g in ((s_dtype, grads[0]), (t_dtype, grads[1])))
    go = (torch.rand((), generator=gen, dtype=torch.float64) + 0.5).to(s_dtype).to(device)
    out = dispatch.kernels().kd_loss.kd_loss_triton(s, t, kind, 2.0, "mean")
    wanted = [x for x in (s, t) if x.requires_grad]
    got = torch.autograd.grad(out, wanted, go) if wanted else ()
    s64, t64 = (x.detach().double().requires_grad_(x.requires_grad) for x in (s, t))
    ref = kd_loss_reference(s64, t64, kind=kind, temperature=2.0, reduction="mean")
    expected = torch.autograd.grad(ref, [x for x in (s64, t64) if x.requires_grad], go.double()) if wanted else ()
    both = torch.cat([s64, t64]).detach()
    floor = KD_FLOOR[s_dtype] * float(go) * max(2.0, float(both.max() - both.min())) / shape[0]
    return max([deviation(out, ref, KD_RTOL_LOSS[s_dtype], 1e-6),
                *(deviation(g, r, KD_RTOL_GRAD[g.dtype], floor) for g, r in zip(got, expected))])


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
