"""The one place that chooses between the fused Triton kernels and the PyTorch reference path.

The backend is named by the ``backend`` argument of an op (the config field ``backend``): ``torch`` or
``triton``, or ``auto`` (the default), which defers to the environment variable ``LRWA_FAST_BACKEND`` when it
is set (:mod:`lrwa_fast.runtime.envvars`). :func:`resolve` applies these rules, in order:

1. ``torch``, or no tensors: the reference path.
2. Devices. ``auto``: the kernels only when every tensor is on a device of :data:`KERNEL_DEVICES` (CUDA).
   ``triton``: the kernels on CUDA tensors, or on CPU tensors when ``TRITON_INTERPRET`` is set (Triton's
   interpreter, for tests); any other placement raises ``RuntimeError``.
3. Dtypes: the kernels only when every tensor is fp32, fp16 or bf16 (:data:`KERNEL_DTYPES`);
   anything else (float64, integers, a float64 among fp32 tensors) takes the reference path,
   silently, even under ``triton``.
4. Availability: when the kernels were wanted but Triton cannot be imported, the reference path
   runs instead and a single ``RuntimeWarning`` per process says why.
5. Proof (``auto`` only): the first time a kernel would run on a device with a dtype, its check compares it with
   the reference (:mod:`lrwa_fast.runtime.selfcheck`); a kernel that fails takes the reference path for the rest
   of the process, with one warning. ``triton`` named explicitly is not checked.

Each choice, and why, is recorded for reports (:func:`lrwa_fast.runtime.selfcheck.usage`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Literal

import torch
from torch import Tensor

from ..choices import KERNEL_BACKENDS
from ..runtime import envvars, selfcheck
from ..runtime.warn_once import warn_once

ENV_VAR = "LRWA_FAST_BACKEND"
KERNEL_MODULES: tuple[str, ...] = ("kd_loss", "grad_alignment")
KERNEL_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)
KERNEL_DTYPE_SET = frozenset(KERNEL_DTYPES)
KERNEL_DEVICES: frozenset[str] = frozenset({"cuda"})  # where ``auto`` runs the kernels

_state = {"cause": ""}


def requested_backend(backend: str | None = "auto") -> str:
    """The backend asked for: ``backend`` unless ``auto``, else ``$LRWA_FAST_BACKEND``, else ``auto``."""
    return envvars.requested(backend, ENV_VAR, KERNEL_BACKENDS)


def interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for Triton's interpreter, read by the kernel package (no Triton import)."""
    return _import_kernel_package().interpreter_enabled()


def _import_kernel_package() -> ModuleType:
    """``lrwa_fast.kernels``, also from a source checkout where ``kernels/`` sits beside the package."""
    try:
        return importlib.import_module("lrwa_fast.kernels")
    except ModuleNotFoundError as err:
        if err.name != "lrwa_fast.kernels":
            raise
    init = Path(__file__).resolve().parents[2] / "kernels" / "__init__.py"
    spec = importlib.util.spec_from_file_location("lrwa_fast.kernels", init,
                                                  submodule_search_locations=[str(init.parent)])
    if spec is None or spec.loader is None or not init.exists():
        raise ModuleNotFoundError("lrwa_fast.kernels is neither installed nor beside the package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def _load_kernels() -> ModuleType | None:
    """The kernel package with its submodules imported, or ``None`` (cause kept) when that fails."""
    try:
        package = _import_kernel_package()
        for name in KERNEL_MODULES:
            importlib.import_module(f"lrwa_fast.kernels.{name}")
    except Exception as err:  # a broken Triton install may raise anything, not only ImportError
        _state["cause"] = f"{type(err).__name__}: {err}"
        return None
    return package


def kernel_failure() -> str:
    """Why the kernels could not be loaded (empty when they were, or were never asked for)."""
    return _state["cause"]


def triton_available() -> bool:
    """Whether Triton and the kernel modules import (cached for the process)."""
    return _load_kernels() is not None


def kernels() -> ModuleType:
    """The ``lrwa_fast.kernels`` package with its kernel modules loaded (call after ``resolve``)."""
    package = _load_kernels()
    if package is None:
        raise RuntimeError(f"the Triton kernels are unavailable ({_state['cause']})")
    return package


def _fallback() -> Literal["torch"]:
    """Warn (once per process) that the kernels were wanted but Triton is unusable."""
    warn_once("triton", f"lrwa_fast: Triton is unavailable ({_state['cause'] or 'import failed'}); "
                        "using the PyTorch reference path (pip install 'lrwa_fast[triton]' for the kernels)",
              stacklevel=3)
    return "torch"


def resolve(tensors: Iterable[Tensor], backend: str | None = "auto", op: str = "",
            check: selfcheck.Check | None = None) -> Literal["triton", "torch"]:
    """``"triton"`` or ``"torch"`` for op ``op`` on ``tensors`` (rules 1-5 of the module docstring); ``check``
    checks the op's kernel against its reference (rule 5), and the choice is recorded under ``op``."""
    name = requested_backend(backend)
    choice, why = _choose(name, dict.fromkeys((t.device, t.dtype) for t in tensors), op, check)
    if op:
        selfcheck.record(op, (name, choice, why))
    return choice


def _choose(name: str, pairs: dict[tuple[torch.device, torch.dtype], None], op: str,
            check: selfcheck.Check | None) -> tuple[Literal["triton", "torch"], str]:
    """The backend for tensors of these (device, dtype) pairs, and why."""
    if name == "torch" or not pairs:
        return "torch", "torch requested" if name == "torch" else "no tensors"
    devices = frozenset(device.type for device, _ in pairs)
    if not _devices_suit(name, devices):
        return "torch", _off_devices(devices)
    dtypes = frozenset(dtype for _, dtype in pairs)
    if not dtypes <= KERNEL_DTYPE_SET:
        return "torch", _no_kernel(dtypes)
    if not triton_available():
        return _fallback(), f"Triton unavailable ({_state['cause']})"
    if name == "triton":
        return "triton", "triton requested (not checked)"
    if check is None or not selfcheck.enabled():
        return "triton", "auto: kernel devices and dtypes " + ("(not checked)" if check is None else "(checks off)")
    for device, dtype in pairs:
        if not selfcheck.verified(op, device, dtype, check):
            return "torch", f"auto: the kernel failed its check on {device} ({dtype}): " \
                            f"{selfcheck.verdict(op, device, dtype).detail}"
    return "triton", "auto: kernel devices and dtypes, check passed"


@functools.cache
def _off_devices(devices: frozenset[str]) -> str:
    return f"auto: tensors on {', '.join(sorted(devices))}; the kernels run on CUDA"


@functools.cache
def _no_kernel(dtypes: frozenset[torch.dtype]) -> str:
    return f"no kernel for {', '.join(sorted(str(d) for d in dtypes - KERNEL_DTYPE_SET))}"


def _devices_suit(name: str, devices: frozenset[str]) -> bool:
    """Whether backend ``name`` runs the kernels on ``devices`` (rule 2); raise where ``triton`` cannot."""
    if devices <= KERNEL_DEVICES:
        return True
    if name == "triton" and not (devices == {"cpu"} and interpreter_enabled()):
        raise RuntimeError(f"backend 'triton' needs CUDA tensors, or CPU tensors with TRITON_INTERPRET=1; "
                           f"got tensors on {sorted(devices)}")
    return name == "triton"
