"""The one place that chooses the replay-memory backend (an implementation of :class:`.base.ReplayBackend`).

The backend is named by the buffer's ``backend`` argument (the config field ``memory_backend``):
``torch``, ``cpp`` or ``cuda``, or ``auto`` (the default), which defers to the environment variable
``LRWA_FAST_MEMORY_BACKEND`` when it is set (:mod:`lrwa_fast.runtime.envvars`):

* ``torch``: the PyTorch reference, any device; the extension is not even imported.
* ``cpp``: the compiled extension on CPU buffers; ``cuda``: its CUDA kernels on CUDA buffers.
* ``auto`` with the variable unset (or ``auto``): ``cuda`` for CUDA buffers and ``cpp`` for CPU buffers
  when built, else ``torch`` (with one ``RuntimeWarning`` per process when the extension failed to import);
  the first time per device and dtype, the compiled backend must first pass its check against the PyTorch
  reference (:mod:`.backend_check`, :mod:`lrwa_fast.runtime.selfcheck`), else ``torch`` with one warning. A backend
  named explicitly is not checked.

Each choice, and why, is recorded under ``replay`` for reports (:func:`lrwa_fast.runtime.selfcheck.usage`).

All backends give identical results, so a buffer's state moves freely between them.
"""

from __future__ import annotations

import torch

from ...choices import MEMORY_BACKENDS
from ...runtime import envvars, selfcheck
from ...runtime.warn_once import warn_once
from . import _ext, cpp_backend, torch_backend
from .backend_check import replay_check
from .base import ReplayBackend

ENV_VAR = "LRWA_FAST_MEMORY_BACKEND"
IMPLEMENTATIONS: dict[str, ReplayBackend] = {"torch": torch_backend, "cpp": cpp_backend, "cuda": cpp_backend}
_NATIVE_DEVICE = {"cpp": "cpu", "cuda": "cuda"}


def requested_backend(backend: str | None = "auto") -> str:
    """The backend asked for: ``backend`` unless ``auto``, else ``$LRWA_FAST_MEMORY_BACKEND``, else ``auto``."""
    return envvars.requested(backend, ENV_VAR, MEMORY_BACKENDS)


def device_type(name: str) -> str:
    """The device type compiled backend ``name`` holds buffers on (``"cpu"`` for ``cpp``, ``"cuda"``)."""
    return _NATIVE_DEVICE[name]


def native_backend(device: torch.device) -> str | None:
    """The extension backend for buffers on ``device`` (``None`` when there is none)."""
    return next((name for name, kind in _NATIVE_DEVICE.items() if kind == device.type), None)


def extension_status() -> dict[str, object]:
    """The compiled extension here: ``status`` ``"loaded"``, ``"not built"`` (its module is not there) or
    ``"broken"`` (it is there and failed to load: a build for another torch, a missing library), the ``reason``
    it did not load, and whether it has its ``cuda`` kernels."""
    if _ext.module() is not None:
        return {"status": "loaded", "reason": "", "cuda": _ext.has_cuda()}
    status = "not built" if _ext.reason().startswith("ModuleNotFoundError") else "broken"
    return {"status": status, "reason": _ext.reason(), "cuda": False}


def unavailable_reason(name: str) -> str:
    """Why extension backend ``name`` cannot run here (empty when it can)."""
    if _ext.module() is None:
        return f"the extension {_ext.MODULE_NAME} is unavailable ({_ext.reason()})"
    if name == "cuda" and not _ext.has_cuda():
        return "the extension was built without CUDA (needs a CUDA build of torch and nvcc at install time)"
    return ""


def resolve_backend(backend: str | None, device: torch.device, dtype: torch.dtype = torch.float32
                    ) -> tuple[str, ReplayBackend]:
    """Return ``(resolved_name, implementation)`` for ``backend`` (rules in the module docstring) on ``device``
    for storage of ``dtype``; the choice is recorded under ``replay``."""
    requested = requested_backend(backend)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())  # one check per GPU, whatever it is called
    name, why = _choose(requested, device, dtype)
    selfcheck.record("replay", (requested, name, why))
    return name, IMPLEMENTATIONS[name]


def _choose(requested: str, device: torch.device, dtype: torch.dtype) -> tuple[str, str]:
    """The backend, and why."""
    if requested == "torch":
        return "torch", "torch requested"
    if requested != "auto":
        _check_native(requested, device)
        return requested, f"{requested} requested (not checked)"
    native = native_backend(device)
    why = unavailable_reason(native) if native is not None else f"no compiled backend for {device.type} buffers"
    if why:
        return _fallback(), f"auto: {why}"
    if not selfcheck.verified(f"replay_{native}", device, dtype, replay_check(IMPLEMENTATIONS[native])):
        verdict = selfcheck.verdict(f"replay_{native}", device, dtype)
        return "torch", f"auto: {native} failed its check on {device} ({dtype}): {verdict.detail}"
    return native, f"auto: {device.type} buffers, the extension built" + (
        ", check passed" if selfcheck.enabled() else " (checks off)")


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
