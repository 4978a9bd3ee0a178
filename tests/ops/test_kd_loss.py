"""Fused KD loss (``ops.kd_loss`` on the Triton path) against float64 references.

Without CUDA the kernels run in Triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``, set
by ``conftest.py`` before anything imports Triton: Triton picks interpreter or compiler when it
decorates a function); with CUDA the same tests run the compiled kernels on the GPU.

Tolerances, elementwise ``|actual − expected| ≤ atol + rtol·|expected|`` against the float64
reference evaluated on the same (rounded) inputs:

* fp32 inputs: loss rtol 2e-5, gradients rtol 1e-4; fp16: 3e-3; bf16: 2e-2 (both the loss and
  the gradients are rounded to the input dtype, then scaled by ``grad_output`` in it);
* absolute floor ``atol = FLOOR[dtype] · g`` with ``g = max|grad_output| · (1/rows for mean) ·
  max(T, 1/T, spread)``, ``spread`` the range of the logits; FLOOR is 1e-6 (fp32, fp16) and 1e-5
  (bf16). ``g`` bounds the size of a gradient entry and of the log-probabilities (up to
  ``spread/T``) it is computed from: it covers entries whose exact value cancels below fp32
  resolution (JS on near one-hot distributions; the KL teacher gradient ``T p_t (log p_t − log p_s
  − KL)`` with logits of ±1e4), where any fp32 evaluation, PyTorch's included, errs as much.
"""

from __future__ import annotations

import contextlib
import textwrap
import zlib

import numpy as np
import pytest
import torch

from lrwa_fast import ops
from lrwa_fast.ops import dispatch
from lrwa_fast.ops.kernel_checks import KD_FLOOR, KD_RTOL_GRAD, KD_RTOL_LOSS
from lrwa_fast.ops.losses import kd_loss_reference
from tests.support import assert_compiles

pytest.importorskip("triton")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KINDS = ("l1", "kl", "js")
REDUCTIONS = ("mean", "sum", "none")
RTOL_LOSS, RTOL_GRAD, FLOOR = KD_RTOL_LOSS, KD_RTOL_GRAD, KD_FLOOR  # the library's, which its self-check uses


def seed_of(*params: object) -> int:
    """A fixed seed per test parameter set."""
    return zlib.crc32(repr(params).encode())


def logits(shape: tuple[int, int], gen: torch.Generator, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """Random logits: Gaussian times ``scale``, or uniform in ±``scale`` when ``scale`` is large."""
    base = torch.randn(shape, generator=gen, dtype=torch.float64)
    if scale > 100:
        base = torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1
    return (base * scale).to(dtype).to(DEVICE)


def grad_output(out: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A ``grad_output`` ≠ 1: a random scalar, or one random weight per row for ``none``."""
    values = (torch.rand(out.shape, generator=gen, dtype=torch.float64) + 0.5) * 1.7
    return values.to(out.dtype).to(DEVICE)


def every_lane_finite() -> contextlib.AbstractContextManager:
    """Under the interpreter, make any inf or NaN the kernel computes an error, even in a masked
    lane whose value is later discarded (the interpreter evaluates the kernel with NumPy); on a GPU,
    nothing (its outputs are still checked)."""
    if DEVICE == "cuda":
        return contextlib.nullcontext()
    return np.errstate(over="raise", invalid="raise", divide="raise")


def check_case(shape, kind, temperature, reduction, *, dtype=torch.float32, scale=3.0, teacher_grad=True,
               seed=None) -> None:
    """Loss and gradients of the kernel path against the float64 reference."""
    gen = torch.Generator().manual_seed(seed_of(shape, kind, temperature, reduction, dtype, scale)
                                        if seed is None else seed)
    s = logits(shape, gen, scale, dtype)
    t = logits(shape, gen, scale, dtype)
    compare(s, t, kind, temperature, reduction, gen, teacher_grad=teacher_grad)


def compare(s: torch.Tensor, t: torch.Tensor, kind: str, temperature: float, reduction: str,
            gen: torch.Generator, *, teacher_grad: bool = True) -> None:
    """Kernel loss and gradients on ``(s, t)`` against the float64 reference (module docstring)."""
    shape, dtype = tuple(s.shape), s.dtype
    s, t = s.detach().clone().requires_grad_(), t.detach().clone().requires_grad_(teacher_grad)
    with every_lane_finite():
        out = ops.kd_loss(s, t, kind=kind, temperature=temperature, reduction=reduction, backend="triton")
    go = grad_output(out, gen)
    inputs = (s, t) if teacher_grad else (s,)
    grads = torch.autograd.grad(out, inputs, go)

    s64, t64 = s.detach().double().requires_grad_(), t.detach().double().requires_grad_(teacher_grad)
    ref = kd_loss_reference(s64, t64, kind=kind, temperature=temperature, reduction=reduction)
    ref_grads = torch.autograd.grad(ref, (s64, t64) if teacher_grad else (s64,), go.double())

    assert out.dtype == dtype and out.shape == ref.shape
    fits = ref.abs() <= torch.finfo(dtype).max  # fp16 cannot hold e.g. T²·KL ≈ 8e4 (T = 4, logits ±1e4)
    assert torch.isfinite(out[fits]).all() and torch.isinf(out[~fits]).all(), "overflow is inf, never NaN"
    torch.testing.assert_close(out[fits].double(), ref[fits], rtol=RTOL_LOSS[dtype], atol=1e-6)
    spread = (torch.maximum(s.max(), t.max()) - torch.minimum(s.min(), t.min())).item()
    natural = go.double().abs().max().item() * max(temperature, 1 / temperature, spread)
    natural /= shape[0] if reduction == "mean" else 1
    for g, r in zip(grads, ref_grads):
        assert g.dtype == dtype and torch.isfinite(g).all()
        torch.testing.assert_close(g.double(), r, rtol=RTOL_GRAD[dtype], atol=FLOOR[dtype] * natural)


@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (1, 7), (5, 10), (7, 33)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_small_shapes(kind, reduction, shape):
    check_case(shape, kind, 2.0, reduction)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 20.0])
@pytest.mark.parametrize("kind", KINDS)
def test_temperatures(kind, temperature):
    check_case((6, 100), kind, temperature, "sum")


@pytest.mark.parametrize(("kind", "reduction"), [("l1", "sum"), ("kl", "mean"), ("js", "none")])
def test_odd_shape_41x1271(kind, reduction):
    check_case((41, 1271), kind, 4.0, reduction)


@pytest.mark.parametrize("kind", KINDS)
def test_wide_rows_32771_classes(kind):
    check_case((2, 32771), kind, 1.0, "mean")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [0.5, 20.0])
@pytest.mark.parametrize("kind", KINDS)
def test_large_logits(kind, temperature, dtype):
    check_case((4, 300), kind, temperature, "none", dtype=dtype, scale=1e4)


def extreme_rows(classes: int, gen: torch.Generator, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher rows at the extremes: uniform in ±1e4; one class taking all the probability
    (the same class, and different classes); all logits equal (at 1e4, at −1e4, and against a uniform
    row); every logit ±1e4 with random signs; one ±1e4 spike in small logits."""
    def uniform():
        return (torch.rand(classes, generator=gen, dtype=torch.float64) * 2 - 1) * 1e4

    def one_hot(index):
        row = torch.full((classes,), -1e4, dtype=torch.float64)
        row[index] = 1e4
        return row

    def signs():
        return torch.where(torch.rand(classes, generator=gen) < 0.5, -1e4, 1e4).double()

    spike = torch.randn(classes, generator=gen, dtype=torch.float64)
    spike[classes // 2] = 1e4
    pairs = [(uniform(), uniform()), (one_hot(0), one_hot(0)), (one_hot(1), one_hot(classes - 1)),
             (torch.full((classes,), 1e4), torch.full((classes,), -1e4)), (torch.full((classes,), 1e4), uniform()),
             (signs(), signs()), (spike, -spike), (uniform(), one_hot(classes // 3))]
    s, t = (torch.stack(side).to(dtype).to(DEVICE) for side in zip(*pairs))
    return s, t


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("temperature", [0.25, 0.5, 1.0, 4.0])
@pytest.mark.parametrize("kind", KINDS)
def test_extreme_logits(kind, temperature, dtype):
    gen = torch.Generator().manual_seed(seed_of("extreme", kind, temperature, dtype))
    for classes in (37, 300):
        s, t = extreme_rows(classes, gen, dtype)
        compare(s, t, kind, temperature, "none", gen)


@pytest.mark.parametrize("shape", [(1, 3), (6, 2), (3, 4099)])
@pytest.mark.parametrize("kind", KINDS)
def test_masked_lanes_of_very_negative_rows(kind, shape):
    """Rows whose every logit is about −1e4, at T = 0.5, in tiles with padding columns ((1, 3),
    (3, 4099): a second column block nearly all padding) and padding rows ((6, 2)). Padding lanes
    once read 0, a log-probability of +2e4 against such a row's maximum, whose exp overflowed and
    gave inf·0 = NaN in lanes the sums then dropped (seen as NaN warnings under the interpreter)."""
    gen = torch.Generator().manual_seed(seed_of("masked", kind, shape))
    s = (-1e4 + torch.rand(shape, generator=gen, dtype=torch.float64)).float().to(DEVICE)
    t = (-1e4 + torch.rand(shape, generator=gen, dtype=torch.float64)).float().to(DEVICE)
    compare(s, t, kind, 0.5, "none", gen)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", KINDS)
def test_half_precision(kind, dtype):
    check_case((9, 300), kind, 2.0, "mean", dtype=dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_student_only_gradient(kind):
    check_case((5, 70), kind, 3.0, "mean", teacher_grad=False)


def test_no_grad_forward_matches():
    gen = torch.Generator().manual_seed(1)
    s, t = logits((4, 50), gen, 3.0, torch.float32), logits((4, 50), gen, 3.0, torch.float32)
    with torch.no_grad():
        out = ops.kd_loss(s.requires_grad_(), t, kind="js", backend="triton")
    assert not out.requires_grad
    torch.testing.assert_close(out.double(), kd_loss_reference(s.double(), t.double(), kind="js"))


def test_non_contiguous_and_mixed_dtypes():
    gen = torch.Generator().manual_seed(2)
    s = logits((40, 6), gen, 3.0, torch.float32).t().requires_grad_()
    t = logits((6, 40), gen, 3.0, torch.bfloat16).requires_grad_()
    out = ops.kd_loss(s, t, kind="kl", temperature=2.0, backend="triton")
    gs, gt = torch.autograd.grad(out, (s, t))
    s64, t64 = s.detach().double().requires_grad_(), t.detach().double().requires_grad_()
    ref = kd_loss_reference(s64, t64, kind="kl", temperature=2.0)
    rs, rt = torch.autograd.grad(ref, (s64, t64))
    assert out.dtype == torch.float32 and gs.dtype == torch.float32 and gt.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), ref, rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(gs.double(), rs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gt.double(), rt, rtol=2e-2, atol=1e-5)


def test_argument_errors_on_kernel_path():
    x = torch.zeros(2, 3, device=DEVICE)
    with pytest.raises(ValueError, match=r"kind=.mse. \(expected one of"):
        ops.kd_loss(x, x, kind="mse", backend="triton")
    with pytest.raises(ValueError, match="temperature"):
        ops.kd_loss(x, x, temperature=0.0, backend="triton")
    with pytest.raises(ValueError, match="equal shape"):
        ops.kd_loss(x, x[:, :2], backend="triton")


@pytest.mark.parametrize("kind", KINDS)
def test_one_launch_and_backward_only_scales(kind, monkeypatch):
    module = dispatch.kernels().kd_loss
    launches = []
    kernel = module._kd_loss_kernel

    class Counting:
        def __getitem__(self, grid):
            launches.append(grid)
            return kernel[grid]

    def no_reference(*args, **kwargs):
        raise AssertionError("a first-order backward must not recompute the loss")

    monkeypatch.setattr(module, "_kd_loss_kernel", Counting())
    monkeypatch.setattr(module, "kd_row_losses", no_reference)
    gen = torch.Generator().manual_seed(3)
    s = logits((6, 40), gen, 3.0, torch.float32).requires_grad_()
    t = logits((6, 40), gen, 3.0, torch.float32).requires_grad_()
    out = ops.kd_loss(s, t, kind=kind, temperature=2.0, reduction="sum", backend="triton")
    out.backward(torch.tensor(3.0, device=DEVICE))
    assert len(launches) == 1
    first_s, first_t = s.grad.clone(), t.grad.clone()
    s.grad = t.grad = None
    ops.kd_loss(s, t, kind=kind, temperature=2.0, reduction="sum", backend="triton").backward()
    torch.testing.assert_close(first_s, 3 * s.grad)
    torch.testing.assert_close(first_t, 3 * t.grad)


def hvp(loss_fn, s: torch.Tensor, t: torch.Tensor, vs: torch.Tensor, vt: torch.Tensor,
        go: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """First-order gradients (with graph) and the Hessian-vector product along (vs, vt)."""
    s, t = s.clone().requires_grad_(), t.clone().requires_grad_()
    gs, gt = torch.autograd.grad(loss_fn(s, t), (s, t), go, create_graph=True)
    hs, ht = torch.autograd.grad((gs * vs).sum() + (gt * vt).sum(), (s, t), allow_unused=True)
    zero = torch.zeros_like(s)
    return gs, gt, zero if hs is None else hs, zero if ht is None else ht


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("kind", KINDS)
def test_double_backward_hvp(kind, reduction):
    gen = torch.Generator().manual_seed(seed_of("hvp", kind, reduction))
    s, t, vs, vt = (logits((5, 12), gen, 2.0, torch.float32) for _ in range(4))
    go = (torch.rand(5 if reduction == "none" else (), generator=gen) + 0.5).to(DEVICE)
    kwargs = {"kind": kind, "temperature": 1.5, "reduction": reduction}
    fused = hvp(lambda a, b: ops.kd_loss(a, b, backend="triton", **kwargs), s, t, vs, vt, go)
    ref = hvp(lambda a, b: kd_loss_reference(a, b, **kwargs), *(x.double() for x in (s, t, vs, vt, go)))
    for a, r in zip(fused, ref):
        torch.testing.assert_close(a.double(), r, rtol=1e-4, atol=1e-7)
    assert kind == "l1" or fused[2].abs().max() > 1e-3  # a real second-order term was compared


@pytest.mark.parametrize("kind", KINDS)
def test_meta_gradient_through_linear_student(kind):
    """Second order through the parameters, teacher constant: what the exact LRwA step needs."""
    gen = torch.Generator().manual_seed(seed_of("meta", kind))
    x = torch.randn(8, 6, generator=gen, dtype=torch.float64).to(DEVICE)
    w0 = torch.randn(6, 11, generator=gen, dtype=torch.float64).to(DEVICE)
    teacher = torch.randn(8, 11, generator=gen, dtype=torch.float64).to(DEVICE)

    def outer(loss_fn, dtype):
        w = w0.to(dtype).requires_grad_()
        g = torch.autograd.grad(loss_fn(x.to(dtype) @ w, teacher.to(dtype)), w, create_graph=True)[0]
        inner = w - 0.5 * g
        return torch.autograd.grad(loss_fn(x.to(dtype) @ inner, teacher.to(dtype)), w)[0]

    fused = outer(lambda a, b: ops.kd_loss(a, b, kind=kind, temperature=2.0, backend="triton"), torch.float32)
    ref = outer(lambda a, b: kd_loss_reference(a, b, kind=kind, temperature=2.0), torch.float64)
    torch.testing.assert_close(fused.double(), ref, rtol=1e-4, atol=1e-6)


COMPILE_SCRIPT = textwrap.dedent("""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from lrwa_fast.ops import dispatch
    kernel = dispatch.kernels().kd_loss._kd_loss_kernel
    flags = ("KIND", "WRITE_GS", "WRITE_GT", "THIRD_SWEEP", "BLOCK_R", "BLOCK_C")
    for kind, dtype, write_t in ((0, "fp32", True), (1, "bf16", True), (2, "fp16", False)):
        sig = {name: "*" + dtype for name in ("s_ptr", "t_ptr", "gs_ptr", "gt_ptr")}
        sig |= {"loss_ptr": "*fp32", "n_rows": "i32", "n_cols": "i32", "temperature": "fp32",
                "grad_scale": "fp32"} | dict.fromkeys(flags, "constexpr")
        consts = dict(zip(flags, (kind, True, write_t, kind == 2 or write_t, 2, 1024)))
        compiled = triton.compile(ASTSource(kernel, sig, consts), target=GPUTarget("cuda", 90, 32))
        assert compiled.asm["cubin"], kind
    print("ok")
""")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU tests compile the kernels for real")
def test_kernel_compiles_for_sm90_without_a_gpu():
    """The interpreter accepts code the compiler may not: compile the kernel to a cubin for sm_90."""
    assert_compiles(COMPILE_SCRIPT)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_slow_many_rows_wide(kind):
    check_case((3, 128000), kind, 4.0, "none")
    check_case((300, 257), kind, 0.5, "mean")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4096, 10), (4096, 1000), (1024, 32000), (64, 128000)])
@pytest.mark.parametrize("kind", KINDS)
def test_gpu_large_shapes(kind, shape, dtype):
    check_case(shape, kind, 4.0, "mean", dtype=dtype)
