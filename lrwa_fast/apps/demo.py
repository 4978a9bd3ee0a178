"""``lrwa-fast demo``: data-free distillation on an embedded benchmark (:mod:`.embedded`: scikit-learn's
8×8 digits by default, or MNIST-1D), LRwA against DFAD, run by the run engine (:mod:`.runs`); writes
``report.json`` and ``accuracy.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..config import DFADConfig
from ..runtime.checkpoint import atomic_write_text
from ..runtime.distributed import Ranks
from .embedded import benchmark
from .executors import run_plan
from .reports import STAT_KEYS, STAT_SCALE, mean_std, plot_curves, summarize
from .runs import STATS_FROM, RunPlan, method_settings

# The digits demo's LRwA settings (chosen from the ablation, docs/results.md); on other benchmarks LRwAConfig's.
DIGITS_LRWA = dict(memory_capacity=2048, memory_batch_size=32, memory_insert_size=32, memory_insert_every=1,
                   memory_start=0, memory_policy="reservoir", inner_lr=0.05, meta_mode="exact", retain_weight=0.25,
                   bn_mode="acquire")


def demo_methods(name: str, iterations: int) -> dict[str, DFADConfig]:
    """The demo's two methods on benchmark ``name``: LRwA and DFAD."""
    bench = benchmark(name)
    lrwa = DIGITS_LRWA if name == "digits" else {}
    return {"LRwA": method_settings(bench, "lrwa", lrwa, iterations), "DFAD": method_settings(bench, "dfad", {},
                                                                                              iterations)}


def demo_plan(name: str = "digits", *, iterations: int | None = None, **fields: Any) -> RunPlan:
    """The demo on benchmark ``name``: LRwA and DFAD (its run length unless ``iterations``; ``fields``: other
    settings of the plan)."""
    length = benchmark(name).iterations if iterations is None else iterations
    return RunPlan.for_benchmark(name, demo_methods(name, length), iterations=length, **fields)


def run_demo(plan: RunPlan, out_dir: Path, cache_dir: Path, progress: bool = True,
             resume: bool = False, jobs: int = 1) -> dict[str, Any]:
    """:func:`~lrwa_fast.apps.runs.run_plan`, then write ``report.json`` and ``accuracy.png`` into ``out_dir``
    (rank 0)."""
    runs, teacher_acc = run_plan(plan, out_dir, cache_dir, progress, resume, jobs)
    ranks = Ranks.current()
    report = {"plan": plan.to_dict(), "benchmark": plan.benchmark,
              "teacher": {"arch": plan.teacher.arch, "test_accuracy": teacher_acc},
              "student_arch": benchmark(plan.benchmark).student_arch, "stats_from_fraction": STATS_FROM,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "jobs": jobs,
              "runs": runs, "summary": summarize(runs)}
    if not ranks.is_main:
        return report
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(report, indent=2), out_dir / "report.json")
    plot_curves(runs, out_dir / "accuracy.png")
    return report


def format_table(report: dict[str, Any], reference: str = "DFAD") -> str:
    """The comparison table: mean ± std over seeds; Δμ against ``reference`` when present."""
    teacher = report["teacher"]
    frac = report["stats_from_fraction"]
    summary = report["summary"]
    ref = summary.get(reference, {}).get("mean", {}).get("mean")
    lines = [f"Teacher ({teacher['arch']}) test accuracy: {100 * teacher['test_accuracy']:.2f}%",
             f"Student: {report['student_arch']}; μ, σ² and largest drop over evaluations from "
             f"{int(100 * frac)}% of the run on; mean ± std over seeds",
             "", "| method | seeds | final acc % | best acc % | μ[acc] % | σ²[acc] ×1e-4 | largest drop % | "
             f"avg forgetting % | Δμ vs {reference} | wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for method, stats in summary.items():
        cells = [mean_std(stats[k], STAT_SCALE[k]) for k in STAT_KEYS]
        if ref is None:
            delta = ""
        elif method == reference:
            delta = "—"  # its difference with itself
        else:
            delta = f"{100 * (stats['mean']['mean'] - ref):+.2f}"
        lines.append(f"| {method} | {stats['final']['n']} | " + " | ".join(cells) + f" | {delta} | "
                     f"{mean_std(stats['wall_time_s'])} |")
    return "\n".join(lines)
