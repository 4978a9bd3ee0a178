"""``lrwa-fast doctor`` as a new user runs it: the environment, each fast path's verdict against its reference
here, its deviation and speed; exit 1 when a fast path is wrong, fails or is installed but broken (each
simulated: a kernel made wrong, one raising at launch, an extension that fails to import), 0 otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from lrwa_fast.apps.cli import main
from lrwa_fast.apps.doctor import format_doctor
from lrwa_fast.ops import dispatch
from lrwa_fast.replay.buffer import _ext, cpp_backend
from lrwa_fast.runtime import selfcheck
from tests.support import subprocess_env

needs_ext = pytest.mark.skipif(_ext.module() is None, reason=f"extension unavailable: {_ext.reason()}")


@pytest.fixture(autouse=True, params=["here", pytest.param("gpu", marks=pytest.mark.gpu)])
def fresh_checks(request):
    """Every test on this machine, and again as a ``gpu`` test (``-m gpu`` runs these unchanged on a CUDA one)."""
    selfcheck.reset()
    yield
    selfcheck.reset()


KERNELS_ON = "cuda" if torch.cuda.is_available() else "cpu"  # where doctor checks the kernels in this test suite


def rows(capsys) -> dict[tuple[str, str], dict]:
    report = json.loads(capsys.readouterr().out)
    return {(r["path"], r["dtype"]): r for r in report["fast_paths"]}, report


def test_doctor_on_this_machine(capsys):
    """Without CUDA the test suite runs Triton in its interpreter: the kernels are checked on the CPU (not timed)."""
    assert main(["doctor", "--json"]) == 0
    found, report = rows(capsys)
    env = report["environment"]
    assert env["torch"] and env["self_check"] == "on" and report["ok"] is True
    assert env["triton_interpreter"] is (KERNELS_ON == "cpu") and bool(env["devices"]) is (KERNELS_ON == "cuda")
    for dtype in ("float32", "float16", "bfloat16"):
        for path in ("kd_loss", "grad_alignment"):
            assert found[(path, dtype)]["status"] == "pass" and found[(path, dtype)]["error"] <= 1
        if _ext.module() is not None:
            cpp = found[("replay_cpp", dtype)]
            assert cpp["status"] == "pass" and cpp["error"] == 0 and cpp["speedup"] > 0
        assert found[("replay_cuda", dtype)]["status"] in ("not run", "pass")
    table = format_doctor(report)
    assert "| fast path | device | dtype | verdict |" in table and "agrees with its reference" in table


def test_without_a_gpu_or_the_interpreter_the_kernels_are_not_run(tmp_path):
    env = {k: v for k, v in subprocess_env().items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-m", "lrwa_fast", "doctor", "--no-speed"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    if not torch.cuda.is_available():
        assert "| kd_loss | - | float32 | not run |" in done.stdout and "TRITON_INTERPRET=1" in done.stdout


def wrong(original):
    return lambda *args, **kwargs: original(*args, **kwargs) * 1.01


def raising(*args, **kwargs):
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


@pytest.mark.parametrize(("target", "make", "status_line"), [
    ("kd_loss", wrong, f"| kd_loss | {KERNELS_ON} | float32 | FAIL |"),
    ("kd_loss", lambda original: raising, "raised RuntimeError: CUDA error: an illegal memory access"),
    ("grad_alignment", wrong, f"| grad_alignment | {KERNELS_ON} | bfloat16 | FAIL |"),
    pytest.param("replay", lambda original: lambda *a, **k: (original(*a, **k), a[2].add_(1))[0],
                 "| replay_cpp | cpu | float16 | FAIL |", marks=needs_ext),
])
def test_a_wrong_or_failing_fast_path_makes_doctor_fail(monkeypatch, capsys, target, make, status_line):
    module, name = {"kd_loss": (dispatch.kernels().kd_loss, "kd_loss_triton"),
                    "grad_alignment": (dispatch.kernels().grad_alignment, "per_tensor_alignment"),
                    "replay": (cpp_backend, "sample")}[target]
    monkeypatch.setattr(module, name, make(getattr(module, name)))
    path = "replay_cpp" if target == "replay" else target
    assert main(["doctor", "--no-speed", "--paths", path]) == 1
    out = capsys.readouterr().out
    assert status_line in out and "Please report it: send `lrwa-fast doctor --json`" in out


def test_an_extension_that_fails_to_import_is_broken_and_auto_falls_back(tmp_path):
    """In a fresh interpreter whose extension import fails as a broken build's does: doctor exits 1 naming the
    error, and a buffer on ``auto`` takes the PyTorch backend with one warning."""
    code = textwrap.dedent("""
        import importlib.abc, sys, warnings

        class BrokenBuild(importlib.abc.MetaPathFinder):  # the extension's import fails as a broken build's does
            def find_spec(self, name, path=None, target=None):
                if name == "lrwa_fast._replay_ext":
                    raise ImportError("_replay_ext.so: undefined symbol: _ZN3c104cuda9SetDeviceEi")

        sys.meta_path.insert(0, BrokenBuild())
        from lrwa_fast import ReplayBuffer
        from lrwa_fast.apps.cli import main
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            b = ReplayBuffer(8, (3,), 4)
            ReplayBuffer(8, (3,), 4)
        print("BACKEND", b.backend_name, sum("could not be imported" in str(w.message) for w in caught))
        raise SystemExit(main(["doctor", "--no-speed"]))
    """)
    env = {k: v for k, v in subprocess_env().items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BACKEND torch 1" in done.stdout
    assert "| replay_cpp | - | float32 | broken |" in done.stdout and "undefined symbol" in done.stdout


@needs_ext
def test_a_fast_path_failing_at_a_realistic_size_fails_its_row(monkeypatch, capsys):
    original = cpp_backend.insert

    def fails_when_large(storage, x, logits, **kw):
        if x.shape[0] > 100:
            raise RuntimeError("CUDA error: out of memory")
        return original(storage, x, logits, **kw)

    monkeypatch.setattr(cpp_backend, "insert", fails_when_large)
    assert main(["doctor", "--json", "--paths", "replay_cpp"]) == 1
    found, report = rows(capsys)
    assert found[("replay_cpp", "float32")]["status"] == "FAIL" and report["ok"] is False
    assert found[("replay_cpp", "float32")]["detail"] == "raised while timing RuntimeError: CUDA error: out of memory"


def test_a_triton_that_is_installed_but_fails_to_load_is_broken(tmp_path):
    code = textwrap.dedent("""
        import importlib.abc, sys

        class BrokenTriton(importlib.abc.MetaPathFinder):  # installed, but its import fails
            def find_spec(self, name, path=None, target=None):
                if name == "triton" or name.startswith("triton."):
                    raise ImportError("libtriton.so: undefined symbol: _ZN4mlir7MLIRContextC1Ev")

        sys.meta_path.insert(0, BrokenTriton())
        from lrwa_fast.apps.cli import main
        raise SystemExit(main(["doctor", "--no-speed", "--paths", "kd_loss"]))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in subprocess_env().items() if k != "TRITON_INTERPRET"}, cwd=tmp_path,
                          timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "| kd_loss | - | float32 | broken | " in done.stdout and "Triton is installed but unavailable" in done.stdout


def test_unknown_paths_are_refused(capsys):
    assert main(["doctor", "--paths", "kd_loss,warp_drive"]) == 2
    assert "unknown fast path(s) ['warp_drive']; the fast paths: kd_loss, grad_alignment" in capsys.readouterr().err
