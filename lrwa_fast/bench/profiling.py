"""What an LRwA step costs and where: per-phase times against a DFAD step, plus Chrome traces.

Each variant runs iterations of one generator step and one student step (so every phase —
generator, teacher forward, acquisition, inner update, retention, second-order backward,
optimiser, memory sample and insert or, for the generative memory, VAE sample, memory teacher forward
and VAE update — appears once per iteration) under a
:class:`~lrwa_fast.phases.PhaseTimer`; time outside any phase is reported as ``other``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from ..config import DFADConfig, LRwAConfig
from ..runtime.distributed import resolve_device
from ..runtime.phases import PhaseTimer
from ..training import DFADTrainer, LRwATrainer, Trainer
from .cases import CASES, BenchCase, case_config, case_models, fill_memory

VARIANTS: dict[str, dict[str, Any]] = {
    "DFAD": {}, "LRwA first_order": {"meta_mode": "first_order"}, "LRwA exact": {"meta_mode": "exact"},
    "LRwA fd central": {"meta_mode": "finite_difference", "fd_scheme": "central"},
    "LRwA fd one_sided": {"meta_mode": "finite_difference", "fd_scheme": "one_sided"},
    "LRwA exact generative": {"meta_mode": "exact", "memory_kind": "generative"},
}


def _trainer(variant: str, case: BenchCase, device: torch.device) -> Trainer:
    extra = dict(student_steps=1, generator_steps=1, **VARIANTS[variant])
    if variant == "DFAD":
        return DFADTrainer(*case_models(case, device, 64), case_config(DFADConfig, case, device, **extra))
    trainer = LRwATrainer(*case_models(case, device, 64), case_config(LRwAConfig, case, device, **extra))
    fill_memory(trainer)
    return trainer


def profile_variant(variant: str, case: BenchCase, device: torch.device, steps: int, warmup: int,
                    trace: Path | None) -> dict[str, Any]:
    """Per-phase milliseconds per iteration (mean over ``steps``) and the iteration's wall time."""
    trainer = _trainer(variant, case, device)
    for _ in range(warmup):
        trainer.step()
    timer = PhaseTimer(device)
    timer.sync()
    start = time.perf_counter()
    with timer.active():
        for _ in range(steps):
            trainer.step()
    timer.sync()
    total_ms = 1e3 * (time.perf_counter() - start) / steps
    phases = {name: 1e3 * s / steps for name, s in timer.seconds.items()}
    phases["other"] = max(0.0, total_ms - sum(phases.values()))
    if trace is not None:
        _chrome_trace(trainer, device, trace)
    return {"total_ms": total_ms, "phases_ms": phases}


def _chrome_trace(trainer: Trainer, device: torch.device, path: Path) -> None:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(3):
            trainer.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(path))


def profile(case_name: str = "cnn", device_name: str = "auto", steps: int = 20, warmup: int = 3,
            out_dir: str | None = None, overrides: dict[str, int | str] | None = None) -> dict[str, Any]:
    """Profile every variant of ``VARIANTS`` on a named case; traces go to ``out_dir`` if given."""
    if case_name not in CASES:
        raise ValueError(f"unknown case {case_name!r}; available: {sorted(CASES)}")
    case = dataclasses.replace(CASES[case_name], **(overrides or {}))
    device = resolve_device(device_name)
    results = {}
    for variant in VARIANTS:
        trace = Path(out_dir) / f"trace_{variant.replace(' ', '_')}.json" if out_dir else None
        results[variant] = profile_variant(variant, case, device, steps, warmup, trace)
    return {"case": case.name, "device": str(device), "steps": steps, "variants": results}


def format_profile(report: dict[str, Any]) -> str:
    """Side-by-side table: milliseconds and share of the iteration per phase and variant."""
    variants = report["variants"]
    names: list[str] = []
    for v in variants.values():
        names += [n for n in v["phases_ms"] if n not in names and n != "other"]
    names.append("other")
    header = "| phase | " + " | ".join(f"{v} ms | {v} %" for v in variants) + " |"
    lines = [f"{report['case']} on {report['device']}, mean over {report['steps']} iterations "
             "(1 generator step + 1 student step each)", "", header,
             "|---|" + "---|---|" * len(variants)]
    for name in names:
        cells = []
        for v in variants.values():
            ms = v["phases_ms"].get(name)
            cells.append("" if ms is None else f"{ms:.2f} | {100 * ms / v['total_ms']:.1f}")
        lines.append(f"| {name} | " + " | ".join(c if c else " | " for c in cells) + " |")
    totals = " | ".join(f"{v['total_ms']:.2f} | 100" for v in variants.values())
    lines.append(f"| **iteration** | {totals} |")
    return "\n".join(lines)
