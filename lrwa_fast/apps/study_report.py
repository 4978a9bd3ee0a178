"""A study's report as people read it: the tables of ``study.md`` and the plots ``curves.png`` and
``forgetting.png``, written from the report :func:`~lrwa_fast.apps.study.study_report` assembles."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.checkpoint import atomic_write, atomic_write_text
from .reports import STAT_KEYS, STAT_SCALE, mean_std
from .statistics import seeds_needed


def write_study(report: dict[str, Any], out: Path) -> None:
    """``study.json``, ``study.md``, ``curves.png`` and ``forgetting.png`` in ``out``."""
    atomic_write_text(json.dumps(report, indent=2), out / "study.json")
    atomic_write_text(format_study(report) + "\n", out / "study.md")
    plot_study(report, out)


def target(report: dict[str, Any]) -> str:
    """What a study (or sweep) report is on: its CIFAR preset, else its embedded benchmark."""
    return report["settings"].get("preset") or report["settings"]["benchmark"]


def _origin(teacher: dict[str, Any]) -> str:
    return f"seed {teacher['seed']}" if "seed" in teacher else f"from {teacher['checkpoint']}"


def format_study(report: dict[str, Any]) -> str:
    """The study's tables: statistics per method, then each comparison's paired differences (each method against
    its twin, the meta steps against the released one) with their detectable differences and verdicts."""
    s, teacher = report["settings"], report["teacher"]
    runs = report["runs_settings"]
    changed = "".join(f"; {k}={v}" for k, v in s.get("overrides", {}).items())
    lines = [f"Study on {target(report)}{changed}: {len(s['methods'])} methods × {s['seeds']} seeds "
             f"({runs['first_seed']}..{runs['first_seed'] + s['seeds'] - 1}), {runs['iterations']} iterations; "
             f"teacher {teacher['arch']} ({_origin(teacher)}) {100 * teacher['test_accuracy']:.2f}%, student "
             f"{report['student_arch']}; μ, σ² and largest drop over the second half of the evaluations; average "
             "forgetting on the probes at the last evaluation; mean ± std over seeds",
             "", "| method | final % | best % | μ[acc] % | σ²[acc] ×1e-4 | largest drop % | avg forgetting % | "
             "wall s |", "|---|---|---|---|---|---|---|---|"]
    for method, stats in report["summary"].items():
        cells = " | ".join(mean_std(stats[k], STAT_SCALE[k]) for k in STAT_KEYS)
        lines.append(f"| {method} | {cells} | {mean_std(stats['wall_time_s'])} |")
    lines += _published(report)
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


def _published(report: dict[str, Any]) -> list[str]:
    """The accuracies published for the preset's pair, beside ours (final % is what the tables report)."""
    published = report.get("published")
    if not published:
        return []
    methods = ", ".join(f"{name} {value:.2f}" for name, value in published["methods"].items())
    ours = ", ".join(f"{method} {mean_std(stats['final'], STAT_SCALE['final'])}"
                     for method, stats in report["summary"].items())
    return ["", f"Published for this pair ({published['source']}): teacher {published['teacher']:.2f} (ours "
                f"{100 * report['teacher']['test_accuracy']:.2f}), student trained on the data "
                f"{published['student']:.2f}; data-free students (final %): {methods}. Ours (final %): {ours}."]


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
        ax.set_title(f"{target(report)}: {label}, mean ± std over {report['settings']['seeds']} seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=3)
        fig.tight_layout()
        atomic_write(out / name, lambda fh, fig=fig: fig.savefig(fh, format="png", dpi=120))
        plt.close(fig)


def format_plan(report: dict[str, Any], deltas: list[float], parallel: int) -> str:
    """``lrwa-fast study --plan``: per comparison and statistic (μ[acc], forgetting), the paired seeds that detect
    each Δ (points) at the report's power from the pilot's spread, and the runs and hours they take (each
    seed runs both methods; hours: ⌈runs / ``parallel``⌉ waves of the pilot's mean run time); then the whole
    study at the largest count."""
    summary, methods = report["summary"], list(report["summary"])
    hours = {m: summary[m]["wall_time_s"]["mean"] / 3600 for m in methods}

    def wall(runs: int, mean_hours: float) -> float:  # runs in waves of `parallel`
        return math.ceil(runs / parallel) * mean_hours

    lines = [f"Plan from the pilot study of {target(report)} ({report['settings']['seeds']} seeds): "
             f"paired seeds to detect each Δ with {int(100 * report['power'])}% power at the "
             f"{round(100 * (1 - report['confidence']))}% level, from the pilot's spread of the paired "
             f"differences; runs and hours with {parallel} run(s) at a time", "",
             "| method | vs | statistic | pilot spread (points) | Δ | seeds | more seeds | runs | hours |",
             "|---|---|---|---|---|---|---|---|---|"]
    most = dict.fromkeys(deltas, 2)
    for row in report["comparisons"]:
        pair_hours = (hours[row["method"]] + hours[row["reference"]]) / 2
        for key, label in (("mean", "μ[acc]"), ("forgetting", "forgetting")):
            values = row["statistics"][key]["differences"]
            if len(values) < 2:
                continue
            spread = STAT_SCALE[key] * float(np.std(values, ddof=1))
            for delta in deltas:
                n = seeds_needed(spread, delta, report["confidence"], report["power"])
                most[delta] = max(most[delta], n)
                lines.append(f"| {row['method']} | {row['reference']} | {label} | {spread:.2f} | {delta:g} | {n} | "
                             f"{max(0, n - len(values))} | {2 * n} | {wall(2 * n, pair_hours):.2f} |")
    lines += ["", "The whole study (every method) at the most seeds any comparison needs:", "",
              "| Δ | seeds | runs | hours |", "|---|---|---|---|"]
    for delta, n in most.items():
        lines.append(f"| {delta:g} | {n} | {n * len(methods)} | "
                     f"{wall(n * len(methods), sum(hours.values()) / len(methods)):.2f} |")
    return "\n".join(lines)
