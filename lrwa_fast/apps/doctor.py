"""``lrwa-fast doctor``: the first command on any machine. What the machine has (torch, CUDA, Triton, a compiler, the
replay extension, the GPU), and for each fast path its verdict against the PyTorch reference on that machine (the
self-check checks of :mod:`lrwa_fast.runtime.selfcheck`, run afresh), the largest deviation, and its speed
against the reference. Exit status 1 when a fast path computes wrongly, fails to run, or is installed but broken."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .. import __version__
from ..bench.timing import measure, quartiles
from ..ops import dispatch, kernel_checks
from ..ops.alignment import per_tensor_reference
from ..ops.losses import kd_loss_reference
from ..replay.buffer import backends, cpp_backend, torch_backend
from ..replay.buffer.backend_check import replay_check
from ..replay.buffer.storage import TensorStorage
from ..runtime import selfcheck

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
REPORT = "send `lrwa-fast doctor --json` with any report (it holds no paths or data of yours)"


@dataclass(frozen=True)
class Row:
    """One fast path on one device with one dtype: ``status`` is ``pass``, ``FAIL`` (wrong or raised),
    ``broken`` (installed but cannot load) or ``not run`` (not applicable here; ``detail`` says why)."""

    path: str
    device: str
    dtype: str
    status: str
    error: float | None = None
    detail: str = ""
    check_seconds: float | None = None
    speedup: float | None = None  # reference time / fast-path time, medians of interleaved rounds


def environment() -> dict[str, Any]:
    """What the fast paths need, as found on this machine."""
    cuda = torch.cuda.is_available()
    return {"lrwa_fast": __version__, "torch": torch.__version__, "cuda_runtime": torch.version.cuda,
            "cuda_available": cuda, "devices": [_device(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "triton": _version("triton"), "triton_kernels": "loaded" if dispatch.triton_available() else
            f"unavailable ({dispatch.kernel_failure()})", "triton_interpreter": dispatch.interpreter_enabled(),
            "compiler": _first_line(["c++", "--version"]), "nvcc": _first_line(["nvcc", "--version"], last=True),
            "replay_extension": _extension(), "replay_extension_cuda": backends.extension_status()["cuda"],
            "self_check": "on" if selfcheck.enabled() else "off"}


def _extension() -> str:
    found = backends.extension_status()
    return "loaded" if found["status"] == "loaded" else f"{found['status']} ({found['reason']})"


def _device(index: int) -> dict[str, Any]:
    major, minor = torch.cuda.get_device_capability(index)
    return {"index": index, "name": torch.cuda.get_device_name(index), "capability": f"{major}.{minor}"}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _first_line(command: list[str], last: bool = False) -> str | None:
    """The first (or last) line a tool prints of its version, ``None`` when it is not there."""
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return (lines[-1] if last else lines[0]).strip() if lines else None


# ----------------------------------------------------------------------------- the fast paths
def kernel_device() -> tuple[torch.device | None, str, bool]:
    """Where the Triton kernels can run here, or why nowhere, and whether that is a broken install (Triton is
    installed and the kernels fail to load)."""
    if not dispatch.triton_available():
        broken = _version("triton") is not None
        return None, f"Triton {'is installed but ' if broken else ''}unavailable ({dispatch.kernel_failure()})" + (
            "" if broken else "; pip install 'lrwa_fast[triton]'"), broken
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device()), "", False
    if dispatch.interpreter_enabled():
        return torch.device("cpu"), "", False
    return None, "no CUDA device (TRITON_INTERPRET=1 checks the kernels in Triton's interpreter, slowly)", False


def replay_device(name: str) -> tuple[torch.device | None, str, bool]:
    """Where replay backend ``name`` can run here, or why nowhere, and whether that is a broken install."""
    if name == "cuda" and not torch.cuda.is_available():
        return None, "no CUDA device", False
    why = backends.unavailable_reason(name)
    if why:
        return None, why, backends.extension_status()["status"] == "broken"
    return (torch.device("cuda", torch.cuda.current_device()) if name == "cuda" else torch.device("cpu")), "", False


def fast_paths() -> list[tuple[str, Callable[[], tuple[torch.device | None, str, bool]], selfcheck.Check,
                               Callable[[torch.device, torch.dtype], dict[str, Callable[[], object]]]]]:
    """(path, where it runs, its check, its timed pair: fast path and reference on a moderate input)."""
    return [("kd_loss", kernel_device, kernel_checks.kd_loss_check, _kd_pair),
            ("grad_alignment", kernel_device, kernel_checks.grad_alignment_check, _alignment_pair),
            ("replay_cpp", lambda: replay_device("cpp"), replay_check(cpp_backend), _replay_pair),
            ("replay_cuda", lambda: replay_device("cuda"), replay_check(cpp_backend), _replay_pair)]


def _kd_pair(device: torch.device, dtype: torch.dtype) -> dict[str, Callable[[], object]]:
    s, t = (torch.randn(512, 100, device=device).to(dtype).requires_grad_() for _ in range(2))
    fused = dispatch.kernels().kd_loss.kd_loss_triton

    def fast() -> object:
        return torch.autograd.grad(fused(s, t, "kl", 4.0, "mean"), (s, t))

    def reference() -> object:
        return torch.autograd.grad(kd_loss_reference(s.float(), t.float(), kind="kl", temperature=4.0), (s, t))

    return {"fast": fast, "reference": reference}


def _alignment_pair(device: torch.device, dtype: torch.dtype) -> dict[str, Callable[[], object]]:
    a, b = ([torch.randn(n, device=device).to(dtype) for n in (1728, 64, 36864, 64, 147456, 5120, 10)]
            for _ in range(2))
    kernel = dispatch.kernels().grad_alignment.per_tensor_alignment
    return {"fast": lambda: kernel(a, b), "reference": lambda: per_tensor_reference(a, b)}


def _replay_pair(device: torch.device, dtype: torch.dtype) -> dict[str, Callable[[], object]]:
    storages = {name: TensorStorage.allocate(2048, (3, 32, 32), 100, device, dtype) for name in ("fast", "reference")}
    x, logits = torch.randn(256, 3, 32, 32, device=device).to(dtype), torch.randn(256, 100, device=device).to(dtype)
    out = storages["fast"].empty_sample(256, torch.float32)

    def run(impl: object, storage: TensorStorage) -> object:
        impl.insert(storage, x, logits, policy="reservoir", seen=4096, seed=1, step=1)
        return impl.sample(storage, *out, fill=2048, replace=True, seed=2, counter=3)

    return {"fast": lambda: run(cpp_backend, storages["fast"]),
            "reference": lambda: run(torch_backend, storages["reference"])}


def _speedup(pair: dict[str, Callable[[], object]], device: torch.device) -> float:
    """Median reference time over median fast time: 2 warm-up calls, then 7 interleaved rounds."""
    times = measure(pair, device, repeats=7, warmup=2)
    return quartiles(times["reference"])["median"] / quartiles(times["fast"])["median"]


PATHS = ("kd_loss", "grad_alignment", "replay_cpp", "replay_cuda")


def diagnose(speed: bool = True, paths: tuple[str, ...] = PATHS) -> list[Row]:
    """Every fast path of ``paths`` on every dtype: its verdict against the reference, and (``speed``) its speed."""
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise ValueError(f"unknown fast path(s) {unknown}; the fast paths: {', '.join(PATHS)}")
    rows = []
    for path, where, check, pair in fast_paths():
        if path not in paths:
            continue
        device, why, broken = where()
        for dtype in DTYPES:
            name = str(dtype).removeprefix("torch.")
            if device is None:
                rows.append(Row(path, "-", name, "broken" if broken else "not run", detail=why))
                continue
            verdict = selfcheck.run_check(path, device, dtype, check)
            row = Row(path, str(device), name, "pass" if verdict.passed else "FAIL", verdict.error, verdict.detail,
                      verdict.seconds)
            if speed and verdict.passed and not (device.type == "cpu" and path in kernel_checks.CHECKS):
                row = _timed(row, pair, device, dtype)
            rows.append(row)
    return rows


def _timed(row: Row, pair: Callable[[torch.device, torch.dtype], dict[str, Callable[[], object]]],
           device: torch.device, dtype: torch.dtype) -> Row:
    """``row`` with the path's speed against the reference at a realistic size; a failure there fails the row."""
    try:
        return dataclasses.replace(row, speedup=_speedup(pair(device, dtype), device))
    except Exception as err:  # a larger shape may fail where the check's passed: the path is not usable
        first = str(err).strip().splitlines()[:1]
        return dataclasses.replace(row, status="FAIL", detail=f"raised while timing {type(err).__name__}: "
                                                              f"{first[0][:300] if first else ''}")


def doctor(speed: bool = True, paths: tuple[str, ...] = PATHS) -> dict[str, Any]:
    """The environment and every fast path's row (of ``paths``); ``ok`` is false when one is wrong, fails or is
    broken."""
    rows = diagnose(speed, paths)
    return {"environment": environment(), "fast_paths": [asdict(r) for r in rows],
            "ok": not any(r.status in ("FAIL", "broken") for r in rows)}


def format_doctor(report: dict[str, Any]) -> str:
    """The environment, then a table of the fast paths, then what to do."""
    env = report["environment"]
    gpus = ", ".join(f"{d['name']} (sm {d['capability']})" for d in env["devices"]) or "none"
    lines = [f"lrwa_fast {env['lrwa_fast']}, torch {env['torch']} (CUDA {env['cuda_runtime'] or 'none'}), "
             f"Triton {env['triton'] or 'not installed'} (kernels {env['triton_kernels']}"
             f"{', interpreter' if env['triton_interpreter'] else ''})",
             f"GPUs: {gpus}; compiler: {env['compiler'] or 'none'}; nvcc: {env['nvcc'] or 'none'}",
             f"replay extension: {env['replay_extension']}{', with CUDA' if env['replay_extension_cuda'] else ''}; "
             f"self-check {env['self_check']}", "",
             "| fast path | device | dtype | verdict | deviation / tolerance | × reference speed | note |",
             "|---|---|---|---|---|---|---|"]
    for r in report["fast_paths"]:
        error = "" if r["error"] is None else f"{r['error']:.2g}"
        speed = "" if r["speedup"] is None else f"{r['speedup']:.2f}"
        lines.append(f"| {r['path']} | {r['device']} | {r['dtype']} | {r['status']} | {error} | {speed} | "
                     f"{r['detail']} |")
    if report["ok"]:
        lines += ["", "Every fast path that ran here agrees with its reference."]
    else:
        lines += ["", "A fast path is wrong or broken here: lrwa_fast falls back to the PyTorch reference for it "
                  f"(`auto` backends). Please report it: {REPORT}."]
    return "\n".join(lines)
