"""The one convention for choosing an implementation: an explicit argument wins, else an
environment variable, else ``auto``; an invalid value is refused naming where it came from.

=============================  ===========================  ==========================================
variable                       values                       chooses
=============================  ===========================  ==========================================
``LRWA_FAST_BACKEND``          ``auto`` ``torch`` ``triton``  fused KD-loss / alignment kernels (dispatch)
``LRWA_FAST_MEMORY_BACKEND``   ``auto`` ``torch`` ``cpp``     replay-memory backend (memory.backends)
                               ``cuda``
=============================  ===========================  ==========================================
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
