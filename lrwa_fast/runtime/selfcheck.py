"""Fast paths that prove themselves on the user's hardware, and the record of what ran.

The first time an ``auto`` backend would run a fast path (a Triton kernel, a compiled replay operation) on a
device with a dtype, :func:`verified` runs that path once on small seeded inputs against its PyTorch reference
(with gradients on, autocast off, whatever the caller's mode). Pass: the fast path is used for the rest of the
process. Fail (a value outside the tests' tolerance, or an error: a compile or launch error, an out-of-bounds
access reported at the synchronisation): the reference path is used instead, with one warning naming the path,
the device, what failed and how to report it. A fault that leaves the CUDA context unusable cannot be recovered
from in the process: it is raised as :class:`UnusableDevice`, naming the settings that avoid the path. An explicit
backend (``triton``, ``cpp``, ``cuda``) is never checked (an error stays an error), and ``LRWA_FAST_SELF_CHECK=0``
switches the checks off.

Every choice of a backend is recorded (:func:`record`, :func:`usage`: each distinct choice per path, since the
process started or since :func:`forget_usage`): reports say which backend each fast path actually used and why,
so no figure is credited to a kernel that did not run.
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
AVOID = "LRWA_FAST_BACKEND=torch (the kernels) or LRWA_FAST_MEMORY_BACKEND=torch (the replay memory)"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: ``error`` is the largest deviation in units of the tolerance (≤ 1 passes;
    ``None`` when the path raised or differed where it must be exact)."""

    path: str
    device: str
    dtype: str
    passed: bool
    error: float | None
    detail: str  # what failed ("" when it passed)
    seconds: float


Check = Callable[[torch.device, torch.dtype], float]  # runs the fast path and its reference; the deviation
Choice = tuple[str, str, str]  # (requested, used, why)


class WrongValue(Exception):
    """What a check of an exact fast path raises when it differs from its reference (the message says where)."""


class UnusableDevice(RuntimeError):
    """A fast path's failure left the CUDA context unusable: nothing more can run on it in this process."""


_verdicts: dict[tuple[str, str, str], Verdict] = {}
_usage: dict[str, list[Choice]] = {}
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
    """Run ``check`` (the fast path against its reference) and judge it; a failure of the path is a verdict,
    not an exception (but :class:`UnusableDevice` when it left the CUDA context unusable)."""
    start = time.perf_counter()
    try:
        with torch.enable_grad(), torch.inference_mode(False), torch.autocast(device.type, enabled=False):
            error = float(check(device, dtype))
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # an out-of-bounds access is reported here
    except WrongValue as err:
        return _failed(path, device, dtype, f"wrong value: {err}", start)
    except Exception as err:  # a compile, launch or memory error is a failed check, not a crash
        _usable_after(path, device, err)
        first = str(err).strip().splitlines()[:1]
        return _failed(path, device, dtype, f"raised {type(err).__name__}: {first[0][:300] if first else ''}", start)
    if not math.isfinite(error) or error > 1.0:
        return _failed(path, device, dtype, f"wrong value: deviation {error:.3g} times the tolerance", start)
    return Verdict(path, str(device), _name(dtype), True, error, "", time.perf_counter() - start)


def _failed(path: str, device: torch.device, dtype: torch.dtype, detail: str, start: float) -> Verdict:
    return Verdict(path, str(device), _name(dtype), False, None, detail, time.perf_counter() - start)


def _usable_after(path: str, device: torch.device, err: Exception) -> None:
    """Raise :class:`UnusableDevice` when ``device``'s CUDA context no longer works after ``err``."""
    if device.type != "cuda":
        return
    try:
        torch.cuda.synchronize(device)
        torch.zeros(1, device=device).add_(1).item()
    except Exception as again:
        raise UnusableDevice(f"lrwa_fast: the fast path {path} failed on {device} ({type(err).__name__}: {err}) and "
                             f"left the CUDA context unusable ({type(again).__name__}); nothing more can run on it "
                             f"in this process. Rerun with {AVOID}, and please report it: {REPORT}.") from err


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


def record(path: str, choice: Choice) -> None:
    """Note that fast path ``path`` ran with ``choice`` (requested, used, why); each distinct choice once."""
    seen = _usage.setdefault(path, [])
    if choice not in seen:
        seen.append(choice)


def usage() -> dict[str, list[dict[str, str]]]:
    """Per fast path that ran (since the process started or :func:`forget_usage`): each distinct choice, in
    order, as ``{"requested", "used", "why"}``."""
    return {path: [dict(zip(("requested", "used", "why"), c)) for c in choices] for path, choices in _usage.items()}


def merged(records: list[dict[str, list[dict[str, str]]]]) -> dict[str, list[dict[str, str]]]:
    """Several :func:`usage` records (of runs in other processes) as one: each path's distinct choices, in order."""
    out: dict[str, list[dict[str, str]]] = {}
    for record in records:
        for path, choices in record.items():
            out.setdefault(path, []).extend(c for c in choices if c not in out[path])
    return out


def forget_usage() -> None:
    """Start a new record of choices (a run's own, in a process that runs several); verdicts are kept."""
    _usage.clear()


def describe(used: dict[str, list[dict[str, str]]]) -> str:
    """One line of :func:`usage`: each fast path's backends and why."""
    if not used:
        return "fast paths: none ran"
    return "fast paths: " + "; ".join(f"{path} {c['used']} ({c['why']})" for path, choices in used.items()
                                      for c in choices)


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
