"""Replay-memory backends: the compiled extension (``cpp`` on CPU, ``cuda`` on GPU) must equal the
PyTorch reference bit for bit, keep the statistics of the policies, reject bad input without
changing the buffer, and share its state with the reference.

Statistical tests use fixed seeds and significance level ALPHA: with a correct buffer each fails
with probability ALPHA, and always the same way for the same seed.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
from scipy import stats

from lrwa_fast import ReplayBuffer
from lrwa_fast.replay.buffer import ReplayBackend, _ext, backends
from lrwa_fast.replay.buffer.philox import philox_u32
from lrwa_fast.runtime import warn_once

ALPHA = 1e-3
EXT = _ext.module()

NO_BUILD_VAR = "LRWA_FAST_NO_EXTENSION"  # read by setup.py only: skips building the extension
needs_ext = pytest.mark.skipif(EXT is None, reason=f"extension unavailable: {_ext.reason()}")
needs_cuda_ext = pytest.mark.skipif(not _ext.has_cuda(), reason="needs the extension's CUDA kernels")
BACKENDS = ["torch", pytest.param("cpp", marks=needs_ext)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
# 1 + 2^-11 + 2^-40 rounds differently when converted to half directly or through float32
TIE = 1 + 2**-11 + 2**-40


def make(backend: str, capacity: int = 8, policy: str = "reservoir", seed: int = 0,
         shape: tuple[int, ...] = (3,), classes: int = 4, **kw) -> ReplayBuffer:
    return ReplayBuffer(capacity, shape, classes, policy=policy, seed=seed, backend=backend, **kw)


def items(start: int, n: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Batch whose rows carry their item number (x) and item number + 0.5 (logits)."""
    ids = torch.arange(start, start + n, dtype=torch.float32, device=device)
    return ids[:, None].expand(n, 3).clone(), (ids + 0.5)[:, None].expand(n, 4).clone()


def stored_ids(buf: ReplayBuffer) -> list[int]:
    return sorted(int(v) for v in buf.storage.x[: len(buf), 0])


def random_batch(gen: torch.Generator, n: int, shape: tuple[int, ...], classes: int,
                 k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch number ``k``: mixed input dtypes, sometimes non-contiguous, with a rounding tie."""
    x = torch.randn(n, *shape, generator=gen, dtype=torch.float64)
    x.view(n, -1)[:, 0] = TIE
    logits = torch.randn(n, classes, generator=gen, dtype=torch.float64).to(DTYPES[k % len(DTYPES)])
    if k % 3 == 1:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)  # same values, non-contiguous
    return x, logits


def run_script(buf: ReplayBuffer, batches: list[int], *, replace: bool, device: str = "cpu") -> list:
    """Add random batches of the given sizes and sample after each; everything observed."""
    gen = torch.Generator().manual_seed(11)
    seen = []
    for k, n in enumerate(batches):
        x, logits = random_batch(gen, n, buf.sample_shape, buf.num_classes, k)
        buf.add(x.to(device), logits.to(device), step=10 * k)
        draws = min(len(buf), 2 + k) if not replace else 3 + 2 * k
        seen.append(buf.sample_with_indices(draws, replace=replace, dtype=DTYPES[k % len(DTYPES)]))
        seen.append({name: t.clone() for name, t in buf.storage.tensors().items()})
    key = torch.Generator().manual_seed(3)
    seen.append(buf.sample_with_indices(5, key, replace=True))
    return seen


def assert_identical(a: list, b: list) -> None:
    """Bit-for-bit equality (values, dtypes, shapes) of two run_script records."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        pairs = zip(ra.values(), rb.values()) if isinstance(ra, dict) else zip(ra, rb)
        for ta, tb in pairs:
            assert ta.dtype == tb.dtype and ta.shape == tb.shape
            assert torch.equal(ta.cpu(), tb.cpu())


def test_extension_is_built():
    """The extension must import unless the install skipped it on purpose (LRWA_FAST_NO_EXTENSION=1)."""
    if os.environ.get(NO_BUILD_VAR) == "1":
        pytest.skip(f"{NO_BUILD_VAR}=1: setup.py skipped the build")
    assert EXT is not None, (f"{_ext.MODULE_NAME} did not import ({_ext.reason()}); build it with "
                             f"`pip install --no-build-isolation -e .` or install with {NO_BUILD_VAR}=1")
    assert make("auto").backend_name == "cpp"


@needs_ext
def test_philox_header_matches_python():
    gen = torch.Generator().manual_seed(0)
    counters = torch.randint(0, 2**32, (4096,), generator=gen)
    for key, c1, c2, c3 in [(0, 0, 0, 0), (2**64 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1),
                            (0x299F31D0A4093822, 0x85A308D3, 0x13198A2E, 0x03707344), (12345, 7, 3, 2)]:
        assert torch.equal(EXT.philox_u32(key, counters, c1, c2, c3), philox_u32(key, counters, c1, c2, c3))
    assert int(EXT.philox_u32(0, torch.tensor([0]))[0]) == 0x6627E8D5


@needs_ext
@pytest.mark.parametrize("policy", ["fifo", "reservoir"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("replace", [True, False])
def test_cpp_equals_torch_bit_for_bit(policy, dtype, replace):
    batches = [1, 3, 2, 9, 1, 40, 4, 17]  # includes batches larger than the capacity
    for capacity in (1, 5, 16):
        runs = [run_script(make(b, capacity, policy, seed=capacity, shape=(2, 3), classes=5, dtype=dtype),
                           batches, replace=replace) for b in ("torch", "cpp")]
        assert_identical(*runs)


@needs_ext
def test_parallel_paths_equal_torch():
    """Batches and fills large enough that the extension splits the work across threads."""
    for policy in ("fifo", "reservoir"):
        a, b = (make(name, 300, policy, seed=4, shape=(3, 32, 32), classes=100) for name in ("torch", "cpp"))
        x, logits = torch.randn(700, 3, 32, 32), torch.randn(700, 100)
        for buf in (a, b):
            buf.add(x, logits)
        assert torch.equal(a.storage.x, b.storage.x) and torch.equal(a.storage.logits, b.storage.logits)
        for n, replace in ((256, True), (300, False)):
            for ra, rb in zip(a.sample_with_indices(n, replace=replace, dtype=torch.float16),
                              b.sample_with_indices(n, replace=replace, dtype=torch.float16)):
                assert torch.equal(ra, rb)
    a, b = (make(name, 40_000, "fifo", shape=(1,), classes=1) for name in ("torch", "cpp"))
    for buf in (a, b):
        buf.add(torch.arange(40_000.0)[:, None], torch.zeros(40_000, 1))
    slots = [buf.sample_with_indices(100, replace=False)[2] for buf in (a, b)]
    assert torch.equal(*slots)


@needs_ext
def test_cpp_reservoir_batched_equals_one_by_one():
    batched, single = make("cpp", 7, seed=3), make("cpp", 7, seed=3)
    start = 0
    for n in [5, 1, 9, 30, 2, 17]:
        batched.add(*items(start, n))
        for i in range(start, start + n):
            single.add(*items(i, 1), step=batched.adds - 1)
        start += n
    for name, t in batched.storage.tensors().items():
        assert torch.equal(t, single.storage.tensors()[name]), name


def _inclusion_counts(backend: str, n_items: int, capacity: int, trials: int, batch: int) -> torch.Tensor:
    counts = torch.zeros(n_items)
    for seed in range(trials):
        buf = make(backend, capacity, seed=seed)
        for start in range(0, n_items, batch):
            buf.add(*items(start, min(batch, n_items - start)))
        counts[stored_ids(buf)] += 1
    return counts


@needs_ext
def test_cpp_reservoir_keeps_every_item_with_equal_probability():
    """Over independent buffers, each of 60 items ends in a 10-slot memory equally often
    (batches of 12 are larger than the capacity)."""
    counts = _inclusion_counts("cpp", n_items=60, capacity=10, trials=1500, batch=12)
    assert counts.sum() == 1500 * 10
    p = stats.chisquare(counts.numpy()).pvalue
    assert p > ALPHA, f"reservoir inclusion not uniform (p={p:.2e})"


@needs_ext
@pytest.mark.slow
def test_cpp_reservoir_inclusion_large():
    counts = _inclusion_counts("cpp", n_items=500, capacity=50, trials=4000, batch=64)
    p = stats.chisquare(counts.numpy()).pvalue
    assert p > ALPHA, f"reservoir inclusion not uniform (p={p:.2e})"


@needs_ext
@pytest.mark.parametrize("backend", BACKENDS)
def test_capacity_one_and_big_batches(backend):
    fifo = make(backend, 1, "fifo")
    fifo.add(*items(0, 5))
    assert stored_ids(fifo) == [4]
    x, logits, idx = fifo.sample_with_indices(3)
    assert idx.tolist() == [0, 0, 0] and x[:, 0].tolist() == [4.0] * 3 and logits[0, 0] == 4.5
    assert fifo.sample(1, replace=False)[0][0, 0] == 4
    big = make(backend, 5, "fifo")
    big.add(*items(0, 23))
    assert stored_ids(big) == [18, 19, 20, 21, 22] and len(big) == 5 and big.seen == 23


@pytest.mark.parametrize("backend", BACKENDS)
def test_draw_counts_beyond_the_fill(backend):
    buf = make(backend, 10)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(1)
    buf.add(*items(0, 3))
    assert set(buf.sample(50)[0][:, 0].long().tolist()) <= {0, 1, 2}
    assert sorted(buf.sample(3, replace=False)[0][:, 0].tolist()) == [0, 1, 2]
    _unchanged_after(buf, lambda: buf.sample(4, replace=False))
    _unchanged_after(buf, lambda: buf.sample(0))


def _unchanged_after(buf: ReplayBuffer, action: Callable[[], object], match: str | None = None) -> None:
    before = buf.state_dict()
    with pytest.raises(ValueError, match=match):
        action()
    after = buf.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]) if isinstance(v, torch.Tensor) else v == after[k], k


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make_batch, match", [
    (lambda: (torch.zeros(2, 4), torch.zeros(2, 4)), "x must have shape"),
    (lambda: (torch.zeros(2, 3), torch.zeros(2, 5)), "teacher_logits must have shape"),
    (lambda: (torch.zeros(2, 3), torch.zeros(3, 4)), "rows"),
    (lambda: (torch.zeros(2, 3, dtype=torch.int32), torch.zeros(2, 4)), "floating point"),
    (lambda: (torch.zeros(0, 3), torch.zeros(0, 4)), "empty"),
    (lambda: (torch.zeros(2, 3, device="meta"), torch.zeros(2, 4)), "buffer lives on"),
])
def test_bad_batches_raise_and_leave_the_buffer_unchanged(backend, make_batch, match):
    buf = make(backend, 5)
    buf.add(*items(0, 3))
    _unchanged_after(buf, lambda: buf.add(*make_batch()), match)


@needs_ext
def test_extension_checks_its_arguments():
    """Direct calls with mismatched tensors get a ValueError from the binding, storage untouched."""
    buf = make("cpp", 4)
    buf.add(*items(0, 2))
    s = buf.storage
    before = s.x.clone()
    bad_inserts = [
        (s.x, s.logits, s.inserted_at, torch.zeros(2, 4), torch.zeros(2, 4)),
        (s.x, s.logits, s.inserted_at, torch.zeros(2, 3), torch.zeros(3, 4)),
        (s.x, s.logits, s.inserted_at.int(), torch.zeros(2, 3), torch.zeros(2, 4)),
        (s.x, s.logits, s.inserted_at, torch.zeros(2, 3, dtype=torch.float8_e4m3fn), torch.zeros(2, 4)),
        (s.x.t().contiguous().t(), s.logits, s.inserted_at, torch.zeros(2, 3), torch.zeros(2, 4)),
    ]
    for args in bad_inserts:
        with pytest.raises(ValueError):
            EXT.insert(*args, reservoir=True, seen=2, seed=0, step=0)
    for n, fill, replace in [(0, 2, True), (3, 2, False), (1, 5, True), (1, 0, True)]:
        with pytest.raises(ValueError):
            EXT.sample(s.x, s.logits, torch.zeros(n, 3), torch.zeros(n, 4), fill, replace, 0, 0)
    bad_outputs = [
        ((torch.zeros(2, 4), torch.zeros(2, 4)), "out_x must have shape"),
        ((torch.zeros(2, 3), torch.zeros(3, 4)), "out_logits must have shape"),
        ((torch.zeros(2, 3), torch.zeros(2, 5)), "out_logits must have shape"),
        ((torch.zeros(3, 2).t(), torch.zeros(2, 4)), "contiguous"),
        ((torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 4)), "out_x has dtype"),
        ((s.x[2:4], torch.zeros(2, 4)), "share memory with the storage"),
        ((torch.zeros(2, 3), s.logits[:2]), "share memory with the storage"),
    ]
    shared = torch.zeros(14)
    bad_outputs.append(((shared[:6].view(2, 3), shared[6:].view(2, 4)), "must not share memory"))
    for (out_x, out_logits), message in bad_outputs:
        with pytest.raises(ValueError, match=message):
            EXT.sample(s.x, s.logits, out_x, out_logits, 2, True, 0, 0)
    assert torch.equal(before, s.x)


@needs_ext
@pytest.mark.parametrize("first, second", [("cpp", "torch"), ("torch", "cpp")])
def test_state_dict_moves_between_backends(first, second):
    """Save from one backend, load into the other, continue: same results as staying put."""
    for policy in ("reservoir", "fifo"):
        a = make(first, 9, policy, seed=7, dtype=torch.bfloat16)
        for start in range(0, 50, 6):
            a.add(*items(start, 6))
        a.sample(4)
        a.sample(3, replace=False)
        b = make(second, 9, policy, seed=123, dtype=torch.bfloat16)
        b.load_state_dict(a.state_dict())
        for buf in (a, b):
            buf.add(*items(100, 13))
        for name, t in a.storage.tensors().items():
            assert torch.equal(t, b.storage.tensors()[name]), name
        for replace in (True, False):
            draws = [buf.sample_with_indices(6, replace=replace) for buf in (a, b)]
            assert all(torch.equal(ra, rb) for ra, rb in zip(*draws))


def test_backend_selection_and_errors():
    cpu = torch.device("cpu")
    assert backends.resolve_backend("torch", cpu)[0] == "torch"
    with pytest.raises(ValueError, match=r"invalid backend argument 'numba'; expected one of \("):
        make("numba")
    with pytest.raises(ValueError, match="not on cpu"):
        make("cuda")  # a CPU buffer cannot use the CUDA kernels
    with pytest.raises(ValueError, match="not on meta"):
        ReplayBuffer(4, (3,), 4, device="meta", backend="cpp")
    assert make("auto").backend_name == ("cpp" if EXT is not None else "torch")


def test_missing_extension_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(_ext, "_load", lambda: (None, "ImportError: simulated"))
    monkeypatch.setattr(warn_once, "_issued", set())
    with pytest.warns(RuntimeWarning, match=r"simulated.*PyTorch replay backend") as record:
        assert make("auto").backend_name == "torch"
        assert make("auto").backend_name == "torch"
    assert len(record) == 1
    assert f"set {backends.ENV_VAR}=torch" in str(record[0].message)
    with pytest.raises(ValueError, match=r"unavailable.*simulated"):
        make("cpp")


def test_torch_chosen_by_env_var_falls_back_silently(monkeypatch, recwarn):
    """``LRWA_FAST_MEMORY_BACKEND=torch`` is the extension disabled on purpose: no import, no warning."""
    attempts = []
    monkeypatch.setattr(_ext, "_load", lambda: attempts.append(1) or (None, "ImportError: simulated"))
    monkeypatch.setattr(warn_once, "_issued", set())
    monkeypatch.setenv(backends.ENV_VAR, "torch")
    assert ReplayBuffer(4, (3,), 4).backend_name == "torch"
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)] and not attempts


def test_env_var_and_argument(monkeypatch):
    """``"auto"`` (the default) and ``None`` read the variable; a named backend overrides it."""
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    assert backends.requested_backend() == "auto"
    assert ReplayBuffer(4, (3,), 4).backend_name == make("auto").backend_name
    monkeypatch.setenv(backends.ENV_VAR, "torch")
    assert backends.requested_backend() == "torch" and backends.requested_backend("cpp") == "cpp"
    assert ReplayBuffer(4, (3,), 4).backend_name == "torch"
    monkeypatch.setenv(backends.ENV_VAR, "cuda")
    with pytest.raises(ValueError, match="not on cpu"):
        ReplayBuffer(4, (3,), 4)
    if EXT is not None:
        monkeypatch.setenv(backends.ENV_VAR, "cpp")
        assert ReplayBuffer(4, (3,), 4).backend_name == "cpp"
        monkeypatch.setenv(backends.ENV_VAR, "torch")
        assert make("auto").backend_name == "torch" and make("cpp").backend_name == "cpp"


@pytest.mark.parametrize("where", ["env", "argument"])
def test_invalid_backend_names_the_valid_ones(monkeypatch, where):
    """Worded as the kernel dispatcher words ``LRWA_FAST_BACKEND`` errors."""
    monkeypatch.setenv(backends.ENV_VAR, "triton" if where == "env" else "torch")
    source = f"environment variable {backends.ENV_VAR}" if where == "env" else "backend argument"
    message = f"invalid {source} 'triton'; expected one of ('auto', 'torch', 'cpp', 'cuda')"
    with pytest.raises(ValueError, match=re.escape(message)):
        ReplayBuffer(4, (3,), 4, backend=None if where == "env" else "triton")


@pytest.mark.parametrize("name", ["torch", "cpp", "cuda"])
def test_backends_satisfy_the_protocol(name):
    """Each implementation has the protocol's operations with the very same signatures."""
    impl = backends.IMPLEMENTATIONS[name]
    assert isinstance(impl, ReplayBackend)
    for op in ("insert", "sample"):
        want, got = inspect.signature(getattr(ReplayBackend, op)), inspect.signature(getattr(impl, op))
        assert list(got.parameters.values()) == list(want.parameters.values())[1:], op  # less self
        assert got.return_annotation == want.return_annotation, op
    assert not isinstance(SimpleNamespace(insert=print), ReplayBackend)


@pytest.mark.gpu
@needs_cuda_ext
@pytest.mark.parametrize("policy", ["fifo", "reservoir"])
@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_equals_cpp(policy, replace, dtype):
    batches = [1, 3, 2, 9, 1, 40, 4, 17]
    for capacity in (1, 5, 16):
        kw = dict(seed=capacity, shape=(2, 3), classes=5, dtype=dtype)
        cpu, gpu = make("cpp", capacity, policy, **kw), make("cuda", capacity, policy, device="cuda", **kw)
        assert_identical(run_script(cpu, batches, replace=replace),
                         run_script(gpu, batches, replace=replace, device="cuda"))


@pytest.mark.gpu
@needs_cuda_ext
def test_cuda_backend_never_synchronises():
    buf = make("cuda", 1000, shape=(3, 8, 8), classes=10, device="cuda", dtype=torch.float16)
    x, logits = torch.randn(300, 3, 8, 8, device="cuda"), torch.randn(300, 10, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            buf.add(x, logits)
            buf.sample(64)
            buf.sample(64, replace=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(buf) == 1000 and buf.backend_name == "cuda"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_sample_into_preallocated_outputs(backend, dtype):
    """``out=`` writes the very tensors given (no new storage) with the values a fresh draw gives."""
    buf, twin = make(backend, 16, seed=2), make(backend, 16, seed=2)
    for b in (buf, twin):
        b.add(*items(0, 11))
    out = (torch.full((5, 3), float("nan"), dtype=dtype), torch.full((5, 4), float("nan"), dtype=dtype))
    pointers = [t.data_ptr() for t in out]
    for _ in range(3):
        x, logits = buf.sample(5, dtype=dtype, out=out)
        want_x, want_logits = twin.sample(5, dtype=dtype)
        assert x is out[0] and logits is out[1] and [t.data_ptr() for t in out] == pointers
        assert torch.equal(x, want_x) and torch.equal(logits, want_logits)
    x, logits, slots = buf.sample_with_indices(11, replace=False, dtype=dtype,
                                               out=(torch.empty(11, 3, dtype=dtype), torch.empty(11, 4, dtype=dtype)))
    assert sorted(slots.tolist()) == list(range(11))
    assert torch.equal(x[:, 0].double() + 0.5, logits[:, 0].double())


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_rejects_unfit_outputs_and_draws_nothing(backend):
    buf = make(backend, 8, seed=1)
    buf.add(*items(0, 6))
    draws = buf.draws
    good = (torch.empty(4, 3), torch.empty(4, 4))
    base = torch.empty(28)
    bad = {
        "shape": ((torch.empty(4, 2), good[1]), r"shape \(4, 3\)"),
        "rows": ((good[0], torch.empty(5, 4)), r"shape \(4, 4\)"),
        "dtype": ((good[0], torch.empty(4, 4, dtype=torch.float64)), "torch.float32"),
        "contiguity": ((torch.empty(3, 4).t(), good[1]), "not contiguous"),
        "device": ((torch.empty(4, 3, device="meta"), good[1]), r"on cpu, got torch.float32 \(4, 3\) on meta"),
        "grad": ((good[0], torch.empty(4, 4, requires_grad=True)), "requires grad"),
        "pair": ((good[0],), "pair of tensors"),
        "storage": ((buf.storage.x[:4], good[1]), "share memory"),
        "each other": ((base[:12].view(4, 3), base[12:].view(4, 4)), "share memory"),
    }
    for out, message in bad.values():
        with pytest.raises(ValueError, match=message):
            buf.sample(4, out=out)
    with pytest.raises(ValueError, match=r"torch\.float16"):
        buf.sample(4, dtype=torch.float16, out=good)
    assert buf.draws == draws and torch.equal(buf.storage.x[:6, 0], torch.arange(6.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_redrawing_into_outputs_a_graph_saved_is_caught_by_autograd(backend):
    """Drawing again into tensors a live graph saved must not back-propagate stale values silently
    (the extension writes through raw pointers, so it bumps their version counters)."""
    buf = make(backend, 8, seed=1)
    buf.add(*items(0, 6))
    out = (torch.empty(4, 3), torch.empty(4, 4))
    w = torch.ones(3, requires_grad=True)
    loss = (buf.sample(4, out=out)[0] * w).sum()  # saves out[0] for the gradient of w
    buf.sample(4, out=out)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("backend", BACKENDS)
def test_buffer_device_is_the_one_its_tensors_report(backend):
    """A device named without the form tensors report (``cpu:0`` here; ``cuda`` for ``cuda:0`` on a
    GPU) still accepts batches from that device."""
    buf = make(backend, 4, device="cpu:0")
    assert buf.device == buf.storage.x.device == torch.device("cpu")
    buf.add(*items(0, 2))
    assert len(buf) == 2
