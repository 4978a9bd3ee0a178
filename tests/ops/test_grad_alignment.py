"""Multi-tensor gradient alignment (``ops.grad_alignment`` on the Triton path) against float64.

Without CUDA the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, set by ``conftest.py``
before anything imports Triton); with CUDA the same tests run on the GPU.

Tolerances: squared norms (sums of positive terms accumulated in fp32) relative 2e-5;
dot products ``|dot − dot64| ≤ 2e-5 · ‖a‖ ‖b‖`` (their natural scale, by Cauchy-Schwarz), the same
for every input dtype since the inputs are upcast exactly and only the accumulation rounds.
"""

from __future__ import annotations

import textwrap
import zlib

import pytest
import torch

from lrwa_fast import ops
from lrwa_fast.ops import dispatch
from lrwa_fast.ops.alignment import cosine, grad_alignment_reference
from lrwa_fast.ops.kernel_checks import ALIGNMENT_RTOL
from tests.support import assert_compiles

pytest.importorskip("triton")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
RTOL = ALIGNMENT_RTOL  # the library's, which its self-check uses


def chunk() -> int:
    """The kernel's table chunk size (elements)."""
    return dispatch.kernels().grad_alignment.CHUNK


def random_list(sizes, dtypes, seed: int) -> list[torch.Tensor]:
    """Tensors of the given sizes (some reshaped to 2-D), dtypes cycled."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, n in enumerate(sizes):
        x = torch.randn(n, generator=gen, dtype=torch.float64).to(dtypes[i % len(dtypes)]).to(DEVICE)
        out.append(x.reshape(2, n // 2) if n % 2 == 0 and n > 0 and i % 3 == 0 else x)
    return out


def expected(a, b) -> torch.Tensor:
    """float64 ``(len, 3)`` rows of (dot, ‖a‖², ‖b‖²)."""
    rows = [[(x.double() * y.double()).sum(), x.double().square().sum(), y.double().square().sum()]
            for x, y in zip(a, b)]
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 3)


def check(result, a, b) -> None:
    """All four outputs against the float64 expectation (tolerances in the module docstring)."""
    dot, na, nb, per_tensor = result
    exp = expected(a, b)
    assert per_tensor.dtype == torch.float32 and per_tensor.shape == (len(a), 3)
    assert dot.shape == na.shape == nb.shape == () and dot.dtype == torch.float32
    got = per_tensor.double().cpu()
    torch.testing.assert_close(got[:, 1:], exp[:, 1:], rtol=RTOL, atol=0.0)
    scale = (exp[:, 1] * exp[:, 2]).sqrt()
    assert ((got[:, 0] - exp[:, 0]).abs() <= RTOL * scale).all()
    totals = exp.sum(dim=0)
    torch.testing.assert_close(torch.stack([na, nb]).double().cpu(), totals[1:], rtol=RTOL, atol=0.0)
    assert abs(dot.item() - totals[0].item()) <= RTOL * (totals[1] * totals[2]).sqrt().item()


def boundary_sizes() -> list[int]:
    c = chunk()
    return [c - 1, c, c + 1, 2 * c, 1, 0, 3, 1000, 2 * c + 17]


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunk_boundaries(dtype):
    sizes = boundary_sizes()
    a = random_list(sizes, [dtype], seed=zlib.crc32(repr(dtype).encode()))
    b = random_list(sizes, [dtype], seed=zlib.crc32(repr(dtype).encode()) + 1)
    check(ops.grad_alignment(a, b, backend="triton"), a, b)


@pytest.mark.parametrize("dtypes", [(torch.float32,), DTYPES], ids=["fp32", "mixed"])
def test_many_tensors(dtypes):
    gen = torch.Generator().manual_seed(len(dtypes))
    sizes = boundary_sizes() + torch.randint(1, 3000, (200,), generator=gen).tolist()
    a, b = random_list(sizes, dtypes, seed=10), random_list(sizes, dtypes, seed=11)
    b[5] = b[5] * 0.5 + a[5]  # correlated pair: a dot product far from zero
    result = ops.grad_alignment(a, b, backend="triton")
    check(result, a, b)
    again = ops.grad_alignment(a, b, backend="triton")
    assert torch.equal(result[3], again[3]) and torch.equal(result[0], again[0])  # deterministic


def test_non_contiguous_inputs():
    gen = torch.Generator().manual_seed(4)
    base_a = torch.randn(40, 30, generator=gen).to(DEVICE)
    base_b = torch.randn(30, 40, generator=gen).to(DEVICE)
    a, b = [base_a.t(), base_a[::2, 1:], base_a[3]], [base_b, base_b.t()[::2, 1:], base_b[:, 3]]
    assert not a[0].is_contiguous() and not b[1].is_contiguous()
    check(ops.grad_alignment(a, b, backend="triton"), a, b)


def test_empty_cases():
    dot, na, nb, per_tensor = ops.grad_alignment([], [], backend="triton")
    assert per_tensor.shape == (0, 3) and dot.item() == na.item() == nb.item() == 0.0
    a = [torch.zeros(0, device=DEVICE), torch.zeros(3, 0, device=DEVICE)]
    dot, na, nb, per_tensor = ops.grad_alignment(a, [x.clone() for x in a], backend="triton")
    assert torch.equal(per_tensor.cpu(), torch.zeros(2, 3))


def test_matches_torch_reference():
    sizes = [5, 0, 1, 70000, 33]
    a, b = random_list(sizes, DTYPES, seed=20), random_list(sizes, DTYPES, seed=21)
    fused = ops.grad_alignment(a, b, backend="triton")
    ref = ops.grad_alignment(a, b, backend="torch")
    for x, y in zip(fused, ref):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref[3], grad_alignment_reference(a, b)[3])


REFERENCE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@pytest.mark.parametrize("dtypes", [(d,) for d in REFERENCE_DTYPES] + [REFERENCE_DTYPES],
                         ids=["fp32", "fp16", "bf16", "fp64", "mixed"])
def test_reference_against_float64(dtypes):
    """The reference itself: 1 element, odd sizes, zero-size, 2-D and non-contiguous tensors."""
    seed = zlib.crc32(repr(dtypes).encode())
    sizes = [1, 7, 0, 3, 1001, 30, 2 * chunk() + 17]
    a, b = random_list(sizes, dtypes, seed), random_list(sizes, dtypes, seed + 1)
    a[4], b[4] = a[4][:1000:2], b[4][1::2]
    a[5], b[5] = a[5].reshape(5, 6).t(), b[5].reshape(5, 6).t()
    assert not any(t.is_contiguous() for t in (a[4], b[4], a[5], b[5]))
    check(grad_alignment_reference(a, b), a, b)


def test_reference_empty_list():
    dot, na, nb, per_tensor = grad_alignment_reference([], [])
    assert per_tensor.shape == (0, 3) and per_tensor.dtype == torch.float32
    assert dot.item() == na.item() == nb.item() == 0.0


def test_reference_extreme_magnitudes_in_fp32():
    """Squared sums near 1e36 and 1e-36 (inside fp32's normal range) and a dot of order 1 between them."""
    gen = torch.Generator().manual_seed(zlib.crc32(b"extremes"))
    big = torch.randn(5, generator=gen, dtype=torch.float64) * 1e18
    tiny = torch.randn(5, generator=gen, dtype=torch.float64) * 1e-18
    a = [t.float().to(DEVICE) for t in (big, tiny, big)]
    b = [t.float().to(DEVICE) for t in (big.flip(0), tiny.flip(0), tiny)]
    check(grad_alignment_reference(a, b), a, b)


def test_grad_cosine_torch_path_is_the_reference():
    sizes = [3, 0, 500, 1]
    a, b = random_list(sizes, DTYPES, seed=60), random_list(sizes, DTYPES, seed=61)
    dot, na, nb, _ = grad_alignment_reference(a, b)
    assert torch.equal(ops.grad_cosine(a, b, backend="torch"), cosine(dot, na, nb))


def test_one_launch_per_dtype_group(monkeypatch):
    module = dispatch.kernels().grad_alignment
    launches = []

    class Counting:
        def __init__(self, name, kernel):
            self.name, self.kernel = name, kernel

        def __getitem__(self, grid):
            launches.append(self.name)
            return self.kernel[grid]

    monkeypatch.setattr(module, "_chunk_partials_kernel", Counting("chunks", module._chunk_partials_kernel))
    monkeypatch.setattr(module, "_segment_sum_kernel", Counting("segments", module._segment_sum_kernel))
    sizes = [7, 300, 0, 12, 9, 1]
    a, b = random_list(sizes, DTYPES, seed=30), random_list(sizes, DTYPES, seed=31)
    ops.grad_alignment(a, b, backend="triton")
    assert sorted(launches) == ["chunks"] * 3 + ["segments"]


def test_plan_cache_reuses_tables_and_sees_new_values(monkeypatch):
    module = dispatch.kernels().grad_alignment
    builds = []
    build = module._build_plan
    monkeypatch.setattr(module, "_build_plan", lambda a, b: builds.append(1) or build(a, b))
    a, b = random_list([50, 3, 20000], DTYPES, 40), random_list([50, 3, 20000], DTYPES, 41)
    ops.grad_alignment(a, b, backend="triton")
    a[0].mul_(-2.0)
    check(ops.grad_alignment(a, b, backend="triton"), a, b)
    assert len(builds) == 1
    c = [x.clone() for x in a]
    check(ops.grad_alignment(c, b, backend="triton"), c, b)
    assert len(builds) == 2


def test_argument_errors():
    x = torch.zeros(3, device=DEVICE)
    with pytest.raises(ValueError, match="length"):
        ops.grad_alignment([x], [x, x], backend="triton")
    with pytest.raises(ValueError, match="shape"):
        ops.grad_alignment([x], [x.reshape(3, 1)], backend="triton")


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_grad_cosine(backend):
    v = torch.randn(5, 7, generator=torch.Generator().manual_seed(50)).to(DEVICE)
    w = torch.randn(13, generator=torch.Generator().manual_seed(51)).to(DEVICE)
    zero = [torch.zeros_like(v), torch.zeros_like(w)]
    assert ops.grad_cosine([v, w], [2 * v, 2 * w], backend=backend).item() == pytest.approx(1.0, abs=1e-6)
    assert ops.grad_cosine([v, w], [-v, -w], backend=backend).item() == pytest.approx(-1.0, abs=1e-6)
    assert ops.grad_cosine([v, w], zero, backend=backend).item() == 0.0
    orth = [v, torch.zeros_like(w)], [torch.zeros_like(v), w]
    assert ops.grad_cosine(*orth, backend=backend).item() == 0.0
    x, y = [v, w], [v.flip(0), w.flip(0)]
    flat_x = torch.cat([t.double().flatten() for t in x])
    flat_y = torch.cat([t.double().flatten() for t in y])
    want = (flat_x @ flat_y / (flat_x.norm() * flat_y.norm())).item()
    assert ops.grad_cosine(x, y, backend=backend).item() == pytest.approx(want, abs=1e-6)


COMPILE_SCRIPT = textwrap.dedent("""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from lrwa_fast.ops import dispatch
    module = dispatch.kernels().grad_alignment
    target = GPUTarget("cuda", 90, 32)
    for dtype in ("fp32", "bf16"):
        sig = {"a_base": "*" + dtype, "b_base": "*fp16", "table_ptr": "*i64", "partial_ptr": "*fp32",
               "BLOCK": "constexpr"}
        source = ASTSource(module._chunk_partials_kernel, sig, {"BLOCK": module.BLOCK})
        assert triton.compile(source, target=target).asm["cubin"]
    sig = {"partial_ptr": "*fp32", "segment_ptr": "*i64", "out_ptr": "*fp32", "BLOCK": "constexpr"}
    source = ASTSource(module._segment_sum_kernel, sig, {"BLOCK": module.SEGMENT_BLOCK})
    assert triton.compile(source, target=target).asm["cubin"]
    print("ok")
""")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU tests compile the kernels for real")
def test_kernels_compile_for_sm90_without_a_gpu():
    """The interpreter accepts code the compiler may not: compile both kernels to cubins for sm_90."""
    assert_compiles(COMPILE_SCRIPT)


@pytest.mark.gpu
def test_gpu_resnet_like_lists():
    torch.manual_seed(0)
    shapes = [(64, 3, 3, 3), (64,), (64,), (128, 64, 3, 3), (256, 128, 3, 3), (512, 256, 3, 3),
              (512, 512, 3, 3), (512, 512, 3, 3), (100, 512), (100,)] * 6
    for dtypes in ((torch.float32,), DTYPES):
        a = [torch.randn(s, device="cuda").to(dtypes[i % len(dtypes)]) for i, s in enumerate(shapes)]
        b = [torch.randn(s, device="cuda").to(x.dtype) + 0.1 * x for s, x in zip(shapes, a)]
        check(ops.grad_alignment(a, b, backend="triton"), a, b)
