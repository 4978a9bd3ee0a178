"""The methods side by side: one whole iteration of DFAD, LRwA and each method papers compare against
(:data:`~lrwa_fast.bench.cases.METHOD_VARIANTS`) on the same pair and batch, timed round-robin in one run, as
ratios to the DFAD iteration. An iteration is each method's own: DFAD's generator step and student steps, a synthesis
round (its ``generator_steps`` steps) and the same student steps for DeepInversion, CMI and Fast.
``lrwa-fast bench --methods`` prints the table; ``lrwa-fast profile --methods`` breaks each down by phase.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..runtime.distributed import resolve_device
from .cases import CASES, METHOD_VARIANTS, BenchCase, method_trainer
from .timing import measure, summarize_times


def run_methods(case: BenchCase, device: torch.device, repeats: int, warmup: int,
                methods: tuple[str, ...] = tuple(METHOD_VARIANTS)) -> dict[str, Any]:
    """Median iteration time of each method on ``case`` and its ratio to DFAD's (measured in the same run)."""
    unknown = [m for m in methods if m not in METHOD_VARIANTS]
    if unknown or "dfad" not in methods:
        raise ValueError(f"methods must include 'dfad' and come from {list(METHOD_VARIANTS)}, got {list(methods)}")
    trainers = {name: method_trainer(name, case, device) for name in methods}
    stats = summarize_times(measure({name: t.step for name, t in trainers.items()}, device, repeats, warmup))
    for name, s in stats.items():
        s["vs_dfad_iteration"] = s["median_ms"] / stats["dfad"]["median_ms"]
        s["synthesis_steps"] = trainers[name].settings.loop.generator_steps
        s["synthesis"] = trainers[name].settings.synthesis.kind
    return {"case": dataclasses.asdict(case), "name": case.name, "device": str(device), "methods": stats}


def bench_methods(case_names: list[str], device_name: str = "auto", repeats: int = 10, warmup: int = 2,
                  overrides: dict[str, int | str] | None = None) -> list[dict[str, Any]]:
    """:func:`run_methods` for each named case."""
    unknown = [n for n in case_names if n not in CASES]
    if unknown:
        raise ValueError(f"unknown bench case(s) {unknown}; available: {sorted(CASES)}")
    device = resolve_device(device_name)
    return [run_methods(dataclasses.replace(CASES[n], **(overrides or {})), device, repeats, warmup)
            for n in case_names]


def format_methods(results: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`bench_methods` results."""
    lines = ["| case | method | samples made by | median ms / iteration | IQR ms | × DFAD |",
             "|---|---|---|---|---|---|"]
    for result in results:
        for name, s in result["methods"].items():
            made = "generator, 1 step" if s["synthesis"] == "generator" else \
                f"{s['synthesis']} round, {s['synthesis_steps']} steps"
            lines.append(f"| {result['name']} | {name} | {made} | {s['median_ms']:.1f} | "
                         f"{s['q1_ms']:.1f}–{s['q3_ms']:.1f} | {s['vs_dfad_iteration']:.2f} |")
    lines.append("An iteration: the method's sample making, then 5 student steps (each method's own update: KD, "
                 "ZSKT's attention transfer, LRwA's exact meta step).")
    return "\n".join(lines)
