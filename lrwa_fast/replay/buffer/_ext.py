"""The compiled replay-memory extension ``lrwa_fast._replay_ext``, imported once per process.

``module()`` is the extension or ``None``; ``reason()`` says why it is missing. The import is
attempted only when a buffer asks for an extension backend, so ``LRWA_FAST_MEMORY_BACKEND=torch``
never loads it (see :mod:`.backends`, which also warns when ``auto`` has to do without it).
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

MODULE_NAME = "lrwa_fast._replay_ext"


@functools.cache
def _load() -> tuple[ModuleType | None, str]:
    """Import the extension (first call only); ``(module, "")`` or ``(None, why)``."""
    try:
        return importlib.import_module(MODULE_NAME), ""
    except (ImportError, OSError) as err:
        return None, f"{type(err).__name__}: {err}"


def module() -> ModuleType | None:
    """The extension module, or ``None`` when it failed to import."""
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
