"""A study's work as units: the teacher, then one run per method × seed. Each unit is a small frozen,
picklable value that one process executes on its own (a local pool, a Slurm job array): it finds what it
needs in the cache and in its own folder, resumes from its checkpoint, and leaves its result in the study
folder. What a study reports is read back from those folders alone (:func:`finished_runs`), so a study can be
collected later, by another process or machine that sees them.

Layout of a study folder ``out``: ``teacher.json`` (the teacher unit's result), ``runs/<name>.json`` (each
finished run), ``checkpoints/<name>/`` (an unfinished run's newest checkpoint), ``settings.json`` (the
:class:`~lrwa_fast.apps.runs.RunPlan` the runs belong to).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from ..runtime.checkpoint import atomic_write_text
from ..runtime.distributed import Ranks
from .embedded import TeacherRecipe, benchmark, cached_teacher, teacher_path
from .runs import RunPlan, RunResult, distill_once

TEACHER_RESULT = "teacher.json"


class Unit(Protocol):
    """What an executor needs of a unit: a name, where its result goes, whether it is there, and a call that
    produces it (resuming from the unit's own folder); a run unit also has its ``method`` and ``seed``."""

    name: str
    out_dir: str
    cache_dir: str

    @property
    def result_path(self) -> Path: ...

    def finished(self) -> bool: ...

    def __call__(self) -> Any: ...


class InFolder:
    """Where a unit keeps what it leaves in the study folder ``out_dir``: its result (``teacher.json`` for the
    teacher, ``runs/<name>.json`` for a run) and its checkpoints (``checkpoints/<name>/``)."""

    out_dir: str
    name: str

    @property
    def result_path(self) -> Path:
        out = Path(self.out_dir)
        return out / TEACHER_RESULT if self.name == "teacher" else out / "runs" / f"{self.name}.json"

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.out_dir) / "checkpoints" / self.name

    def finished(self) -> bool:
        return self.result_path.exists()


class RunInFolder(InFolder):
    """A run unit's place: named after its method and seed."""

    method: str
    seed: int

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.method}-seed{self.seed}".replace(" ", "_").replace(",", "").replace("/", "_")


@dataclass(frozen=True)
class TeacherUnit(InFolder):
    """Train (or load from the cache) a benchmark's teacher; record its test accuracy in ``out/teacher.json``."""

    benchmark: str
    recipe: TeacherRecipe
    out_dir: str
    cache_dir: str
    progress: bool = False

    name = "teacher"

    def finished(self) -> bool:
        """Its result recorded, and the teacher in the cache the runs read it from."""
        cached = teacher_path(benchmark(self.benchmark), self.recipe, Path(self.cache_dir))
        return super().finished() and cached.exists()

    def __call__(self) -> float:
        """The teacher's test accuracy (training it first when the cache has none)."""
        bench, cache = benchmark(self.benchmark), Path(self.cache_dir)
        data = bench.load(cache)
        _, accuracy = cached_teacher(bench, data, cache, torch.device("cpu"), settings=self.recipe,
                                     progress=self.progress)
        if Ranks.current().is_main:
            record = {"benchmark": self.benchmark, "recipe": dataclasses.asdict(self.recipe),
                      "test_accuracy": accuracy, "cache_dir": str(Path(self.cache_dir).resolve())}
            atomic_write_text(json.dumps(record, indent=2), self.result_path)
        return accuracy


@dataclass(frozen=True)
class RunUnit(RunInFolder):
    """One method with one seed of a :class:`~lrwa_fast.apps.runs.RunPlan`: resumed from its newest checkpoint
    (``out/checkpoints/<name>``), its result written atomically to ``out/runs/<name>.json`` (a finished run is
    read back, not run again)."""

    method: str
    seed: int
    plan: RunPlan
    out_dir: str
    cache_dir: str
    progress: bool = False

    def __call__(self) -> RunResult:
        """The run's result (curves, statistics, wall time)."""
        ranks = Ranks.current()
        if ranks.from_main(self.result_path.exists):  # rank 0 decides: it alone writes the results
            return json.loads(self.result_path.read_text(encoding="utf-8"))
        bench, cache = benchmark(self.plan.benchmark), Path(self.cache_dir)
        data = bench.load(cache)
        teacher, _ = cached_teacher(bench, data, cache, torch.device("cpu"), settings=self.plan.teacher)
        result = distill_once(self.method, self.plan.methods[self.method], teacher, data, self.plan, self.seed,
                              self.progress, run_dir=self.checkpoint_dir)
        if ranks.is_main:
            atomic_write_text(json.dumps(result), self.result_path)
        return result


def plan_units(plan: RunPlan, out: Path, cache: Path, *, progress: bool = False,
               run_progress: bool = False) -> tuple[TeacherUnit, list[RunUnit]]:
    """The teacher unit and the run units of ``plan`` (seed by seed, each seed's methods in the plan's order);
    ``progress``: the teacher's training shows it, ``run_progress``: each run does."""
    teacher = TeacherUnit(plan.benchmark, plan.teacher, str(out), str(cache), progress)
    runs = [RunUnit(m, s, plan, str(out), str(cache), run_progress) for s in plan.seed_list() for m in plan.methods]
    return teacher, runs


def finished_runs(units: list[Unit]) -> list[RunResult] | None:
    """Every unit's result read from its folder, in the units' order; ``None`` while any is unfinished."""
    if not all(u.finished() for u in units):
        return None
    return [json.loads(u.result_path.read_text(encoding="utf-8")) for u in units]


def recorded_cache(out: Path) -> Path:
    """The cache the teacher unit of the study in ``out`` used (the current folder when none is recorded)."""
    path = out / TEACHER_RESULT
    return Path(json.loads(path.read_text(encoding="utf-8")).get("cache_dir", "")) if path.exists() else Path()


def teacher_accuracy(out: Path) -> float:
    """The teacher's test accuracy as its unit recorded it in ``out``."""
    path = out / TEACHER_RESULT
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the teacher unit of this study has not finished")
    return float(json.loads(path.read_text(encoding="utf-8"))["test_accuracy"])
