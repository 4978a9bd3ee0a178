"""The statistics of a study's paired runs: per statistic, the per-seed differences of a method to its
reference, their 95% bootstrap interval (BCa, percentile where BCa is undefined) and paired t interval, the
smallest difference the seeds could have detected (80% power at the 5% level, from the observed spread),
the seeds a difference needs, and the verdict. With a handful of seeds a bootstrap interval is too narrow (it
cannot be wider than the differences' range), so a verdict needs the t interval to exclude 0 too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .reports import STAT_KEYS

VERDICTS = {"mean": 1, "forgetting": -1}  # statistic → +1 when higher is better, -1 when lower is
CONFIDENCE = 0.95
POWER = 0.80  # of the detectable difference
RESAMPLES = 10_000


def paired_differences(runs: list[dict[str, Any]], method: str, reference: str = "dfad"
                       ) -> dict[str, dict[str, Any]]:
    """Per statistic: the method's per-seed differences to ``reference``, their mean, 95% intervals, the
    smallest difference detectable from their spread and (μ[acc], forgetting) the verdict."""
    by_seed = {(r["method"], r["seed"]): r for r in runs}
    seeds = sorted(s for m, s in by_seed if m == method and (reference, s) in by_seed)
    out = {}
    for key in (*STAT_KEYS, "wall_time_s"):
        values = [_stat(by_seed[(method, s)], key) - _stat(by_seed[(reference, s)], key) for s in seeds
                  if _stat(by_seed[(method, s)], key) is not None and _stat(by_seed[(reference, s)], key) is not None]
        if len(values) < 2:
            out[key] = {"differences": values, "mean": None, "interval": None, "verdict": None}
            continue
        low, high = bootstrap_interval(values)
        t_low, t_high = t_interval(values)
        row = {"differences": values, "mean": float(np.mean(values)), "interval": [low, high],
               "t_interval": [t_low, t_high], "detectable": detectable_difference(values)}
        if key in VERDICTS:
            row["verdict"] = verdict(min(low, t_low), max(high, t_high), VERDICTS[key])  # both must exclude 0
        out[key] = row
    return out


def detectable_difference(values: list[float], confidence: float = CONFIDENCE, power: float = POWER) -> float:
    """The smallest true paired difference a two-sided paired t test at level 1 − ``confidence`` detects with
    probability ``power``, for the spread of ``values``: (t_{1−α/2} + t_power) · s / √n, n − 1 degrees of
    freedom."""
    from scipy import stats

    data = np.asarray(values, dtype=np.float64)
    n = len(data)
    return float((stats.t.ppf(0.5 + confidence / 2, n - 1) + stats.t.ppf(power, n - 1)) * data.std(ddof=1)
                 / np.sqrt(n))


def _stat(run: dict[str, Any], key: str) -> float | None:
    return run["wall_time_s"] if key == "wall_time_s" else run["stats"].get(key)


def bootstrap_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The bootstrap confidence interval of the mean of ``values`` (BCa; percentile where BCa is undefined,
    e.g. when all values are equal); fixed resampling seed, so a report is reproducible."""
    from scipy import stats

    data = np.asarray(values, dtype=np.float64)
    if np.ptp(data) == 0:
        return float(data[0]), float(data[0])
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"):
            result = stats.bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES,
                                     method=method, rng=np.random.default_rng(0))
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return float(low), float(high)
    raise RuntimeError("the bootstrap interval is undefined for these values")  # pragma: no cover


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The paired t confidence interval of the mean of ``values`` (zero width when they are all equal)."""
    from scipy import stats

    data = np.asarray(values, dtype=np.float64)
    half = stats.t.ppf(0.5 + confidence / 2, len(data) - 1) * data.std(ddof=1) / np.sqrt(len(data))
    return float(data.mean() - half), float(data.mean() + half)


def verdict(low: float, high: float, direction: int) -> str:
    """``better`` / ``worse`` when ``[low, high]`` excludes 0 (``direction``: +1 higher is better, -1 lower); the
    study passes the span of the bootstrap and the t interval, which excludes 0 only when both do."""
    if low > 0 or high < 0:
        return "better" if (low > 0) == (direction > 0) else "worse"
    return "not distinguishable"


def seeds_needed(spread: float, delta: float, confidence: float = CONFIDENCE, power: float = POWER) -> int:
    """The fewest paired seeds n (at least 2) whose detectable difference (t_{1−α/2} + t_power) · s / √n, n − 1
    degrees of freedom, is at most ``delta`` for paired differences of standard deviation ``spread`` (s)."""
    from scipy import stats

    if delta <= 0:
        raise ValueError(f"a difference to detect must be positive, got {delta}")

    def detectable(n: int) -> float:
        return (stats.t.ppf(0.5 + confidence / 2, n - 1) + stats.t.ppf(power, n - 1)) * spread / np.sqrt(n)

    low, high = 2, 2
    while detectable(high) > delta:  # it falls as n grows: double, then halve the bracket
        low, high = high, 2 * high
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if detectable(middle) <= delta else (middle + 1, high)
    return high
