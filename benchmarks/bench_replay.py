"""pytest-benchmark of the replay memory through its public API, per backend, plus CPU smoke tests.

    pytest benchmarks/bench_replay.py --benchmark-only [--benchmark-group-by=param:op]
    pytest benchmarks/bench_replay.py -k smoke        # the quick checks CI runs

``ReplayBuffer.add`` of a batch and ``ReplayBuffer.sample`` (draw + gather) from a full buffer of
10k samples (3×32×32, 100-class logits, float32 storage) with every backend available here:
``torch`` and ``cpp`` on the CPU, ``torch`` and ``cuda`` on a GPU when the CUDA kernels are built.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch
from replay_table import main

from lrwa_fast import ReplayBuffer
from lrwa_fast.replay.buffer import _ext

CAPACITY = 10_000
SHAPE = (3, 32, 32)
CLASSES = 100

CASES = [("cpu", "torch"), ("cpu", "cpp"), ("cuda", "torch"), ("cuda", "cuda")]


def available(device: str, backend: str) -> bool:
    """Whether ``backend`` can hold a buffer on ``device`` in this environment."""
    if device == "cuda" and not torch.cuda.is_available():
        return False
    return backend == "torch" or (_ext.module() is not None and (backend == "cpp" or _ext.has_cuda()))


PARAMS = [pytest.param(device, backend, id=f"{device}-{backend}",
                       marks=pytest.mark.skipif(not available(device, backend), reason="not available here"))
          for device, backend in CASES]


def synced(fn: Callable[[], object], device: str) -> Callable[[], None]:
    """``fn`` followed by a device synchronisation, so the timing covers the GPU work."""
    def run() -> None:
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
    return run


def full_buffer(device: str, backend: str, policy: str) -> ReplayBuffer:
    buf = ReplayBuffer(CAPACITY, SHAPE, CLASSES, policy=policy, device=device, seed=0, backend=backend)
    x, logits = torch.rand(1000, *SHAPE, device=device), torch.rand(1000, CLASSES, device=device)
    for _ in range(CAPACITY // 1000):
        buf.add(x, logits)
    return buf


@pytest.mark.parametrize("device, backend", PARAMS)
@pytest.mark.parametrize("op", ["sample-64", "sample-256", "sample-64-distinct"])
def test_sample(benchmark, device: str, backend: str, op: str) -> None:
    buf = full_buffer(device, backend, "reservoir")
    n, replace = int(op.split("-")[1]), not op.endswith("distinct")
    benchmark(synced(lambda: buf.sample(n, replace=replace), device))


@pytest.mark.parametrize("device, backend", PARAMS)
@pytest.mark.parametrize("policy", ["fifo", "reservoir"])
@pytest.mark.parametrize("batch", [64, 256])
def test_insert(benchmark, device: str, backend: str, policy: str, batch: int) -> None:
    buf = full_buffer(device, backend, policy)
    x, logits = torch.rand(batch, *SHAPE, device=device), torch.rand(batch, CLASSES, device=device)
    benchmark(synced(lambda: buf.add(x, logits), device))


def smoke_round(buf: ReplayBuffer) -> tuple[torch.Tensor, ...]:
    """Add one fixed batch and draw 16 distinct items."""
    gen = torch.Generator().manual_seed(0)
    buf.add(torch.rand(80, 3, 4, 4, generator=gen), torch.rand(80, 10, generator=gen))
    return buf.sample_with_indices(16, replace=False)


@pytest.mark.parametrize("backend", ["torch", pytest.param("cpp", marks=pytest.mark.skipif(
    not available("cpu", "cpp"), reason="extension unavailable"))])
def test_replay_smoke(benchmark, backend: str) -> None:
    """A tiny add + sample round per CPU backend; a fresh round matches the PyTorch reference."""
    benchmark(smoke_round, ReplayBuffer(50, (3, 4, 4), 10, seed=1, backend=backend))
    ours, ref = (smoke_round(ReplayBuffer(50, (3, 4, 4), 10, seed=1, backend=b)) for b in (backend, "torch"))
    assert all(torch.equal(a, b) for a, b in zip(ours, ref))


@pytest.mark.skipif(not available("cpu", "cpp"), reason="extension unavailable")
def test_replay_table_smoke(tmp_path) -> None:
    out = tmp_path / "replay.json"
    result = main(["--smoke", "--json", str(out)])
    assert json.loads(out.read_text()) == result
    rows = result["tables"]["cpu"]["rows"]
    assert len(rows) == 8 and all(r["torch_ms"] > 0 and r["cpp_ms"] > 0 for r in rows)
