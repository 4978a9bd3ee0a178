"""The one place that chooses the replay-memory backend (an implementation of :class:`.base.ReplayBackend`).

The backend is named by the buffer's ``backend`` argument (the config field ``memory_backend``):
``torch``, ``cpp`` or ``cuda``, or ``auto`` (the default), which defers to the environment variable
``LRWA_FAST_MEMORY_BACKEND`` when it is set (:mod:`lrwa_fast.runtime.envvars`):

* ``torch``: the PyTorch reference, any device; the extension is not even imported.
* ``cpp``: the compiled extension on CPU buffers; ``cuda``: its CUDA kernels on CUDA buffers.
* ``auto`` with the variable unset (or ``auto``): ``cuda`` for CUDA buffers and ``cpp`` for CPU buffers
  when built, else ``torch`` (with one ``RuntimeWarning`` per process when the extension failed to import).

All backends give identical results, so a buffer's state moves freely between them.
"""

from __future__ import annotations

import torch

from ...choices import MEMORY_BACKENDS
from ...runtime import envvars
from ...runtime.warn_once import warn_once
from . import _ext, cpp_backend, torch_backend
from .base import ReplayBackend

ENV_VAR = "LRWA_FAST_MEMORY_BACKEND"
IMPLEMENTATIONS: dict[str, ReplayBackend] = {"torch": torch_backend, "cpp": cpp_backend, "cuda": cpp_backend}
_NATIVE_DEVICE = {"cpp": "cpu", "cuda": "cuda"}


def requested_backend(backend: str | None = "auto") -> str:
    """The backend asked for: ``backend`` unless ``auto``, else ``$LRWA_FAST_MEMORY_BACKEND``, else ``auto``."""
    return envvars.requested(backend, ENV_VAR, MEMORY_BACKENDS)


def native_backend(device: torch.device) -> str | None:
    """The extension backend for buffers on ``device`` (``None`` when there is none)."""
    return next((name for name, kind in _NATIVE_DEVICE.items() if kind == device.type), None)


def unavailable_reason(name: str) -> str:
    """Why extension backend ``name`` cannot run here (empty when it can)."""
    if _ext.module() is None:
        return f"the extension {_ext.MODULE_NAME} is unavailable ({_ext.reason()})"
    if name == "cuda" and not _ext.has_cuda():
        return "the extension was built without CUDA (needs a CUDA build of torch and nvcc at install time)"
    return ""


def resolve_backend(backend: str | None, device: torch.device) -> tuple[str, ReplayBackend]:
    """Return ``(resolved_name, implementation)`` for ``backend`` (rules in the module docstring) on ``device``."""
    name = requested_backend(backend)
    if name == "auto":
        native = native_backend(device)
        name = native if native is not None and not unavailable_reason(native) else _fallback()
    elif name != "torch":
        _check_native(name, device)
    return name, IMPLEMENTATIONS[name]


def _check_native(name: str, device: torch.device) -> None:
    """Raise ``ValueError`` unless extension backend ``name`` can hold buffers on ``device``."""
    if name != native_backend(device):
        raise ValueError(f"replay backend {name!r} holds buffers on {_NATIVE_DEVICE[name]} devices, not on "
                         f"{device}; use backend='auto' or 'torch'")
    why = unavailable_reason(name)
    if why:
        raise ValueError(f"replay backend {name!r} is unavailable: {why}; use backend='auto' or 'torch'")


def _fallback() -> str:
    """``"torch"`` for ``auto`` without a usable extension; warns once per process when it failed to import."""
    if _ext.module() is None:
        warn_once("replay extension", f"lrwa_fast: the C++ replay-memory extension {_ext.MODULE_NAME} could not "
                  f"be imported ({_ext.reason()}); the PyTorch replay backend is used instead (same results, "
                  "slower). Rebuild it with `pip install --no-build-isolation -e .`, or set "
                  f"{ENV_VAR}=torch to choose that backend without this warning.", stacklevel=4)
    return "torch"
