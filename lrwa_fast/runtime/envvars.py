"""The one convention for choosing an implementation: an explicit argument wins, else an
environment variable, else ``auto``; an invalid value is refused naming where it came from.

* ``LRWA_FAST_BACKEND``: ``auto`` | ``torch`` | ``triton``, the fused KD-loss and alignment kernels
  (:mod:`lrwa_fast.ops.dispatch`);
* ``LRWA_FAST_MEMORY_BACKEND``: ``auto`` | ``torch`` | ``cpp`` | ``cuda``, the replay-memory backend
  (:mod:`lrwa_fast.replay.buffer.backends`).
"""

from __future__ import annotations

import os


def requested(argument: str | None, variable: str, choices: tuple[str, ...]) -> str:
    """``argument`` if given, else ``$variable``, else ``"auto"``; ``ValueError`` unless in ``choices``."""
    name = argument if argument is not None else os.environ.get(variable, "auto")
    if name not in choices:
        source = "backend argument" if argument is not None else f"environment variable {variable}"
        raise ValueError(f"invalid {source} {name!r}; expected one of {choices}")
    return name
