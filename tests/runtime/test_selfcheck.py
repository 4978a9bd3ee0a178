"""Fast paths that prove themselves: an ``auto`` backend checks a fast path once per device and dtype against its
reference and uses it only when it passes; a kernel made wrong on purpose, or raising at launch, gives the
reference path and one warning; an explicit backend is never checked; the checks can be switched off; every
choice is recorded for reports.

The Triton kernels run on a CUDA device where there is one (these tests are also marked ``gpu``); on the CPU,
Triton's interpreter stands in for the GPU (``dispatch.KERNEL_DEVICES`` widened to CPU tensors).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from lrwa_fast import ReplayBuffer, ops
from lrwa_fast.ops import dispatch
from lrwa_fast.ops.losses import kd_loss_reference
from lrwa_fast.replay.buffer import _ext, cpp_backend
from lrwa_fast.runtime import selfcheck

needs_ext = pytest.mark.skipif(_ext.module() is None, reason=f"extension unavailable: {_ext.reason()}")
KERNEL_DEVICES = [pytest.param("cpu", id="cpu-interpreter"), pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(autouse=True)
def fresh_checks():
    selfcheck.reset()
    yield
    selfcheck.reset()


@pytest.fixture
def kernel_device(request, monkeypatch) -> str:
    """Where ``auto`` would run the kernels: a CUDA device, or the CPU with Triton's interpreter standing in."""
    pytest.importorskip("triton")
    device = request.param
    if device == "cpu":
        if not dispatch.interpreter_enabled():
            pytest.skip("Triton's interpreter is off (on a CUDA machine the cuda variant runs instead)")
        monkeypatch.setattr(dispatch, "KERNEL_DEVICES", frozenset({"cuda", "cpu"}))
    return device


def wrong_by(factor: float, original):
    """``original`` with its result scaled: a value wrong by a relative ``factor - 1``."""
    return lambda *args, **kwargs: original(*args, **kwargs) * factor


def raising(*args, **kwargs):
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


# ----------------------------------------------------------------------------- the compiled replay backend
def buffer(**kw) -> ReplayBuffer:
    return ReplayBuffer(16, (3,), 5, seed=1, **kw)


@needs_ext
def test_the_compiled_replay_backend_is_checked_once_then_used():
    assert buffer().backend_name == "cpp"
    verdict = selfcheck.verdict("replay_cpp", torch.device("cpu"), torch.float32)
    assert verdict.passed and verdict.error == 0.0
    assert buffer().backend_name == "cpp" and selfcheck.verdict("replay_cpp", torch.device("cpu"),
                                                                torch.float32) is verdict, "checked once"
    assert selfcheck.usage()["replay"][-1] == {"requested": "auto", "used": "cpp",
                                           "why": "auto: cpu buffers, the extension built, check passed"}
    assert buffer(dtype=torch.float16).backend_name == "cpp" and len(selfcheck.verdicts()) == 2, "per dtype"


@needs_ext
@pytest.mark.parametrize(("make_wrong", "found"), [
    (lambda original: lambda *a, **k: (original(*a, **k), a[1].add_(1))[0], r"wrong value: \w+ draw .*differ"),
    (lambda original: raising, "raised RuntimeError: CUDA error: an illegal memory access was encountered"),
])
def test_a_wrong_or_failing_replay_backend_falls_back_with_one_warning(monkeypatch, make_wrong, found):
    monkeypatch.setattr(cpp_backend, "sample", make_wrong(cpp_backend.sample))
    with pytest.warns(RuntimeWarning, match=rf"the fast path replay_cpp failed its check on cpu \(float32\): {found}"
                                            r".*reference path is used instead.*lrwa-fast doctor --json") as caught:
        memory = buffer()
    assert memory.backend_name == "torch" and len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert buffer().backend_name == "torch", "the verdict stands: no second check, no second warning"
    assert "failed its check" in selfcheck.usage()["replay"][-1]["why"]
    x, t = torch.randn(4, 3), torch.randn(4, 5)
    memory.add(x, t)
    reference = buffer(backend="torch")
    reference.add(x, t)
    assert all(torch.equal(a, b) for a, b in zip(memory.sample(3), reference.sample(3)))


@needs_ext
def test_an_explicit_backend_is_not_checked(monkeypatch):
    monkeypatch.setattr(cpp_backend, "sample", raising)
    assert buffer(backend="cpp").backend_name == "cpp"
    assert selfcheck.verdicts() == [] and selfcheck.usage()["replay"][-1]["why"] == "cpp requested (not checked)"
    memory = buffer(backend="cpp")
    memory.add(torch.randn(2, 3), torch.randn(2, 5))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        memory.sample(2)


@needs_ext
def test_the_checks_can_be_switched_off(monkeypatch):
    monkeypatch.setattr(cpp_backend, "sample", raising)
    monkeypatch.setenv(selfcheck.ENV_VAR, "0")
    selfcheck.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert buffer().backend_name == "cpp"
    assert selfcheck.verdicts() == [] and selfcheck.usage()["replay"][-1]["why"].endswith("(checks off)")
    monkeypatch.setenv(selfcheck.ENV_VAR, "maybe")
    selfcheck.reset()
    with pytest.raises(ValueError, match="invalid environment variable LRWA_FAST_SELF_CHECK 'maybe'"):
        buffer()


# ----------------------------------------------------------------------------- the Triton kernels
def logits(device: str, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.randn(5, 9, generator=gen).to(device, dtype).requires_grad_() for _ in range(2))


@pytest.mark.parametrize("kernel_device", KERNEL_DEVICES, indirect=True)
def test_a_correct_kernel_passes_its_check_and_runs(kernel_device):
    s, t = logits(kernel_device)
    loss = ops.kd_loss(s, t, kind="kl", temperature=2.0)
    assert selfcheck.usage()["kd_loss"][-1] == {"requested": "auto", "used": "triton",
                                            "why": "auto: kernel devices and dtypes, check passed"}
    verdict = selfcheck.verdict("kd_loss", s.device, torch.float32)
    assert verdict.passed and 0 <= verdict.error <= 1
    expected = kd_loss_reference(s.double(), t.double(), kind="kl", temperature=2.0)
    torch.testing.assert_close(loss.double(), expected, rtol=2e-5, atol=1e-6)
    ops.grad_cosine([s.detach()], [t.detach()])
    assert selfcheck.usage()["grad_alignment"][-1]["used"] == "triton"


@pytest.mark.parametrize("kernel_device", KERNEL_DEVICES, indirect=True)
@pytest.mark.parametrize(("op", "make_wrong", "found"), [
    ("kd_loss", lambda original: wrong_by(1.001, original), r"wrong value: deviation \d[\d.e+]* times the tolerance"),
    ("kd_loss", lambda original: raising, "raised RuntimeError: CUDA error: an illegal memory access"),
    ("grad_alignment", lambda original: wrong_by(1.001, original), "wrong value"),
])
def test_a_wrong_or_failing_kernel_falls_back_to_the_reference_with_one_warning(kernel_device, monkeypatch, op,
                                                                                  make_wrong, found):
    module, name = {"kd_loss": (dispatch.kernels().kd_loss, "kd_loss_triton"),
                    "grad_alignment": (dispatch.kernels().grad_alignment, "per_tensor_alignment")}[op]
    monkeypatch.setattr(module, name, make_wrong(getattr(module, name)))
    s, t = logits(kernel_device)
    with pytest.warns(RuntimeWarning, match=rf"the fast path {op} failed its check on {kernel_device}\S* "
                                            rf"\(float32\): {found}") as caught:
        value = ops.kd_loss(s, t, kind="js") if op == "kd_loss" else ops.grad_cosine([s.detach()], [t.detach()])
    assert len(caught) == 1 and selfcheck.usage()[op][-1]["used"] == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = ops.kd_loss(s, t, kind="js") if op == "kd_loss" else ops.grad_cosine([s.detach()], [t.detach()])
    reference = ops.kd_loss(s, t, kind="js", backend="torch") if op == "kd_loss" else \
        ops.grad_cosine([s.detach()], [t.detach()], backend="torch")
    assert torch.equal(value, reference) and torch.equal(again, reference), "the reference path, exactly"


@pytest.mark.parametrize("kernel_device", KERNEL_DEVICES, indirect=True)
def test_an_explicit_triton_backend_is_not_checked(kernel_device, monkeypatch):
    monkeypatch.setattr(dispatch.kernels().kd_loss, "kd_loss_triton", raising)
    s, t = logits(kernel_device)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        ops.kd_loss(s, t, backend="triton")
    assert selfcheck.verdicts() == [] and selfcheck.usage()["kd_loss"][-1]["why"] == "triton requested (not checked)"


def test_the_reference_path_is_recorded_with_its_reason():
    s, t = logits("cpu")
    ops.kd_loss(s, t)
    assert selfcheck.usage()["kd_loss"][-1] == {"requested": "auto", "used": "torch",
                                            "why": "auto: tensors on cpu; the kernels run on CUDA"}
    ops.kd_loss(s, t, backend="torch")
    assert selfcheck.usage()["kd_loss"][-1] == {"requested": "torch", "used": "torch", "why": "torch requested"}
    assert len(selfcheck.usage()["kd_loss"]) == 2, "each distinct choice is kept"
    assert selfcheck.describe(selfcheck.usage()) == ("fast paths: kd_loss torch (auto: tensors on cpu; the kernels "
                                                     "run on CUDA); kd_loss torch (torch requested)")
    selfcheck.forget_usage()
    assert selfcheck.usage() == {}
    assert selfcheck.describe({}) == "fast paths: none ran"


@pytest.mark.parametrize("kernel_device", KERNEL_DEVICES, indirect=True)
def test_the_check_runs_with_gradients_whatever_the_callers_mode(kernel_device):
    """A first call under ``no_grad`` or ``inference_mode`` (an evaluation) must not fail the kernel's check."""
    s, t = logits(kernel_device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.inference_mode():
            ops.kd_loss(s.detach(), t.detach(), kind="kl")
        with torch.no_grad():
            ops.grad_cosine([s.detach()], [t.detach()])
    assert selfcheck.usage()["kd_loss"][-1]["used"] == "triton"
    assert selfcheck.usage()["grad_alignment"][-1]["used"] == "triton"


@needs_ext
def test_the_replay_check_covers_the_conversions_a_half_memory_makes(monkeypatch):
    """A memory kept in fp16 is given fp32 rows and drawn into fp32: a backend converting them wrongly fails."""
    original = cpp_backend.insert

    def converts_wrongly(storage, x, logits, **kw):
        if x.dtype != storage.x.dtype:
            x = x * 1.5
        return original(storage, x, logits, **kw)

    monkeypatch.setattr(cpp_backend, "insert", converts_wrongly)
    assert buffer().backend_name == "cpp", "a storage of the rows' own dtype converts nothing"
    with pytest.warns(RuntimeWarning, match=r"replay_cpp failed its check on cpu \(float16\): wrong value: "
                                            r"reservoir insert 0 of torch\.float32 rows"):
        assert buffer(dtype=torch.float16).backend_name == "torch"
