"""One ``RuntimeWarning`` per cause per process: each fallback to a slower path says why once."""

from __future__ import annotations

import warnings

_issued: set[str] = set()


def warn_once(cause: str, message: str, *, stacklevel: int = 2) -> None:
    """Warn with ``message`` unless a warning for ``cause`` was already issued in this process
    (``stacklevel`` as for ``warnings.warn``, counted from the caller of this function)."""
    if cause in _issued:
        return
    _issued.add(cause)
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)
