"""pytest-benchmark timings of the fused ops against PyTorch (CUDA), plus CPU smoke tests.

    pytest benchmarks/bench_kernels.py                 # everything (GPU cases skip without CUDA)
    pytest benchmarks/bench_kernels.py -k smoke        # the CPU smoke tests CI runs

The smoke tests run tiny sizes through the PyTorch reference path and the table script's
``--smoke`` mode, so the benchmarks keep working on machines without a GPU.
"""

from __future__ import annotations

import json

import pytest
import torch
from kernel_table import foreach_alignment, main

from lrwa_fast import ops
from lrwa_fast.models import build_model
from lrwa_fast.ops.alignment import grad_alignment_reference
from lrwa_fast.ops.losses import kd_loss_reference

KINDS = ("l1", "kl", "js")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def synced(fn):
    """``fn`` followed by a device synchronisation (when on CUDA), for wall-clock timing."""
    def run():
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out
    return run


def kd_step(loss_fn, s: torch.Tensor, t: torch.Tensor):
    """One forward + backward of ``loss_fn`` on the student logits ``s``."""
    def step():
        s.grad = None
        loss = loss_fn(s, t)
        loss.backward()
        return loss
    return step


@pytest.mark.parametrize("kind", KINDS)
def test_kd_loss_smoke(benchmark, kind):
    s = torch.randn(8, 37, requires_grad=True)
    t = torch.randn(8, 37)
    loss = benchmark(kd_step(lambda a, b: ops.kd_loss(a, b, kind=kind, backend="torch"), s, t))
    torch.testing.assert_close(loss, kd_loss_reference(s, t, kind=kind))
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_grad_alignment_smoke(benchmark):
    shapes = [p.shape for p in build_model("wrn16_1", num_classes=10).parameters()]
    a, b = [torch.randn(s) for s in shapes], [torch.randn(s) for s in shapes]
    per_tensor = benchmark(lambda: ops.grad_alignment(a, b, backend="torch"))[3]
    torch.testing.assert_close(per_tensor, foreach_alignment(a, b), rtol=1e-4, atol=1e-3)


def test_kernel_table_smoke(tmp_path):
    out = tmp_path / "table.json"
    result = main(["--smoke", "--json", str(out)])
    assert json.loads(out.read_text())["records"] == result["records"]
    assert {r["op"] for r in result["records"]} == {"kd_loss", "grad_alignment"}
    assert all(r["ms"] > 0 for r in result["records"])


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("impl", ["fused", "eager", "compile"])
@pytest.mark.parametrize("classes", [1000, 32000, 128000])
@pytest.mark.parametrize("kind", KINDS)
def test_kd_loss_cuda(benchmark, kind, classes, impl):
    rows = 4096 if classes <= 32000 else 256
    s = torch.randn(rows, classes, device="cuda", requires_grad=True)
    t = torch.randn(rows, classes, device="cuda")
    fns = {"fused": lambda a, b: ops.kd_loss(a, b, kind=kind, temperature=4.0, backend="triton"),
           "eager": lambda a, b: kd_loss_reference(a, b, kind=kind, temperature=4.0)}
    if impl == "compile":
        torch._dynamo.reset()
        compiled = torch.compile(kd_loss_reference, dynamic=False)
        fns["compile"] = lambda a, b: compiled(a, b, kind=kind, temperature=4.0)
    step = synced(kd_step(fns[impl], s, t))
    step()
    benchmark.pedantic(step, rounds=20, warmup_rounds=2)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("impl", ["fused", "foreach", "eager"])
@pytest.mark.parametrize("model", ["resnet18", "wrn16_1"])
def test_grad_alignment_cuda(benchmark, model, impl):
    shapes = [p.shape for p in build_model(model, num_classes=100).parameters()]
    a = [torch.randn(s, device="cuda") for s in shapes]
    b = [torch.randn(s, device="cuda") for s in shapes]
    fns = {"fused": lambda: ops.grad_alignment(a, b, backend="triton"),
           "foreach": lambda: foreach_alignment(a, b), "eager": lambda: grad_alignment_reference(a, b)}
    benchmark.pedantic(synced(fns[impl]), rounds=50, warmup_rounds=3)
