"""The compiled replay-memory extension ``lrwa_fast._replay_ext``, imported once per process.

``module()`` is the extension or ``None``; ``reason()`` says why it is missing. Setting
``LRWA_FAST_NO_EXTENSION=1`` disables it on purpose (no warning then). When the extension was
expected but could not be imported, ``warn_fallback()`` emits one ``RuntimeWarning`` per process.
"""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

from ..warn_once import warn_once

DISABLE_VAR = "LRWA_FAST_NO_EXTENSION"
MODULE_NAME = "lrwa_fast._replay_ext"
_DISABLED = f"disabled by {DISABLE_VAR}=1"



def disabled() -> bool:
    """Whether ``LRWA_FAST_NO_EXTENSION=1`` turns the extension off."""
    return os.environ.get(DISABLE_VAR) == "1"


@functools.cache
def _load() -> tuple[ModuleType | None, str]:
    """Import the extension (first call only); ``(module, "")`` or ``(None, why)``."""
    if disabled():
        return None, _DISABLED
    try:
        return importlib.import_module(MODULE_NAME), ""
    except (ImportError, OSError) as err:
        return None, f"{type(err).__name__}: {err}"


def module() -> ModuleType | None:
    """The extension module, or ``None`` when it is disabled or failed to import."""
    return _load()[0]


def require() -> ModuleType:
    """The extension module; ``RuntimeError`` naming the cause when it is unavailable."""
    ext = module()
    if ext is None:
        raise RuntimeError(f"{MODULE_NAME} is unavailable ({reason()})")
    return ext


def reason() -> str:
    """Why the extension is unavailable (empty when it imported)."""
    return _load()[1]


def has_cuda() -> bool:
    """Whether the extension imported and was built with its CUDA kernels."""
    ext = module()
    return bool(ext is not None and ext.with_cuda)


def warn_fallback() -> None:
    """Warn once per process that the PyTorch backend replaces a missing extension (not when disabled)."""
    if module() is not None or reason() == _DISABLED:
        return
    warn_once("replay extension", f"lrwa_fast: the C++ replay-memory extension {MODULE_NAME} could not be "
              f"imported ({reason()}); the PyTorch replay backend is used instead (same results, slower). "
              "Rebuild it with `pip install --no-build-isolation -e .`.", stacklevel=4)
