"""The one convention for choosing an implementation, and the one meaning of ``"auto"``: a named
implementation (an argument or config field) wins; ``"auto"`` (the default everywhere, ``None`` too) defers
to the environment variable when it is set, and otherwise lets the library choose by device. An invalid
value is refused naming where it came from.

* ``LRWA_FAST_BACKEND``: ``auto`` | ``torch`` | ``triton``, the fused KD-loss and alignment kernels
  (:mod:`lrwa_fast.ops.dispatch`);
* ``LRWA_FAST_MEMORY_BACKEND``: ``auto`` | ``torch`` | ``cpp`` | ``cuda``, the replay-memory backend
  (:mod:`lrwa_fast.replay.buffer.backends`).

``LRWA_FAST_SELF_CHECK`` (``1`` / ``on``, the default, or ``0`` / ``off``) says whether ``auto`` checks a fast path
against its reference before its first use (:mod:`lrwa_fast.runtime.selfcheck`).
"""

from __future__ import annotations

import os

AUTO = "auto"


def requested(argument: str | None, variable: str, choices: tuple[str, ...]) -> str:
    """``argument`` unless it is ``"auto"`` (or ``None``), else ``$variable``, else ``"auto"``; ``ValueError``
    unless in ``choices``."""
    explicit = argument not in (None, AUTO)
    name = argument if explicit else os.environ.get(variable, AUTO)
    if name not in choices:
        source = "backend argument" if explicit else f"environment variable {variable}"
        raise ValueError(f"invalid {source} {name!r}; expected one of {choices}")
    return name
