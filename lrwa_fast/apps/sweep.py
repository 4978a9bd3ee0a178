"""``lrwa-fast study --sweep KEY=V1,V2,...``: the study at each value of one setting every method shares (the
same seeds and teacher at every value), and where retention starts to pay: each compared method's paired
Δμ[acc] and Δ forgetting against its twin without memory, plotted against that twin's own average forgetting
at the value. Every value's study is a folder of its own (``KEY=VALUE``), finished runs are reused."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from ..runtime import selfcheck
from ..runtime.checkpoint import atomic_write, atomic_write_text
from .reports import STAT_SCALE, environment
from .study import METHODS, OWNED_BY_THE_STUDY, StudySettings, run_study
from .study_report import target


@dataclass(frozen=True)
class Sweep:
    """One config key (dotted, e.g. ``generator_optimizer.lr``) and the values it takes, in order."""

    key: str
    values: tuple[Any, ...]

    def folder(self, value: Any) -> str:
        """The folder of one value's study."""
        return f"{self.key}={value}"


def parse_sweep(text: str) -> Sweep:
    """``"KEY=V1,V2,..."`` → :class:`Sweep`, each value read as YAML (numbers, booleans, strings)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    values = tuple(_value(v) for v in raw.split(",") if v.strip())
    if not sep or not key or len(values) < 2:
        raise ValueError(f"--sweep must look like KEY=V1,V2,... with two values or more (e.g. "
                         f"generator_optimizer.lr=1e-3,3e-3,1e-2), got {text!r}")
    if len({repr(v) for v in values}) != len(values):
        raise ValueError(f"--sweep {key}: a value is given twice in {list(values)}")
    if key in OWNED_BY_THE_STUDY or key.split(".")[0] in OWNED_BY_THE_STUDY:
        raise ValueError(f"--sweep {key}: the study sets {key} itself (use --iterations, --seeds, --first-seed)")
    return Sweep(key, values)


def _value(raw: str) -> Any:
    """A value as YAML reads it, numbers in any notation included (YAML 1.1 leaves ``1e-3`` a string)."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def value_settings(settings: StudySettings, sweep: Sweep, value: Any) -> StudySettings:
    """The study at one value of the sweep."""
    return dataclasses.replace(settings, overrides={**settings.overrides, sweep.key: value})


def check_sweep(settings: StudySettings, sweep: Sweep) -> None:
    """Refuse, before any work, a sweep whose key or a value does not make a valid config for every method."""
    for value in sweep.values:
        try:
            value_settings(settings, sweep, value).check()
        except ValueError as err:
            raise ValueError(f"--sweep {sweep.key}={value}: {err}") from None


def run_sweep(settings: StudySettings, sweep: Sweep, out: Path, cache_dir: Path, *, progress: bool = True,
              **options: Any) -> dict[str, Any] | None:
    """The study at every value (``out/KEY=VALUE``; ``options``: :func:`~lrwa_fast.apps.study.run_study`'s), then
    ``sweep.json``, ``sweep.md`` and ``sweep.png`` in ``out``; returns the sweep's report (``None`` when the
    studies were only submitted)."""
    check_sweep(settings, sweep)
    if options.get("slurm") is not None and options.get("wait", True):  # every value's jobs queued at once
        for value in sweep.values:
            run_study(value_settings(settings, sweep, value), out / sweep.folder(value), cache_dir,
                      progress=progress, **(options | {"wait": False}))
        options = options | {"fresh": False}  # what was just submitted is kept
    studies = []
    for value in sweep.values:
        if progress:
            print(f"== {sweep.key}={value}", flush=True)
        studies.append(run_study(value_settings(settings, sweep, value), out / sweep.folder(value), cache_dir,
                                 progress=progress, **options))
    if any(study is None for study in studies):
        return None
    report = sweep_report(settings, sweep, studies)
    atomic_write_text(json.dumps(report, indent=2), out / "sweep.json")
    atomic_write_text(format_sweep(report) + "\n", out / "sweep.md")
    plot_sweep(report, out / "sweep.png")
    return report


def sweep_report(settings: StudySettings, sweep: Sweep, studies: list[dict[str, Any]]) -> dict[str, Any]:
    """Per value and comparison: the twin's average forgetting and the paired differences of μ[acc] and
    forgetting (with their intervals, detectable differences and verdicts)."""
    points = []
    for value, study in zip(sweep.values, studies):
        for row in study["comparisons"]:
            twin = study["summary"][row["reference"]]
            if twin["forgetting"]["mean"] is None:  # no probes: nothing to plot against
                continue
            points.append({"value": value, "method": row["method"], "reference": row["reference"],
                           "twin": METHODS[row["method"]].twin == row["reference"],
                           "reference_forgetting": twin["forgetting"]["mean"], "reference_mean": twin["mean"]["mean"],
                           "mean": row["statistics"]["mean"], "forgetting": row["statistics"]["forgetting"]})
    return {"kind": "sweep", "key": sweep.key, "values": list(sweep.values), "settings": asdict(settings),
            "folders": [sweep.folder(v) for v in sweep.values], "points": points,
            "wall_time_s": sum(s["wall_time_s"] for s in studies), **environment(),
            "fast_paths": selfcheck.merged([s.get("fast_paths", {}) for s in studies])}


def format_sweep(report: dict[str, Any]) -> str:
    """One row per value and comparison: the twin's forgetting and μ[acc], then the paired differences."""
    s = report["settings"]
    lines = [f"Sweep of {report['key']} over {report['values']} on {target(report)}: {len(s['methods'])} methods × "
             f"{s['seeds']} seeds (the same seeds and teacher at every value); Δ = method − twin, paired by seed, "
             "[95% bootstrap interval], ± detectable difference (80% power)", "",
             f"| {report['key']} | method | vs | twin's forgetting % | twin's μ[acc] % | Δ μ[acc] % | verdict | "
             "Δ forgetting % | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for p in report["points"]:
        mean, forgetting = p["mean"], p["forgetting"]
        lines.append(f"| {p['value']} | {p['method']} | {p['reference']} | {100 * p['reference_forgetting']:.2f} | "
                     f"{100 * p['reference_mean']:.2f} | {_cell(mean, 'mean')} | {mean.get('verdict') or '—'} | "
                     f"{_cell(forgetting, 'forgetting')} | {forgetting.get('verdict') or '—'} |")
    return "\n".join(lines)


def _cell(row: dict[str, Any], key: str) -> str:
    if row.get("mean") is None:
        return "—"
    scale, (low, high) = STAT_SCALE[key], row["interval"]
    return f"{scale * row['mean']:+.2f} [{scale * low:+.2f}, {scale * high:+.2f}] ±{scale * row['detectable']:.2f}"


def plot_sweep(report: dict[str, Any], path: Path) -> None:
    """Two panels against the twin's average forgetting at each value: Δμ[acc] and Δ forgetting of each method
    against its twin, with the paired t interval as error bars and the value beside each point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    twins = [p for p in report["points"] if p["twin"]]
    for ax, key, label in zip(axes, ("mean", "forgetting"), ("Δ μ[acc] (points)", "Δ average forgetting (points)")):
        for method in dict.fromkeys(p["method"] for p in twins):
            mine = [p for p in twins if p["method"] == method and p[key].get("mean") is not None]
            if not mine:
                continue
            x = [100 * p["reference_forgetting"] for p in mine]
            y = [100 * p[key]["mean"] for p in mine]
            err = [[100 * (p[key]["mean"] - p[key]["t_interval"][0]) for p in mine],
                   [100 * (p[key]["t_interval"][1] - p[key]["mean"]) for p in mine]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{method} − {mine[0]['reference']}")
            for p, xi, yi in zip(mine, x, y):
                ax.annotate(f"{p['value']:g}" if isinstance(p["value"], float) else str(p["value"]), (xi, yi),
                            textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel("the twin's average forgetting at the value (points)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{target(report)}: sweep of {report['key']}, mean over "
                 f"{report['settings']['seeds']} paired seeds, 95% t intervals")
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120))
    plt.close(fig)
