"""Fast paths that prove themselves on the user's hardware, and the record of what ran.

The first time an ``auto`` backend would run a fast path (a Triton kernel, a compiled replay operation) on a
device with a dtype, :func:`verified` runs that path once on a small seeded check against its PyTorch reference.
Pass: the fast path is used for the rest of the process. Fail (a value outside the tests' tolerance, or any
error: a compile or launch error, an illegal memory access surfacing at the synchronisation): the reference path
is used instead, with one warning naming the path, the device, what failed and how to report it. An explicit
backend (``triton``, ``cpp``, ``cuda``) is never checked (an error stays an error), and ``LRWA_FAST_SELF_CHECK=0``
switches the checks off.

Every choice of a backend is recorded (:func:`record`, :func:`usage`): reports say which backend each fast path
actually used and why, so no figure is credited to a kernel that did not run.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

ENV_VAR = "LRWA_FAST_SELF_CHECK"
REPORT = "run `lrwa-fast doctor --json` and send its output with the report"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: ``error`` is the largest deviation in units of the tolerance (≤ 1 passes)."""

    path: str
    device: str
    dtype: str
    passed: bool
    error: float | None  # None when the path raised
    detail: str  # what failed ("" when it passed)
    seconds: float

    def describe(self) -> str:
        if self.passed:
            return f"passed (largest deviation {self.error:.2g} of the tolerance)"
        return self.detail


Check = Callable[[torch.device, torch.dtype], float]  # runs the fast path and its reference; the deviation


class WrongValue(Exception):
    """What a check of an exact fast path raises when it differs from its reference (the message says where)."""

_verdicts: dict[tuple[str, str, str], Verdict] = {}
_usage: dict[str, dict[str, str]] = {}
_switch: dict[str, bool] = {}


def enabled() -> bool:
    """Whether ``auto`` backends check their fast paths (``LRWA_FAST_SELF_CHECK``, default on; read once per
    process, again after :func:`reset`)."""
    if "enabled" not in _switch:
        value = os.environ.get(ENV_VAR, "1").strip().lower()
        if value not in ("0", "1", "off", "on", "false", "true", "no", "yes"):
            raise ValueError(f"invalid environment variable {ENV_VAR} {value!r}; expected 1 / on or 0 / off")
        _switch["enabled"] = value in ("1", "on", "true", "yes")
    return _switch["enabled"]


def run_check(path: str, device: torch.device, dtype: torch.dtype, check: Check) -> Verdict:
    """Run ``check`` (the fast path against its reference) and judge it; never raises for the path's errors."""
    start = time.perf_counter()
    try:
        error = float(check(device, dtype))
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # an illegal memory access surfaces here
    except WrongValue as err:
        return Verdict(path, str(device), _name(dtype), False, math.inf, f"wrong value: {err}",
                       time.perf_counter() - start)
    except Exception as err:  # a compile, launch or memory error is a failed check, not a crash
        return Verdict(path, str(device), _name(dtype), False, None, f"raised {type(err).__name__}: "
                       f"{str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}",
                       time.perf_counter() - start)
    passed = math.isfinite(error) and error <= 1.0
    detail = "" if passed else f"wrong value: deviation {error:.3g} times the tolerance"
    return Verdict(path, str(device), _name(dtype), passed, error, detail, time.perf_counter() - start)


def verified(path: str, device: torch.device, dtype: torch.dtype, check: Check) -> bool:
    """Whether fast path ``path`` may run on ``device`` with ``dtype``: checked once per process (then the
    verdict is reused), with one warning when it fails; always ``True`` when the checks are off."""
    if not enabled():
        return True
    key = (path, str(device), _name(dtype))
    if key not in _verdicts:  # the check, and so its warning, happen once per key
        verdict = _verdicts[key] = run_check(path, device, dtype, check)
        if not verdict.passed:
            warnings.warn(f"lrwa_fast: the fast path {path} failed its check on {device} ({_name(dtype)}): "
                          f"{verdict.detail}; the PyTorch reference path is used instead (same results, slower). "
                          f"Please report it: {REPORT}.", RuntimeWarning, stacklevel=3)
    return _verdicts[key].passed


def verdict(path: str, device: torch.device, dtype: torch.dtype) -> Verdict | None:
    """The verdict of a check that ran in this process (``None`` if none did)."""
    return _verdicts.get((path, str(device), _name(dtype)))


def record(path: str, requested: str, used: str, why: str) -> None:
    """Note which backend fast path ``path`` ran with, and why (the latest choice per path is kept)."""
    entry = {"requested": requested, "used": used, "why": why}
    if _usage.get(path) != entry:
        _usage[path] = entry


def usage() -> dict[str, dict[str, str]]:
    """Per fast path that ran in this process: the backend requested, the one used, and why."""
    return {path: dict(entry) for path, entry in _usage.items()}


def describe(used: dict[str, dict[str, str]]) -> str:
    """One line of :func:`usage`: each fast path's backend and why."""
    if not used:
        return "fast paths: none ran"
    return "fast paths: " + "; ".join(f"{path} {entry['used']} ({entry['why']})" for path, entry in used.items())


def verdicts() -> list[dict[str, object]]:
    """Every check run in this process, as plain values."""
    return [asdict(v) for v in _verdicts.values()]


def reset() -> None:
    """Forget every verdict and choice (tests; a process that changed its hardware)."""
    _verdicts.clear()
    _usage.clear()
    _switch.clear()


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
