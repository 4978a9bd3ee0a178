"""Backend selection: environment variable and argument, device rules, and the fallback when Triton
is missing (one warning, reference results, no crash). The kernels themselves are replaced by
spies here, so these tests need no Triton."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lrwa_fast import ops
from lrwa_fast.ops import dispatch
from lrwa_fast.ops.alignment import grad_alignment_reference
from lrwa_fast.ops.losses import kd_loss_reference
from lrwa_fast.runtime import warn_once
from tests.support import ROOT

CPU = torch.zeros(2, 3)
CUDA_LIKE = SimpleNamespace(device=torch.device("cuda"), dtype=torch.float32)  # all resolve() reads


@pytest.fixture(autouse=True)
def clean_state(monkeypatch):
    """No backend or interpreter setting from outside, and a fresh once-per-process warning."""
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(warn_once, "_issued", set())


@pytest.fixture
def spies(monkeypatch):
    """Kernel entry points replaced by recorders; Triton reported available."""
    calls = []

    def kd_spy(s, t, kind, temperature, reduction):
        calls.append("kd_loss")
        return kd_loss_reference(s, t, kind=kind, temperature=temperature, reduction=reduction)

    def align_spy(a, b):
        calls.append("grad_alignment")
        return grad_alignment_reference(a, b)[3]

    fake = SimpleNamespace(kd_loss=SimpleNamespace(kd_loss_triton=kd_spy),
                           grad_alignment=SimpleNamespace(per_tensor_alignment=align_spy))
    monkeypatch.setattr(dispatch, "triton_available", lambda: True)
    monkeypatch.setattr(dispatch, "kernels", lambda: fake)
    return calls


def unavailable(monkeypatch) -> None:
    monkeypatch.setattr(dispatch, "triton_available", lambda: False)
    monkeypatch.setitem(dispatch._state, "cause", "ModuleNotFoundError: No module named 'triton'")


def test_env_var_and_argument(monkeypatch):
    assert dispatch.requested_backend() == "auto"
    monkeypatch.setenv(dispatch.ENV_VAR, "torch")
    assert dispatch.requested_backend() == "torch"
    assert dispatch.requested_backend("triton") == "triton"  # a named backend overrides the variable
    assert dispatch.requested_backend("auto") == dispatch.requested_backend(None) == "torch"  # auto defers to it


@pytest.mark.parametrize("where", ["env", "argument"])
def test_invalid_value_names_the_valid_ones(monkeypatch, where):
    if where == "env":
        monkeypatch.setenv(dispatch.ENV_VAR, "cuda")
    with pytest.raises(ValueError, match=r"'auto', 'torch', 'triton'"):
        dispatch.resolve([CPU], None if where == "env" else "fast")


def test_rules_on_cpu(monkeypatch, spies):
    assert dispatch.resolve([CPU]) == "torch"
    assert dispatch.resolve([CPU], "torch") == "torch"
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        dispatch.resolve([CPU], "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert dispatch.resolve([CPU], "triton") == "triton"
    assert dispatch.resolve([CPU]) == "torch"  # auto never interprets
    assert dispatch.resolve([], "triton") == "torch"  # nothing to launch


def test_rules_on_cuda(monkeypatch, spies):
    assert dispatch.resolve([CUDA_LIKE, CUDA_LIKE]) == "triton"
    assert dispatch.resolve([CUDA_LIKE], "triton") == "triton"
    monkeypatch.setenv(dispatch.ENV_VAR, "torch")
    assert dispatch.resolve([CUDA_LIKE]) == "torch"
    with pytest.raises(RuntimeError, match="cpu"):
        dispatch.resolve([CUDA_LIKE, CPU], "triton")
    assert dispatch.resolve([CUDA_LIKE, CPU]) == "torch"


def cuda_like(dtype: torch.dtype) -> SimpleNamespace:
    return SimpleNamespace(device=torch.device("cuda"), dtype=dtype)


@pytest.mark.parametrize(("dtypes", "want"), [
    ((torch.float32,), "triton"), ((torch.float16,), "triton"), ((torch.bfloat16,), "triton"),
    ((torch.float32, torch.float16, torch.bfloat16), "triton"), ((torch.float64,), "torch"),
    ((torch.int64,), "torch"), ((torch.float32, torch.float64), "torch"), ((torch.float16, torch.int32), "torch"),
])
@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_dtype_rule(monkeypatch, spies, dtypes, want, backend):
    assert dispatch.resolve([cuda_like(d) for d in dtypes], backend) == want
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    on_cpu = dispatch.resolve([torch.zeros(2, dtype=d) for d in dtypes], backend)
    assert on_cpu == (want if backend == "triton" else "torch")


def test_dtype_rule_follows_the_device_rule(monkeypatch, spies):
    """float64 under ``triton``: CPU tensors without the interpreter still raise, as before."""
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        dispatch.resolve([CPU.double()], "triton")


def test_no_warning_when_the_dtype_rules_out_the_kernels(monkeypatch):
    unavailable(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch.resolve([cuda_like(torch.float64)], "triton") == "torch"
        assert dispatch.resolve([CUDA_LIKE, cuda_like(torch.float64)]) == "torch"


@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_missing_triton_warns_once_and_falls_back(monkeypatch, backend):
    unavailable(monkeypatch)
    with pytest.warns(RuntimeWarning, match="No module named 'triton'.*PyTorch reference") as record:
        assert dispatch.resolve([CUDA_LIKE], backend) == "torch"
        assert dispatch.resolve([CUDA_LIKE], backend) == "torch"
    assert len(record) == 1


def test_no_warning_when_kernels_were_not_wanted(monkeypatch):
    unavailable(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch.resolve([CPU]) == "torch"
        assert dispatch.resolve([CUDA_LIKE], "torch") == "torch"


def test_ops_follow_env_and_argument(monkeypatch, spies):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    s, t = torch.randn(3, 5), torch.randn(3, 5)
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    ops.kd_loss(s, t)
    ops.grad_alignment([s], [t])
    assert spies == ["kd_loss", "grad_alignment"]
    ops.kd_loss(s, t, backend="torch")
    ops.grad_cosine([s], [t], backend="torch")
    monkeypatch.setenv(dispatch.ENV_VAR, "torch")
    ops.kd_loss(s, t)
    assert spies == ["kd_loss", "grad_alignment"]
    ops.kd_loss(s.double(), t.double(), backend="triton")  # float64 always takes the reference
    assert spies == ["kd_loss", "grad_alignment"]


def test_ops_fall_back_with_missing_triton(monkeypatch):
    unavailable(monkeypatch)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    s, t = torch.randn(3, 5), torch.randn(3, 5)
    with pytest.warns(RuntimeWarning) as record:
        got = ops.kd_loss(s, t, kind="js", backend="triton")
        cos = ops.grad_cosine([s], [t], backend="triton")
    assert len(record) == 1
    torch.testing.assert_close(got, kd_loss_reference(s, t, kind="js"))
    torch.testing.assert_close(cos, torch.nn.functional.cosine_similarity(s.flatten(), t.flatten(), dim=0))


def test_triton_import_blocked_in_a_fresh_process():
    """A real failed import: package importable, one warning, reference results."""
    script = textwrap.dedent("""
        import sys, warnings
        sys.modules["triton"] = None
        import torch
        import lrwa_fast.ops.dispatch as d
        from lrwa_fast import ops
        from lrwa_fast.ops.losses import kd_loss_reference
        d._import_kernel_package()
        assert not d.triton_available()
        s, t = torch.randn(3, 4), torch.randn(3, 4)
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            out = [ops.kd_loss(s, t, backend="triton") for _ in range(3)]
        assert len(rec) == 1 and rec[0].category is RuntimeWarning, rec
        assert "triton" in str(rec[0].message), rec[0].message
        assert torch.equal(out[0], kd_loss_reference(s, t))
        print("ok")
    """)
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    env.pop(dispatch.ENV_VAR, None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_triton_available_is_cached(monkeypatch):
    if not torch.cuda.is_available():  # a first load here must pick the interpreter, as the kernel tests do
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    first = dispatch.triton_available()
    assert dispatch.triton_available() is first
    assert dispatch._load_kernels.cache_info().hits >= 1


@pytest.mark.parametrize(("value", "on"),
                         [("1", True), ("True", True), ("yes", True), ("0", False), ("", False)])
def test_interpreter_flag_parsed_like_triton(monkeypatch, value, on):
    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert dispatch.interpreter_enabled() is on


def test_one_parser_of_the_interpreter_flag(monkeypatch):
    """dispatch reads ``TRITON_INTERPRET`` through the kernel package, which imports no Triton."""
    monkeypatch.setattr(dispatch._import_kernel_package(), "interpreter_enabled", lambda: True)
    assert dispatch.interpreter_enabled() is True  # the variable itself is unset here


def test_kernel_package_imports_neither_triton_nor_lrwa_fast():
    """Loaded alone from its file, ``kernels/`` imports only torch: no Triton, and no lrwa_fast module
    (importing any would run ``lrwa_fast/__init__``, whose ops import the dispatcher)."""
    script = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("lrwa_fast.kernels", {str(ROOT / "kernels" / "__init__.py")!r})
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("triton", "lrwa_fast"))
        assert not loaded, loaded
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def lrwa_fast_imports(path: Path) -> set[str]:
    """Modules of ``lrwa_fast`` that the file at ``path`` imports (absolute imports)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "lrwa_fast":
            found |= {f"lrwa_fast.{alias.name}" for alias in node.names}  # from lrwa_fast import dispatch
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] == "lrwa_fast"}


def test_kernel_modules_do_not_import_the_dispatcher():
    """No import cycle: kernel modules may use the torch-only reference losses, never dispatch or ops."""
    for path in sorted((ROOT / "kernels").glob("*.py")):
        assert lrwa_fast_imports(path) <= {"lrwa_fast.ops.losses"}, (path.name, lrwa_fast_imports(path))


def test_compiled_kernels_refuse_cpu_tensors():
    package = dispatch._import_kernel_package()  # needs no Triton
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1 before the first kernel call"):
        package.check_launchable(False, CPU)
    package.check_launchable(True, CPU)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_kd_arguments_are_checked_once_per_call(monkeypatch, backend):
    """The public entry checks; neither the reference path nor the kernel checks again."""
    from lrwa_fast.ops import fused, losses

    calls = []
    original = losses.check_kd_args

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(losses, "check_kd_args", counting)
    monkeypatch.setattr(fused, "check_kd_args", counting)
    if backend == "triton" and not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    s, t = torch.randn(3, 5, requires_grad=True), torch.randn(3, 5)
    ops.kd_loss(s, t, kind="kl", backend=backend).backward()
    assert len(calls) == 1
