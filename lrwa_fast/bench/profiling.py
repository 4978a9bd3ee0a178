"""What an LRwA iteration costs and where: per-phase times against a DFAD iteration, plus Chrome traces.

Every variant (and DFAD a second time, the A/A pair that shows how large a real difference must be)
runs the configured schedule (``DFADConfig``'s 1 generator + 5 student steps unless told otherwise).
The variants are measured in blocks, round-robin (so the machine's drift hits all alike) with the
order rotated each round (so none is always first or last): a block is one untimed iteration (so the
timed ones follow the variant's own work, its weights and activations in the caches and its sizes in
the allocator, not the previous variant's) and then timed ones under a
:class:`~lrwa_fast.runtime.phases.PhaseTimer`, with Python's garbage collector paused.
Each phase and the iteration are reported as the median and inter-quartile range over the rounds,
and the iteration's ratio to DFAD as the median and range of the ratios within each round; time
outside any phase is reported as ``other``. The profiler's own log lines go to a file, not the output.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import os
import sys
import time
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..config import DFADConfig, LRwAConfig
from ..runtime import selfcheck
from ..runtime.distributed import resolve_device
from ..runtime.phases import PhaseTimer
from ..training import DFADTrainer, LRwATrainer, Trainer
from .cases import CASES, METHOD_VARIANTS, BenchCase, case_config, case_models, fill_memory, method_trainer
from .timing import quartiles, round_robin

VARIANTS: dict[str, dict[str, Any]] = {
    "DFAD": {}, "LRwA first_order": {"meta_mode": "first_order"}, "LRwA exact": {"meta_mode": "exact"},
    "LRwA fd central": {"meta_mode": "finite_difference", "fd_scheme": "central"},
    "LRwA fd one_sided": {"meta_mode": "finite_difference", "fd_scheme": "one_sided"},
    "LRwA exact generative": {"meta_mode": "exact", "memory_kind": "generative"},
}
# profile --methods: DFAD, LRwA and the methods papers compare against (bench.cases.METHOD_VARIANTS), by label.
METHOD_LABELS: dict[str, str] = {"DFAD": "dfad", "LRwA": "lrwa", "DAFL": "dafl", "ZSKT": "zskt", "DFQ": "dfq",
                                 "DeepInv": "deepinv", "CMI": "cmi", "CMI+LRwA": "cmi_lrwa", "Fast": "fast"}
BASELINE = "DFAD"
AGAIN = " (again)"  # suffix of the A/A column: a variant measured a second time, by a twin trainer
PROFILER_LOG = "profiler.log"  # where the profiler's own messages go, in the output folder


@dataclasses.dataclass(frozen=True)
class ProfilePlan:
    """What one profiled iteration is (steps per iteration) and how it is sampled (rounds of blocks)."""

    generator_steps: int = DFADConfig.generator_steps
    student_steps: int = DFADConfig.student_steps
    rounds: int = 15  # blocks per variant, one per round
    block: int = 1  # timed iterations per block
    block_warmup: int = 1  # untimed iterations at the start of every block
    warmup: int = 2  # untimed iterations of every variant before the first round

    def __post_init__(self) -> None:
        low = [f"{k}={v}" for k, v in dataclasses.asdict(self).items()
               if v < (1 if k in ("rounds", "block") else 0)]
        if low:
            raise ValueError(f"profile plan: rounds and block must be >= 1, the others >= 0; got {', '.join(low)}")


def build_trainer(variant: str, case: BenchCase, device: torch.device, plan: ProfilePlan,
                  methods: bool = False) -> Trainer:
    """The trainer of a profiled variant (``"DFAD (again)"``: a twin of ``"DFAD"``) on the case's models;
    ``methods``: the variants are :data:`METHOD_LABELS` (a synthesis round keeps its own steps)."""
    steps = dict(student_steps=plan.student_steps, generator_steps=plan.generator_steps)
    if methods:
        name = METHOD_LABELS[variant.removesuffix(AGAIN)]
        own = METHOD_VARIANTS[name][1]
        return method_trainer(name, case, device, **{k: v for k, v in steps.items() if k not in own})
    extra = {**steps, **VARIANTS[variant.removesuffix(AGAIN)]}
    if variant.removesuffix(AGAIN) == BASELINE:
        return DFADTrainer(*case_models(case, device, 64), case_config(DFADConfig, case, device, **extra))
    trainer = LRwATrainer(*case_models(case, device, 64), case_config(LRwAConfig, case, device, **extra))
    fill_memory(trainer)
    return trainer


def time_block(trainer: Trainer, device: torch.device, iterations: int, warmup: int) -> dict[str, Any]:
    """One block: ``warmup`` untimed iterations, then ``iterations`` timed ones; per iteration, the
    milliseconds of every phase (``other``: outside any phase), of the whole, and the phases' calls."""
    for _ in range(warmup):
        trainer.step()
    timer = PhaseTimer(device)
    with _gc_paused(), timer.active():
        timer.sync()
        start = time.perf_counter()
        for _ in range(iterations):
            trainer.step()
        timer.sync()
        total_ms = 1e3 * (time.perf_counter() - start) / iterations
    phases = {name: 1e3 * s / iterations for name, s in timer.seconds.items()}
    phases["other"] = max(0.0, total_ms - sum(phases.values()))
    calls = {name: n / iterations for name, n in timer.calls.items()}
    return {"total_ms": total_ms, "phases_ms": phases, "calls": calls}


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Collect now, then keep the garbage collector from running inside the timed code."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def summarize_blocks(blocks: dict[str, list[dict[str, Any]]], baseline: str = BASELINE) -> dict[str, Any]:
    """Per variant: median and quartiles of each phase and of the iteration over its blocks, the calls per
    iteration, the per-block totals, and the iteration's ratio to ``baseline`` block by block (same round)."""
    out = {}
    for name, runs in blocks.items():
        phases = _phase_names(run["phases_ms"] for run in runs)
        totals = [run["total_ms"] for run in runs]
        ratios = [t / b["total_ms"] for t, b in zip(totals, blocks[baseline])]
        vs = quartiles(ratios)
        out[name] = {"phases_ms": {p: quartiles([run["phases_ms"].get(p, 0.0) for run in runs]) for p in phases},
                     "calls": runs[-1]["calls"], "total_ms": quartiles(totals), "blocks_ms": totals,
                     "vs_dfad": {**vs, "within_spread": vs["q1"] <= 1.0 <= vs["q3"]}}
    return out


def _phase_names(tables: Iterable[dict[str, Any]]) -> list[str]:
    """The phases of ``tables`` in the order first seen, ``other`` last."""
    return [*dict.fromkeys(p for table in tables for p in table if p != "other"), "other"]


def profile(case_name: str = "cnn", device_name: str = "auto", plan: ProfilePlan | None = None,
            out_dir: str | None = None, overrides: dict[str, int | str] | None = None,
            again: str | None = BASELINE, methods: bool = False) -> dict[str, Any]:
    """Profile every variant of ``VARIANTS`` (``methods``: of :data:`METHOD_LABELS`; and ``again`` a second
    time) on a named case, interleaved as ``plan`` says; Chrome traces of one iteration each go to ``out_dir`` if
    given."""
    variants = METHOD_LABELS if methods else VARIANTS
    if case_name not in CASES:
        raise ValueError(f"unknown case {case_name!r}; available: {sorted(CASES)}")
    if again is not None and again not in variants:
        raise ValueError(f"unknown variant {again!r} to measure again; available: {list(variants)}")
    plan = plan or ProfilePlan()
    load_before = _load_average()  # before this process adds its own
    case = dataclasses.replace(CASES[case_name], **(overrides or {}))
    device = resolve_device(device_name)
    names = list(variants)
    if again is not None:
        names.insert(names.index(again) + 1, again + AGAIN)
    trainers = {name: build_trainer(name, case, device, plan, methods) for name in names}
    for trainer in trainers.values():
        for _ in range(plan.warmup):
            trainer.step()
    blocks = round_robin({name: partial(time_block, trainer, device, plan.block, plan.block_warmup)
                          for name, trainer in trainers.items()}, plan.rounds, rotate=True)
    report = {"case": case.name, "device": str(device), "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "plan": dataclasses.asdict(plan), "load_average": [load_before, _load_average()],
              "variants": summarize_blocks(blocks), "log": None, "fast_paths": selfcheck.usage(), "methods": methods}
    if out_dir is not None:
        report["log"] = _chrome_traces({n: t for n, t in trainers.items() if not n.endswith(AGAIN)}, device,
                                       Path(out_dir))
    return report


def _load_average() -> float | None:
    """The machine's one-minute load average (``None`` where the system has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _chrome_traces(trainers: dict[str, Trainer], device: torch.device, out: Path) -> str | None:
    """One iteration of each trainer under ``torch.profiler``, exported as ``trace_<name>.json``; the
    profiler's messages go to ``out/profiler.log`` (returned if it has any)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    out.mkdir(parents=True, exist_ok=True)
    log = out / PROFILER_LOG
    log.unlink(missing_ok=True)
    for name, trainer in trainers.items():
        with redirected_output(log), torch.profiler.profile(activities=activities) as prof:
            trainer.step()
        prof.export_chrome_trace(str(out / f"trace_{name.replace(' ', '_')}.json"))
    return str(log) if log.exists() and log.stat().st_size else None


@contextlib.contextmanager
def redirected_output(path: Path) -> Iterator[None]:
    """Append everything written to this process's stdout and stderr (file descriptors 1 and 2, so C and
    C++ libraries' writes too) to ``path`` until the block ends."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                _flush_all()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _flush_all() -> None:
    """Flush Python's and the C library's output buffers (so nothing written inside lands outside)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).fflush(None)


def format_profile(report: dict[str, Any]) -> str:
    """Side-by-side table: per phase and variant the median ms per iteration and its quartiles, then the
    iteration and its ratio to DFAD (``≈``: 1 is within the ratio's quartiles, no measurable difference)."""
    variants, s = report["variants"], report["plan"]
    names = _phase_names(v["phases_ms"] for v in variants.values())
    again = [n for n in variants if n.endswith(AGAIN)]
    making = "its sample making (a synthesis round keeps its own steps)" if report.get("methods") else \
        f"{s['generator_steps']} generator"
    lines = [f"{report['case']} on {report['device']} (threads: {report['threads']}): an iteration is "
             f"{making} + {s['student_steps']} student steps",
             f"{len(variants)} variants round-robin (order rotated each round), {s['rounds']} rounds of "
             f"{s['block']} timed iteration(s) after {s['block_warmup']} untimed; load average "
             + " → ".join("?" if x is None else f"{x:.1f}" for x in report["load_average"]),
             *_busy(report), "ms per iteration: median (q1–q3) over the rounds", "",
             "| phase | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for name in names:
        cells = [_spread(v["phases_ms"][name]) if name in v["phases_ms"] else "" for v in variants.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **iteration** | " + " | ".join(_spread(v["total_ms"]) for v in variants.values()) + " |")
    ratios = ["1" if n == BASELINE else _ratio(v["vs_dfad"]) for n, v in variants.items()]
    lines.append(f"| **× {BASELINE}** | " + " | ".join(ratios) + " |")
    lines += ["", f"× {BASELINE}: the iteration's ratio to {BASELINE} in the same round, median (q1–q3); "
              "≈ marks a ratio whose quartiles hold 1, a difference this run cannot tell from none."]
    if again:
        a = variants[again[0]]["vs_dfad"]
        lines.append(f"{again[0]} is the same variant measured again (A/A): its ratio, {a['median']:.2f} "
                     f"({a['q1']:.2f}–{a['q3']:.2f}), is the spread a real difference must exceed.")
    if report.get("log"):
        lines.append(f"The profiler's own messages (Chrome traces) went to {report['log']}.")
    if "fast_paths" in report:
        lines.append(selfcheck.describe(report["fast_paths"]))
    return "\n".join(lines)


def _busy(report: dict[str, Any]) -> list[str]:
    """A warning line when other work loaded the machine as the profile started (half its CPUs or more)."""
    load, cpus = report["load_average"][0], report.get("cpus") or 1
    if load is None or load < cpus / 2:
        return []
    return [f"The machine was busy (load average {load:.1f} on {cpus} CPUs before the profile started): the spreads "
            "will be wide and the medians high; check `ps` and rerun on a quiet machine."]


def _spread(q: dict[str, float]) -> str:
    return f"{q['median']:.2f} ({q['q1']:.2f}–{q['q3']:.2f})"


def _ratio(q: dict[str, Any]) -> str:
    return _spread(q) + (" ≈" if q["within_spread"] else "")
