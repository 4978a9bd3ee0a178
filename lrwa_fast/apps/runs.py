"""The runs behind ``lrwa-fast demo``, ``lrwa-fast study`` and ``benchmarks/ablation.py``: every method × every
seed of a :class:`RunPlan` on an embedded benchmark (:mod:`.embedded`), paired by seed, and one such run
(:func:`distill_once`); :mod:`.units` makes each a unit of work, :mod:`.executors` runs them.

The benchmark's teacher is trained on its real training split (cached on disk), then students are
distilled from it without data, with each method for the same iterations and seeds (the same initial
student and generator per seed), and evaluated on the real test split as they train; forgetting probes
measure how much of what each student agreed with the teacher on it later loses. Finished runs are kept,
unfinished ones checkpoint and resume.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import torch
from torch import nn

from ..config import DFADConfig, from_dict, parse_override, set_nested, to_dict
from ..data import LabelledSplit
from ..runtime import selfcheck
from ..runtime.checkpoint import latest_checkpoint
from ..runtime.distributed import Ranks
from ..runtime.metrics import accuracy_evaluator, curve_statistics
from ..training import Trainer, trainer_class
from ..training.settings import validate
from ..training.trainer import METHODS as TRAINERS
from .embedded import Benchmark, TeacherRecipe, benchmark
from .reports import curve_report

STATS_FROM = 0.5  # μ, σ² and largest drop over the second half of the evaluations


class RunResult(TypedDict, total=False):
    """What one run leaves (``runs/<name>.json``) and what reports and statistics read."""

    method: str
    seed: int
    iterations: list[int]  # the evaluated iterations
    accuracy: list[float]  # the test accuracy at each
    stats: dict[str, float | None]  # final, best, mean, variance, max_drop (from STATS_FROM on), forgetting
    stats_all: dict[str, float]  # the same over every evaluation
    forgetting: list[float | None]  # the average forgetting on the probes at each evaluation
    average_forgetting: float | None
    probe_agreement: list[list[float]]
    forgetting_probes: dict[str, Any] | str
    wall_time_s: float  # a resumed run's includes the time up to its checkpoint
    resumed_from: str | None  # the checkpoint the run resumed from, if any
    fast_paths: dict[str, list[dict[str, str]]]  # the backends its process's fast paths ran with, and why


def method_settings(bench: Benchmark, method: str, overrides: dict[str, Any], iterations: int) -> DFADConfig:
    """A method's typed config: the benchmark's shared settings, then ``overrides`` (its own fields)."""
    return trainer_class(method).config_class(**(bench.shared(iterations) | overrides))


def method_name(config: DFADConfig) -> str:
    """The method (``"dfad"``, ``"lrwa"``) whose trainer takes ``config``."""
    return next(name for name, trainer in TRAINERS.items() if trainer.config_class is type(config))


def method_dict(config: DFADConfig) -> dict[str, Any]:
    """A method's config as a plain dict, ``method`` key first (what ``settings.json`` and reports hold)."""
    return {"method": method_name(config), **to_dict(config)}


@dataclass
class RunPlan:
    """Every method × every seed on an embedded benchmark, and everything those runs depend on (written into
    ``report.json`` and ``study.json``)."""

    iterations: int = 600
    eval_every: int = 20
    seeds: int = 1
    methods: dict[str, DFADConfig] = field(default_factory=dict)  # name -> its typed config (LRwAConfig for LRwA)
    teacher: TeacherRecipe = field(default_factory=TeacherRecipe)
    generator_ngf: int = 32
    benchmark: str = "digits"
    first_seed: int = 0  # seeds first_seed, first_seed + 1, ...

    @classmethod
    def for_benchmark(cls, name: str, methods: dict[str, DFADConfig], *, iterations: int | None = None,
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

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain JSON values, each method's config with its ``method`` key."""
        plain = to_dict(dataclasses.replace(self, methods={}))
        return plain | {"methods": {name: method_dict(config) for name, config in self.methods.items()}}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> RunPlan:
        """The plan :meth:`to_dict` wrote."""
        methods = {name: method_config(config)[1] for name, config in fields["methods"].items()}
        return cls(**{**fields, "methods": methods, "teacher": TeacherRecipe(**fields["teacher"])})

    @property
    def student_arch(self) -> str:
        return benchmark(self.benchmark).student_arch

    def teacher_summary(self) -> dict[str, Any]:
        return {"arch": self.teacher.arch, "seed": self.teacher.seed}


def distill_once(method: str, config: DFADConfig, teacher: nn.Module, data: LabelledSplit,
                 plan: RunPlan, seed: int, progress: bool,
                 run_dir: Path | None = None) -> RunResult:
    """One data-free run of ``method`` (its typed ``config``) with ``seed``; returns its accuracy and forgetting
    curves and wall time (a resumed run's includes the time up to its checkpoint, kept as each evaluation's
    ``elapsed_s``).

    With ``run_dir`` the run checkpoints there every ``eval_every`` iterations and resumes from
    the newest checkpoint it finds.
    """
    changes: dict[str, Any] = {"seed": seed, "iterations": plan.iterations}
    if run_dir is not None:
        changes |= {"checkpoint_dir": str(run_dir), "checkpoint_every": plan.eval_every, "keep_checkpoints": 1}
    cfg = dataclasses.replace(config, **changes)
    trainer_cls = trainer_class(method_name(cfg))
    bench = benchmark(plan.benchmark)
    selfcheck.forget_usage()  # the run's own record of its fast paths' backends, wherever earlier runs ran
    torch.manual_seed(seed)  # the same initial student and generator for every method of a seed
    student = bench.student()
    generator = bench.generator(cfg.latent_dim, plan.generator_ngf)
    latest = latest_checkpoint(run_dir) if run_dir is not None else None
    if latest is not None:
        trainer = trainer_cls.load(latest, teacher, student, generator, cfg)
    else:
        trainer = trainer_cls(teacher, student, generator, cfg)
    return run_result(method, seed, trainer, accuracy_evaluator(data.x_test, data.y_test), plan.eval_every,
                      progress, latest)


def run_result(method: str, seed: int, trainer: Trainer, evaluate: Callable[[nn.Module], dict[str, float]],
               eval_every: int, progress: bool, resumed_from: Path | None) -> RunResult:
    """Train ``trainer`` to its end and return a study run's result: the accuracy and forgetting curves, their
    statistics and the wall time (a resumed run's includes the time up to its checkpoint, kept as each
    evaluation's ``elapsed_s``)."""
    earlier = trainer.history["evaluations"]
    before = float(earlier[-1].get("elapsed_s", 0.0)) if earlier else 0.0  # the run's time up to its checkpoint
    start = time.perf_counter()

    def stamp(scores: dict[str, Any]) -> None:  # recorded, so a resumed run's wall time counts the earlier part
        scores["elapsed_s"] = before + time.perf_counter() - start

    history = trainer.train(evaluate=evaluate, eval_every=eval_every, progress=progress, on_evaluation=stamp)
    wall = before + time.perf_counter() - start
    report = curve_report(history["evaluations"], trainer.probes, from_fraction=STATS_FROM)
    return RunResult(method=method, seed=seed, **report, wall_time_s=wall,
                     resumed_from=str(resumed_from) if resumed_from else None,
                     stats_all=curve_statistics(report["accuracy"]), fast_paths=selfcheck.usage())


def check_plan(plan: RunPlan, jobs: int) -> None:
    """Refuse a plan that cannot run, before any work."""
    if min(plan.iterations, plan.eval_every, plan.seeds) < 1:
        raise ValueError(f"iterations, eval_every and seeds must be >= 1, got {plan.iterations}, "
                         f"{plan.eval_every} and {plan.seeds}")
    benchmark(plan.benchmark)
    if jobs > 1 and Ranks.current().enabled:
        raise ValueError("--jobs > 1 runs separate processes and cannot be combined with torchrun")


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
        fields = method_dict(plan.methods[method])
        set_nested(fields, path.split("."), value)
        plan.methods[method] = method_config(fields)[1]
    for cfg in plan.methods.values():
        validate(cfg)
