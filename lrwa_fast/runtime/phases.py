"""Named phases of a training step, for profiling what a step costs and where.

Library code wraps its phases in :func:`phase`; they show up as ranges in a ``torch.profiler``
trace, and inside :class:`PhaseTimer` each phase is also timed (device synchronised at both ends,
so the times add up to the wall time). Outside a timer a phase costs one profiler range check.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_active: list[PhaseTimer] = []


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Mark a phase of a step (timed when a :class:`PhaseTimer` is active)."""
    with torch.profiler.record_function(name):
        if not _active:
            yield
            return
        timer = _active[-1]
        timer.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            timer.sync()
            timer.add(name, time.perf_counter() - start)


class PhaseTimer:
    """Accumulates the wall time and calls of every :func:`phase` entered while it is active
    (phases do not nest: each is a leaf of the step)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds
        self.calls[name] += 1

    @contextmanager
    def active(self) -> Iterator[PhaseTimer]:
        _active.append(self)
        try:
            yield self
        finally:
            _active.pop()
