"""The run engine behind ``lrwa-fast demo``, ``lrwa-fast study`` and ``benchmarks/ablation.py``: every method ×
every seed of a :class:`RunPlan` on an embedded benchmark (:mod:`.embedded`), paired by seed.

The benchmark's teacher is trained on its real training split (cached on disk), then students are
distilled from it without data, with each method for the same iterations and seeds (the same initial
student and generator per seed), and evaluated on the real test split as they train; forgetting probes
measure how much of what each student agreed with the teacher on it later loses. Finished runs are kept,
unfinished ones checkpoint and resume.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import DFADConfig, from_dict, parse_override, set_nested, to_dict, validate
from ..data import LabelledSplit
from ..runtime.checkpoint import atomic_write_text, latest_checkpoint
from ..runtime.distributed import Ranks
from ..runtime.metrics import accuracy_evaluator, curve_statistics
from ..training import Trainer, trainer_class
from .embedded import Benchmark, TeacherRecipe, benchmark, cached_teacher
from .reports import curve_report

STATS_FROM = 0.5  # μ, σ² and largest drop over the second half of the evaluations


def method_settings(bench: Benchmark, method: str, overrides: dict[str, Any], iterations: int) -> dict[str, Any]:
    """A method's config as a plain dict (``method`` key first): the benchmark's shared settings, then
    ``overrides``."""
    cls = trainer_class(method).config_class
    return {"method": method, **to_dict(cls(**bench.shared(iterations), **overrides))}


@dataclass
class RunPlan:
    """Every method × every seed on an embedded benchmark, and everything those runs depend on (written into
    ``report.json`` and ``study.json``)."""

    iterations: int = 600
    eval_every: int = 20
    seeds: int = 1
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> config dict with a "method" key
    teacher: TeacherRecipe = field(default_factory=TeacherRecipe)
    generator_ngf: int = 32
    benchmark: str = "digits"
    first_seed: int = 0  # seeds first_seed, first_seed + 1, ...

    @classmethod
    def for_benchmark(cls, name: str, methods: dict[str, dict[str, Any]], *, iterations: int | None = None,
                      **fields: Any) -> RunPlan:
        """``methods`` on benchmark ``name``, with its run length (unless ``iterations``), evaluation interval,
        teacher and generator; ``fields``: the plan's other fields."""
        bench = benchmark(name)
        length = bench.iterations if iterations is None else iterations
        defaults = dict(iterations=length, eval_every=bench.eval_every, teacher=bench.teacher,
                        generator_ngf=bench.generator_ngf, benchmark=name)
        return cls(methods=methods, **(defaults | fields))

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))


def distill_once(method: str, method_cfg: dict[str, Any], teacher: nn.Module, data: LabelledSplit,
                 plan: RunPlan, seed: int, progress: bool,
                 run_dir: Path | None = None) -> dict[str, Any]:
    """One data-free run of ``method`` with ``seed``; returns its accuracy and forgetting curves and wall time
    (a resumed run's includes the time up to its checkpoint, kept as each evaluation's ``elapsed_s``).

    With ``run_dir`` the run checkpoints there every ``eval_every`` iterations and resumes from
    the newest checkpoint it finds.
    """
    overrides: dict[str, Any] = {"seed": seed, "iterations": plan.iterations}
    if run_dir is not None:
        overrides |= {"checkpoint_dir": str(run_dir), "checkpoint_every": plan.eval_every, "keep_checkpoints": 1}
    trainer_cls, cfg = method_config({**method_cfg, **overrides})
    bench = benchmark(plan.benchmark)
    torch.manual_seed(seed)  # the same initial student and generator for every method of a seed
    student = bench.student()
    generator = bench.generator(cfg.latent_dim, plan.generator_ngf)
    latest = latest_checkpoint(run_dir) if run_dir is not None else None
    if latest is not None:
        trainer = trainer_cls.load(latest, teacher, student, generator, cfg)
    else:
        trainer = trainer_cls(teacher, student, generator, cfg)
    earlier = trainer.history["evaluations"]
    before = float(earlier[-1].get("elapsed_s", 0.0)) if earlier else 0.0  # the run's time up to its checkpoint
    start = time.perf_counter()

    def stamp(scores: dict[str, Any]) -> None:  # recorded, so a resumed run's wall time counts the earlier part
        scores["elapsed_s"] = before + time.perf_counter() - start

    history = trainer.train(evaluate=accuracy_evaluator(data.x_test, data.y_test),
                            eval_every=plan.eval_every, progress=progress, on_evaluation=stamp)
    wall = before + time.perf_counter() - start
    report = curve_report(history["evaluations"], trainer.probes, from_fraction=STATS_FROM)
    return {"method": method, "seed": seed, **report, "wall_time_s": wall,
            "resumed_from": str(latest) if latest else None, "stats_all": curve_statistics(report["accuracy"])}


def _run_job(job: tuple[str, int, RunPlan, Path, Path, bool]) -> dict[str, Any]:
    """Run (or resume, or reload when finished) one method/seed; results are written atomically."""
    method, seed, plan, out_dir, cache_dir, progress = job
    name = f"{method}-seed{seed}".replace(" ", "_").replace(",", "").replace("/", "_")
    result_path = out_dir / "runs" / f"{name}.json"
    ranks = Ranks.current()
    if ranks.from_main(result_path.exists):  # rank 0 decides: it alone writes the results
        return json.loads(result_path.read_text(encoding="utf-8"))
    bench = benchmark(plan.benchmark)
    data = bench.load(cache_dir)
    teacher, _ = cached_teacher(bench, data, cache_dir, torch.device("cpu"), settings=plan.teacher)
    result = distill_once(method, plan.methods[method], teacher, data, plan, seed, progress,
                          run_dir=out_dir / "checkpoints" / name)
    if ranks.is_main:
        atomic_write_text(json.dumps(result), result_path)
    return result


def _run_job_single_thread(job: tuple[str, int, RunPlan, Path, Path, bool]) -> dict[str, Any]:
    torch.set_num_threads(1)
    return _run_job(job)


def check_plan(plan: RunPlan, jobs: int) -> None:
    """Refuse a plan that cannot run, before any work."""
    if min(plan.iterations, plan.eval_every, plan.seeds) < 1:
        raise ValueError(f"iterations, eval_every and seeds must be >= 1, got {plan.iterations}, "
                         f"{plan.eval_every} and {plan.seeds}")
    benchmark(plan.benchmark)
    if jobs > 1 and Ranks.current().enabled:
        raise ValueError("--jobs > 1 runs separate processes and cannot be combined with torchrun")


def run_plan(plan: RunPlan, out_dir: Path, cache_dir: Path, progress: bool = True, resume: bool = False,
             jobs: int = 1) -> tuple[list[dict[str, Any]], float]:
    """Train (or load) the teacher, then run (or reload) every method for every seed; returns the runs (seed
    by seed) and the teacher's test accuracy.

    Finished runs are kept in ``out_dir/runs`` and unfinished ones checkpoint in
    ``out_dir/checkpoints``; ``resume=True`` reuses both, otherwise they are cleared first.
    ``jobs > 1`` runs that many processes with one thread each, each run's end reported as it comes.
    Under torchrun every run is data-parallel over the ranks and rank 0 alone writes files.
    """
    check_plan(plan, jobs)
    ranks = Ranks.current()
    bench = benchmark(plan.benchmark)
    with ranks.main_first("training the benchmark's teacher"):
        if not resume and ranks.is_main:
            for folder in ("runs", "checkpoints"):
                shutil.rmtree(out_dir / folder, ignore_errors=True)
        data = bench.load(cache_dir)
        _, teacher_acc = cached_teacher(bench, data, cache_dir, torch.device("cpu"), settings=plan.teacher,
                                        progress=progress)
    work = [(m, s, plan, out_dir, cache_dir, progress and jobs == 1)
            for s in plan.seed_list() for m in plan.methods]
    if jobs == 1:
        runs = []
        for i, job in enumerate(work):
            if progress:
                print(f"[{i + 1}/{len(work)}] {job[0]}, seed {job[1]}", flush=True)
            runs.append(_run_job(job))
        return runs, teacher_acc
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(jobs) as pool:
        done = {}
        for k, (i, run) in enumerate(pool.imap_unordered(_indexed_job, list(enumerate(work)))):
            done[i] = run
            if progress:
                print(f"[{k + 1}/{len(work)}] done: {run['method']}, seed {run['seed']}, mean accuracy "
                      f"{100 * run['stats']['mean']:.1f}%, {run['wall_time_s']:.0f} s", flush=True)
    return [done[i] for i in range(len(work))], teacher_acc


def _indexed_job(item: tuple[int, tuple[str, int, RunPlan, Path, Path, bool]]) -> tuple[int, dict[str, Any]]:
    index, job = item
    return index, _run_job_single_thread(job)


def method_config(method_cfg: dict[str, Any]) -> tuple[type[Trainer], DFADConfig]:
    """The trainer class named by a run method's ``method`` key and its typed config (the other keys)."""
    fields = dict(method_cfg)
    if "method" not in fields:
        raise ValueError(f"a run's method needs a 'method' key ('lrwa' or 'dfad'), got keys {sorted(fields)}")
    cls = trainer_class(fields.pop("method"))
    return cls, from_dict(cls.config_class, fields)


def apply_method_overrides(plan: RunPlan, overrides: list[str]) -> None:
    """Apply ``METHOD.key[.sub]=value`` overrides to the methods' configs, validating the result."""
    for item in overrides:
        key, value = parse_override(item)
        method, _, path = key.partition(".")
        if not path or method not in plan.methods:
            raise ValueError(f"override {item!r} must look like METHOD.key=value with METHOD in "
                             f"{sorted(plan.methods)}")
        set_nested(plan.methods[method], path.split("."), value)
    for cfg in plan.methods.values():
        validate(method_config(cfg)[1])
