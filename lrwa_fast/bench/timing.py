"""How the benchmarks time things: variants called round-robin (so the machine's drift hits all alike)
and summarised by their median and inter-quartile range, the one spread every table reports."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def quartiles(values: list[float]) -> dict[str, float]:
    """Median and first and third quartiles of ``values`` (one value: all three equal it)."""
    if len(values) < 2:
        return {"median": values[0], "q1": values[0], "q3": values[0]}
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")  # quartiles within the data
    return {"median": median, "q1": q1, "q3": q3}


def round_robin(fns: dict[str, Callable[[], T]], rounds: int, rotate: bool = False) -> dict[str, list[T]]:
    """Call every function once per round, ``rounds`` times; each one's results, in round order.
    ``rotate``: round ``r`` starts at the ``r``-th function, so each takes every place in a round in turn
    (none is always first or last)."""
    names = list(fns)
    results: dict[str, list[T]] = {name: [] for name in names}
    for r in range(rounds):
        start = r % len(names) if rotate else 0
        for name in names[start:] + names[:start]:
            results[name].append(fns[name]())
    return results


def device_sync(device: torch.device) -> Callable[[], None]:
    """A function that waits for ``device``'s queued work (a no-op on the CPU)."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def measure(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int,
            warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each function, measured round-robin ``repeats`` times after warm-up."""
    sync = device_sync(device)
    for fn in fns.values():
        for _ in range(warmup):
            fn()

    def timed(fn: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            sync()
            start = time.perf_counter()
            fn()
            sync()
            return time.perf_counter() - start
        return run

    return round_robin({name: timed(fn) for name, fn in fns.items()}, repeats)


def summarize_times(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median and inter-quartile range (ms) per variant."""
    out = {}
    for name, values in times.items():
        q = quartiles([1e3 * v for v in values])
        out[name] = {"median_ms": q["median"], "q1_ms": q["q1"], "q3_ms": q["q3"], "repeats": len(values)}
    return out
