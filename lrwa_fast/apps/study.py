"""``lrwa-fast study``: every mitigation of forgetting against its own method without memory, on an embedded
benchmark, paired by seed.

Each seed trains every method from the same teacher and the same initial student and generator
(:func:`~lrwa_fast.apps.runs.distill_once`), so a method's per-seed difference to its twin is paired: the
library's methods against ``dfad`` (the benchmark's settings), the authors' recipe (:mod:`.recipe`) against
``authors_dfad`` (the recipe without its memory), and the two recipe steps with a meta term against
``authors_released`` (the same step whose meta term sends nothing, as the released code's). The report gives
per method the mean ± std over seeds of every statistic, and for each comparison the paired difference with
a 95% bootstrap confidence interval (``scipy.stats.bootstrap``, BCa, falling back to the percentile interval
where BCa is undefined), the smallest difference the comparison could have detected (80% power at the 5%
level, from the observed spread) and a verdict: ``better``, ``worse`` or ``not distinguishable``. With a
handful of seeds a bootstrap interval is too narrow (it cannot be wider than the differences' range), so a
verdict also needs the paired t interval to exclude 0: ``better`` or ``worse`` only when both do, on the
same side. The verdicts are on μ[acc] (higher is better) and on the average forgetting (lower is better);
the other differences come with their intervals only.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import set_nested, to_dict, validate
from ..runtime.checkpoint import atomic_write, atomic_write_text
from . import recipe
from .embedded import Benchmark, benchmark
from .reports import STAT_KEYS, STAT_SCALE, environment, mean_std, summarize
from .runs import STATS_FROM, RunPlan, method_config, method_settings, run_plan


@dataclass(frozen=True)
class Method:
    """A study method: its trainer, the settings it starts from (``"benchmark"``: the benchmark's shared
    settings; ``"authors"``: the authors' recipe fitted to the benchmark), its own config fields over those,
    and its twin without memory, which it is compared with (``None`` for the twins themselves)."""

    trainer: str
    fields: dict[str, Any] = field(default_factory=dict)
    base: str = "benchmark"
    twin: str | None = "dfad"


# Settings of the library's methods are its defaults (LRwAConfig: exact, inner lr 0.05, retain weight 1,
# reservoir 2048, memory batch 32, 32 inserted per iteration), fixed before any study was run; the authors'
# methods are their recipe, fitted by the rules of lrwa_fast.apps.recipe (also fixed before any run).
METHODS: dict[str, Method] = {
    "dfad": Method("dfad", twin=None),
    "joint": Method("lrwa", {"meta_mode": "none", "joint_replay": True}),  # MB-DFKD's idea, joint replay alone
    "lrwa": Method("lrwa", {"meta_mode": "exact"}),
    "lrwa_fd": Method("lrwa", {"meta_mode": "finite_difference"}),
    "lrwa_fo": Method("lrwa", {"meta_mode": "first_order"}),
    "lrwa_gen": Method("lrwa", {"meta_mode": "exact", "memory_kind": "generative"}),
    "lrwa_gen_fd": Method("lrwa", {"meta_mode": "finite_difference", "memory_kind": "generative"}),
    "lrwa_gen_fo": Method("lrwa", {"meta_mode": "first_order", "memory_kind": "generative"}),
    "mad": Method("dfad", {"ema_decay": 0.99, "ema_share": 0.5}),  # Do et al. 2022: an EMA generator, half a batch
    "authors_dfad": Method("dfad", base="authors", twin=None),  # the recipe without memory
    "authors": Method("lrwa", {"meta_mode": "exact"}, base="authors", twin="authors_dfad"),
    "authors_fo": Method("lrwa", {"meta_mode": "first_order"}, base="authors", twin="authors_dfad"),
    "authors_released": Method("lrwa", {"meta_mode": "none"}, base="authors", twin="authors_dfad"),
}
# Pairs compared besides each method and its twin, when both run: a meta step against the same step without
# its meta term (what the authors' released code computes).
EXTRA_PAIRS = (("authors", "authors_released"), ("authors_fo", "authors_released"))
# The default study: every mitigation, the generative memory with the exact and the first-order meta-gradient
# (lrwa_gen_fd, the most expensive, is there on request), so that the MNIST-1D study fits an hour on 2 cores.
DEFAULT_METHODS = ("dfad", "joint", "lrwa", "lrwa_fd", "lrwa_fo", "lrwa_gen", "lrwa_gen_fo", "mad")
VERDICTS = {"mean": 1, "forgetting": -1}  # statistic → +1 when higher is better, -1 when lower is
CONFIDENCE = 0.95
POWER = 0.80  # of the detectable difference
RESAMPLES = 10_000


def method_fields(bench: Benchmark, name: str, iterations: int, overrides: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Study method ``name``'s config on ``bench`` as a plain dict (``method`` key first): its base settings,
    its own fields, then ``overrides`` (dotted keys, the same for every method), validated."""
    method = METHODS[name]
    if method.base == "authors":
        fields = {"method": method.trainer,
                  **recipe.fitted(bench.shared(iterations), with_memory=method.trainer == "lrwa"), **method.fields}
    else:
        fields = method_settings(bench, method.trainer, method.fields, iterations)
    for key, value in (overrides or {}).items():
        set_nested(fields, key.split("."), value)
    _, config = method_config(fields)
    validate(config)
    return {"method": method.trainer, **to_dict(config)}


def comparisons(methods: list[str]) -> list[tuple[str, str]]:
    """The (method, reference) pairs a study of ``methods`` reports: each method and its twin, then
    :data:`EXTRA_PAIRS`."""
    pairs = [(m, METHODS[m].twin) for m in methods if METHODS[m].twin is not None]
    return pairs + [(a, b) for a, b in EXTRA_PAIRS if a in methods and b in methods]


@dataclass
class StudySettings:
    """What a study runs: benchmark, methods, seeds, run length, teacher seed and the settings every method
    shares a change of (``overrides``: dotted config keys; a sweep's value); all in ``study.json``."""

    benchmark: str = "mnist1d"
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    seeds: int = 5
    first_seed: int = 0
    iterations: int | None = None  # None: the benchmark's
    eval_every: int | None = None  # None: the benchmark's
    teacher_seed: int | None = None  # None: the benchmark's teacher
    teacher_epochs: int | None = None  # None: the benchmark's recipe (fewer for smoke tests)
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted config key -> value, for every method

    def check(self) -> None:
        """Refuse what cannot be studied, before any work."""
        benchmark(self.benchmark)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown method(s) {unknown}; expected a comma-separated list of {list(METHODS)}")
        orphans = [f"{m} needs {METHODS[m].twin}" for m in self.methods
                   if METHODS[m].twin is not None and METHODS[m].twin not in self.methods]
        if orphans:
            raise ValueError(f"a method is compared with its twin without memory: {'; '.join(orphans)} "
                             "(include it in --methods)")
        if self.seeds < 2:
            raise ValueError(f"a study needs at least 2 seeds for paired differences, got {self.seeds}")
        for name in ("iterations", "eval_every", "teacher_epochs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.runs()  # every method's config, overrides applied, is valid

    def runs(self) -> RunPlan:
        """The runs as the run engine takes them."""
        bench = benchmark(self.benchmark)
        length = bench.iterations if self.iterations is None else self.iterations
        methods = {m: method_fields(bench, m, length, self.overrides) for m in self.methods}
        changed = {k: v for k, v in (("seed", self.teacher_seed), ("epochs", self.teacher_epochs)) if v is not None}
        teacher = dataclasses.replace(bench.teacher, **changed)
        every = bench.eval_every if self.eval_every is None else self.eval_every
        return RunPlan.for_benchmark(self.benchmark, methods, iterations=length, seeds=self.seeds, eval_every=every,
                                     first_seed=self.first_seed, teacher=teacher)


def run_study(settings: StudySettings, out: Path, cache_dir: Path, *, jobs: int = 1, progress: bool = True,
              fresh: bool = False) -> dict[str, Any]:
    """Run (or resume) the study into ``out``; write ``study.json``, ``study.md``, ``curves.png`` and
    ``forgetting.png``; return the report.

    Finished runs are kept in ``out/runs`` and reused when the study is run again with the same settings
    (unfinished ones resume from their checkpoints); other settings are refused unless ``fresh``.
    """
    settings.check()
    runs_settings = settings.runs()
    _claim(out, runs_settings, fresh)
    runs, teacher_acc = run_plan(runs_settings, out, cache_dir, progress, resume=not fresh, jobs=jobs)
    report = study_report(settings, runs_settings, runs, teacher_acc, jobs)
    atomic_write_text(json.dumps(report, indent=2), out / "study.json")
    atomic_write_text(format_study(report) + "\n", out / "study.md")
    plot_study(report, out)
    return report


def _claim(out: Path, runs: RunPlan, fresh: bool) -> None:
    """Record the settings the runs in ``out`` belong to; refuse a folder holding another study's runs."""
    marker = out / "settings.json"
    mine = json.dumps(asdict(runs), sort_keys=True)
    if marker.exists() and not fresh and json.loads(marker.read_text(encoding="utf-8")) != json.loads(mine):
        raise ValueError(f"{str(out)!r} holds the runs of a study with other settings; use another --out, or "
                         "--fresh to discard them")
    atomic_write_text(mine, marker)


def study_report(settings: StudySettings, runs_settings: RunPlan, runs: list[dict[str, Any]],
                 teacher_acc: float, jobs: int) -> dict[str, Any]:
    """Per method: mean ± std of every statistic; per comparison: the paired differences and their verdicts."""
    paired = [{"method": m, "reference": r, "statistics": paired_differences(runs, m, r)}
              for m, r in comparisons(settings.methods)]
    return {"kind": "study", "settings": asdict(settings), "runs_settings": asdict(runs_settings),
            "teacher": {"arch": runs_settings.teacher.arch, "seed": runs_settings.teacher.seed,
                        "test_accuracy": teacher_acc},
            "student_arch": benchmark(settings.benchmark).student_arch, "stats_from_fraction": STATS_FROM,
            "confidence": CONFIDENCE, "power": POWER, "summary": summarize(runs), "comparisons": paired,
            "jobs": jobs, "wall_time_s": sum(r["wall_time_s"] for r in runs), "probe_cost": probe_cost(runs),
            "runs": runs, **environment()}


def probe_cost(runs: list[dict[str, Any]]) -> dict[str, float]:
    """What measuring forgetting cost: the probes' seconds against the runs' wall time, summed over runs."""
    probes = sum(r["forgetting_probes"]["seconds"] for r in runs if isinstance(r.get("forgetting_probes"), dict))
    wall = sum(r["wall_time_s"] for r in runs)
    return {"probe_seconds": probes, "wall_seconds": wall, "share": probes / wall if wall > 0 else 0.0}


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


def format_study(report: dict[str, Any]) -> str:
    """The study's tables: statistics per method, then each comparison's paired differences (each method against
    its twin, the meta steps against the released one) with their detectable differences and verdicts."""
    s, teacher = report["settings"], report["teacher"]
    runs = report["runs_settings"]
    changed = "".join(f"; {k}={v}" for k, v in s.get("overrides", {}).items())
    lines = [f"Study on {s['benchmark']}{changed}: {len(s['methods'])} methods × {s['seeds']} seeds "
             f"({runs['first_seed']}..{runs['first_seed'] + s['seeds'] - 1}), {runs['iterations']} iterations; "
             f"teacher {teacher['arch']} (seed {teacher['seed']}) {100 * teacher['test_accuracy']:.2f}%, student "
             f"{report['student_arch']}; μ, σ² and largest drop over the second half of the evaluations; average "
             "forgetting on the probes at the last evaluation; mean ± std over seeds",
             "", "| method | final % | best % | μ[acc] % | σ²[acc] ×1e-4 | largest drop % | avg forgetting % | "
             "wall s |", "|---|---|---|---|---|---|---|---|"]
    for method, stats in report["summary"].items():
        cells = " | ".join(mean_std(stats[k], STAT_SCALE[k]) for k in STAT_KEYS)
        lines.append(f"| {method} | {cells} | {mean_std(stats['wall_time_s'])} |")
    cost = report["probe_cost"]
    lines += ["", f"Measuring forgetting took {cost['probe_seconds']:.1f} s of the runs' {cost['wall_seconds']:.0f} s "
              f"({100 * cost['share']:.2f}%)."]
    lines += ["", f"Paired differences (mean over seeds, {int(100 * report['confidence'])}% bootstrap interval), the "
              f"smallest difference detectable with {int(100 * report['power'])}% power from their spread, and the "
              "verdict:", "",
              "| method | vs | Δ μ[acc] % | detectable | verdict | Δ avg forgetting % | detectable | verdict | "
              "Δ final % | Δ σ² ×1e-4 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["comparisons"]:
        diff = row["statistics"]
        cells = [_difference(diff["mean"], "mean"), _detectable(diff["mean"], "mean"),
                 diff["mean"].get("verdict") or "—", _difference(diff["forgetting"], "forgetting"),
                 _detectable(diff["forgetting"], "forgetting"), diff["forgetting"].get("verdict") or "—",
                 _difference(diff["final"], "final"), _difference(diff["variance"], "variance")]
        lines.append(f"| {row['method']} | {row['reference']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _detectable(row: dict[str, Any], key: str) -> str:
    return "—" if row.get("detectable") is None else f"±{STAT_SCALE[key] * row['detectable']:.2f}"


def _difference(row: dict[str, Any], key: str) -> str:
    if row["mean"] is None:
        return "—"
    scale = STAT_SCALE[key]
    low, high = row["interval"]
    return f"{scale * row['mean']:+.2f} [{scale * low:+.2f}, {scale * high:+.2f}]"


def plot_study(report: dict[str, Any], out: Path) -> None:
    """``curves.png``: mean test accuracy per method with a ±1 std band over seeds; ``forgetting.png``: the
    mean average forgetting on the probes at each evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, key, label in (("curves.png", "accuracy", "test accuracy"),
                             ("forgetting.png", "forgetting", "average forgetting on the probes")):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for method in report["summary"]:
            mine = [r for r in report["runs"] if r["method"] == method]
            curves = np.array([[np.nan if v is None else v for v in r[key]] for r in mine], dtype=np.float64)
            if curves.size == 0 or len({len(r[key]) for r in mine}) != 1:
                continue
            with warnings.catch_warnings():  # no forgetting is defined before a probe's second evaluation
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(curves, axis=0), np.nanstd(curves, axis=0)
            x = mine[0]["iterations"]
            ax.plot(x, mean, label=method, linewidth=1.5)
            ax.fill_between(x, mean - std, mean + std, alpha=0.15)
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        ax.set_title(f"{report['settings']['benchmark']}: {label}, mean ± std over {report['settings']['seeds']} seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=3)
        fig.tight_layout()
        atomic_write(out / name, lambda fh, fig=fig: fig.savefig(fh, format="png", dpi=120))
        plt.close(fig)
