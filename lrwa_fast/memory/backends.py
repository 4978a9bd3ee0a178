"""Choice of the replay-memory backend: the one place that maps a name and a device to an
implementation of ``insert`` and ``sample`` (see :mod:`.torch_backend` for the contract).

* ``torch``: the PyTorch reference, any device.
* ``cpp``: the compiled extension on CPU buffers; ``cuda``: its CUDA kernels on CUDA buffers.
* ``auto``: ``cuda`` for CUDA buffers and ``cpp`` for CPU buffers when built, else ``torch``
  (with one warning per process when the extension was expected but failed to import).

All backends give identical results, so a buffer's state moves freely between them.
"""

from __future__ import annotations

from types import ModuleType

import torch

from . import _ext, cpp_backend, torch_backend

BACKENDS: tuple[str, ...] = ("auto", "torch", "cpp", "cuda")
_NATIVE_DEVICE = {"cpp": "cpu", "cuda": "cuda"}


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


def resolve_backend(name: str, device: torch.device) -> tuple[str, ModuleType]:
    """Return ``(resolved_name, implementation)`` for backend ``name`` on ``device``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown replay backend {name!r}; expected one of {BACKENDS}")
    if name == "torch":
        return "torch", torch_backend
    native = native_backend(device)
    if name == "auto":
        if native is not None and not unavailable_reason(native):
            return native, cpp_backend
        _ext.warn_fallback()
        return "torch", torch_backend
    if name != native:
        raise ValueError(f"replay backend {name!r} holds buffers on {_NATIVE_DEVICE[name]} devices, not on "
                         f"{device}; use backend='auto' or 'torch'")
    why = unavailable_reason(name)
    if why:
        raise ValueError(f"replay backend {name!r} is unavailable: {why}; use backend='auto' or 'torch'")
    return name, cpp_backend
