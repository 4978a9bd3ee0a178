"""Run reports: metrics appended per evaluation (JSONL, TensorBoard when installed), ``report.json``
with the accuracy-curve statistics, accuracy plots, and the side-by-side comparison of runs."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from ..runtime import selfcheck
from ..runtime.checkpoint import atomic_write, atomic_write_text
from ..runtime.metrics import curve_statistics
from ..training.probes import ForgettingProbes, forgetting_report

STAT_KEYS = ("final", "best", "mean", "variance", "max_drop", "forgetting")
# shown as %, σ² ×1e-4; "forgetting" is the average forgetting on the probes at the last evaluation
STAT_SCALE = {"final": 100, "best": 100, "mean": 100, "variance": 1e4, "max_drop": 100, "forgetting": 100}
REPORT, METRICS, PLOT = "report.json", "metrics.jsonl", "accuracy.png"


# ----------------------------------------------------------------------------- during a run
class MetricsLog:
    """Appends one JSON line per evaluation to ``path`` (flushed at once) and, when TensorBoard is
    installed, the same scalars to ``path``'s folder.

    ``previous`` (a resumed run's evaluations) replaces the file's content first, so lines written
    after the checkpoint by an interrupted run do not survive.
    """

    def __init__(self, path: Path, previous: list[dict[str, float]] = ()) -> None:
        atomic_write_text("".join(json.dumps(r) + "\n" for r in previous), path)
        self._file: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._tensorboard = _tensorboard_writer(path.parent)

    def __call__(self, record: dict[str, float]) -> None:
        """Write one evaluation's record (it must hold ``iteration``)."""
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            for key, value in record.items():
                if key != "iteration" and isinstance(value, int | float) and not isinstance(value, bool):
                    self._tensorboard.add_scalar(f"eval/{key}", value, record["iteration"])

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _tensorboard_writer(folder: Path) -> Any:
    """A TensorBoard ``SummaryWriter`` when the package is installed, else ``None``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(folder / "tensorboard"))


class TimedEvaluation:
    """Wraps an ``evaluate(model)`` callback and adds up the seconds it takes (a report's evaluation share)."""

    def __init__(self, evaluate: Callable[[nn.Module], dict[str, float]]) -> None:
        self.evaluate = evaluate
        self.seconds = 0.0

    def __call__(self, model: nn.Module) -> dict[str, float]:
        start = time.perf_counter()
        scores = self.evaluate(model)
        self.seconds += time.perf_counter() - start
        return scores


# ----------------------------------------------------------------------------- at the end
def curve_report(evaluations: list[dict[str, Any]], probes: ForgettingProbes | None,
                 key: str = "accuracy", from_fraction: float = 0.0) -> dict[str, Any]:
    """The evaluated iterations, the curve of ``key``, the forgetting probes' part (:func:`forgetting_report`)
    and the statistics (μ, σ², largest drop from ``from_fraction`` of the evaluations on), average forgetting
    included."""
    curve = [e[key] for e in evaluations if key in e]
    forgetting = forgetting_report(evaluations, probes)
    stats = curve_statistics(curve, from_fraction=from_fraction) | {"forgetting": forgetting["average_forgetting"]} \
        if curve else {}
    return {"iterations": [e["iteration"] for e in evaluations if key in e], key: curve, "stats": stats,
            **forgetting}


def environment() -> dict[str, Any]:
    """Versions, machine, and the backend each fast path ran with and why (:mod:`lrwa_fast.runtime.selfcheck`), for a
    report."""
    from .. import __version__

    cuda = torch.cuda.is_available()
    return {"versions": {"lrwa_fast": __version__, "torch": torch.__version__, "python": sys.version.split()[0],
                         "cuda": torch.version.cuda},
            "machine": {"platform": platform.platform(), "processor": platform.machine(),
                        "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                        "gpu": torch.cuda.get_device_name() if cuda else None},
            "fast_paths": selfcheck.usage()}


def write_report(out: Path, report: dict[str, Any]) -> None:
    """``out/report.json`` and, when the report has an accuracy curve, ``out/accuracy.png``."""
    atomic_write_text(json.dumps(report, indent=2), out / REPORT)
    if report.get("accuracy"):
        plot_curves([{**report, "method": report.get("label", "run")}], out / PLOT)


# ----------------------------------------------------------------------------- several runs
def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and (population) std over seeds of every statistic, per method, plus wall time."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == method]
        rows = {k: [r["stats"].get(k) for r in mine] for k in STAT_KEYS}
        rows["wall_time_s"] = [r["wall_time_s"] for r in mine]
        summary[method] = {k: _mean_std(v) for k, v in rows.items()}
    return summary


def _mean_std(values: list[float | None]) -> dict[str, Any]:
    """Mean, population std and count of the values that are not ``None`` (``None`` for none)."""
    known = [v for v in values if v is not None]
    if not known:
        return {"mean": None, "std": None, "n": 0}
    t = torch.tensor(known, dtype=torch.float64)
    return {"mean": float(t.mean()), "std": float(t.std(unbiased=False)), "n": len(known)}


def plot_curves(runs: list[dict[str, Any]], path: Path) -> None:
    """Accuracy against iteration, one colour per method (thin: seeds, thick: their mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for colour, method in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"],
                              dict.fromkeys(r["method"] for r in runs)):
        mine = [r for r in runs if r["method"] == method]
        for r in mine:
            ax.plot(r["iterations"], r["accuracy"], color=colour, alpha=0.3, linewidth=0.8)
        if len({len(r["accuracy"]) for r in mine}) == 1:  # a mean only over curves of one length
            mean = torch.tensor([r["accuracy"] for r in mine]).mean(dim=0)
            ax.plot(mine[0]["iterations"], mean.tolist(), color=colour, linewidth=2, label=method)
        else:
            ax.plot([], [], color=colour, linewidth=2, label=method)
    ax.set_xlabel("iteration")
    ax.set_ylabel("student test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120))
    plt.close(fig)


def load_run(folder: str | Path) -> dict[str, Any]:
    """A run's ``report.json`` (``ValueError`` naming the file when missing or unreadable)."""
    path = Path(folder) / REPORT
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{str(path)!r} does not exist: is {str(folder)!r} a finished run's folder?") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not a readable report ({type(err).__name__}: {err})") from None
    if not isinstance(report, dict) or not report.get("accuracy") or not report.get("stats"):
        raise ValueError(f"{str(path)!r} holds no accuracy curve (was the run evaluated?)")
    return {**report, "method": report.get("label", Path(folder).name), "folder": str(folder)}


def mean_std(stat: dict[str, float], scale: float = 1.0) -> str:
    """``mean ± std`` of a :func:`summarize` statistic, times ``scale``, to two decimals; the value alone for one
    seed (a spread of one value says nothing); ``—`` when unknown."""
    if stat["mean"] is None:
        return "—"
    if stat.get("n", 2) < 2:
        return f"{scale * stat['mean']:.2f}"
    return f"{scale * stat['mean']:.2f} ± {scale * stat['std']:.2f}"


def format_comparison(runs: list[dict[str, Any]]) -> str:
    """One row per run, then mean ± std over the runs of each label (method or preset)."""
    head = "| final % | best % | μ[acc] % | σ²[acc] ×1e-4 | largest drop % | avg forgetting % |"
    lines = ["| run | label | seed | iterations " + head + " images/s | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        cells = " | ".join("—" if r["stats"].get(k) is None else f"{STAT_SCALE[k] * r['stats'][k]:.2f}"
                           for k in STAT_KEYS)
        lines.append(f"| {r['folder']} | {r['method']} | {r.get('seed', '')} | {r['iterations'][-1]} | {cells} | "
                     f"{r.get('images_per_second', 0):.1f} | {r.get('wall_time_s', 0):.1f} |")
    lines += ["", "| label | runs " + head + " wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for label, stats in summarize(runs).items():
        cells = " | ".join(mean_std(stats[k], STAT_SCALE[k]) for k in STAT_KEYS)
        wall = stats["wall_time_s"]
        lines.append(f"| {label} | {stats['final']['n']} | {cells} | {wall['mean']:.1f} ± {wall['std']:.1f} |")
    return "\n".join(lines)


def compare(folders: list[str], plot: Path | None = None) -> str:
    """The comparison table of the runs in ``folders``; their curves on one plot at ``plot``."""
    runs = [load_run(f) for f in folders]
    if plot is not None:
        plot_curves(runs, plot)
    return format_comparison(runs)
