"""The one place that chooses between the fused Triton kernels and the PyTorch reference path.

The backend is named by the ``backend`` argument of an op (a config field) or, when that is
``None``, by the environment variable ``LRWA_FAST_BACKEND``; both accept ``auto`` (default),
``torch`` and ``triton``:

* ``torch``: always the reference path.
* ``auto``: the kernels when every tensor is on a CUDA device and Triton imports; else PyTorch.
* ``triton``: the kernels on CUDA tensors, or on CPU tensors when ``TRITON_INTERPRET=1`` (Triton's
  interpreter, for tests); any other device raises ``RuntimeError``.

When the kernels were wanted (``auto`` on CUDA, or ``triton``) but Triton cannot be imported, the
reference path runs instead and a single ``RuntimeWarning`` per process says why.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Literal

from torch import Tensor

from .warn_once import warn_once

ENV_VAR = "LRWA_FAST_BACKEND"
BACKENDS: tuple[str, ...] = ("auto", "torch", "triton")
KERNEL_MODULES: tuple[str, ...] = ("kd_loss", "grad_alignment")
_TRUE = ("1", "true", "on", "yes", "y")  # what Triton itself accepts, in any case

_state = {"cause": ""}


def requested_backend(backend: str | None = None) -> str:
    """The backend asked for: ``backend`` if given, else ``$LRWA_FAST_BACKEND``, else ``auto``."""
    name = backend if backend is not None else os.environ.get(ENV_VAR, "auto")
    if name not in BACKENDS:
        source = "backend argument" if backend is not None else f"environment variable {ENV_VAR}"
        raise ValueError(f"invalid {source} {name!r}; expected one of {BACKENDS}")
    return name


def interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` asks Triton to run kernels on the CPU through its interpreter."""
    return os.environ.get("TRITON_INTERPRET", "").lower() in _TRUE


def _import_kernel_package() -> ModuleType:
    """``lrwa_fast.kernels``, also from a source checkout where ``kernels/`` sits beside the package."""
    try:
        return importlib.import_module("lrwa_fast.kernels")
    except ModuleNotFoundError as err:
        if err.name != "lrwa_fast.kernels":
            raise
    init = Path(__file__).resolve().parent.parent / "kernels" / "__init__.py"
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
                        "using the PyTorch reference path", stacklevel=3)
    return "torch"


def resolve(tensors: Iterable[Tensor], backend: str | None = None) -> Literal["triton", "torch"]:
    """``"triton"`` or ``"torch"`` for an op on ``tensors`` (rules in the module docstring)."""
    name = requested_backend(backend)
    devices = {t.device.type for t in tensors}
    if name == "torch" or not devices:
        return "torch"
    on_cuda = devices == {"cuda"}
    if name == "auto" and not on_cuda:
        return "torch"
    if name == "triton" and not on_cuda and not (devices == {"cpu"} and interpreter_enabled()):
        raise RuntimeError(f"backend 'triton' needs CUDA tensors, or CPU tensors with TRITON_INTERPRET=1; "
                           f"got tensors on {sorted(devices)}")
    return "triton" if triton_available() else _fallback()
