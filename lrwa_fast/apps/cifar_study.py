"""``lrwa-fast study --preset NAME --data PATH --teacher FILE``: the study's methods on a CIFAR preset, with the
user's CIFAR files and teacher, so the paper-scale question is one command (on a Slurm cluster, usually).

Each method is a complete, typed config (its models and evaluation, its trainer's config): the authors' methods are the
preset (``authors``, ``authors_fo``, ``authors_released``: its LRwA step with the meta term exact, first order
or off; ``authors_dfad``: its DFAD twin), the library's methods the preset's shared settings (its DFAD twin)
with their own fields. The teacher unit evaluates the given teacher on the test split; each run unit trains
one method with one seed (the same initial student and generator per seed) from its own folder.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import DFADConfig, from_dict, set_nested, to_dict
from ..runtime import selfcheck
from ..runtime.checkpoint import atomic_write_text, latest_checkpoint
from ..training import trainer_class
from ..training.settings import validate
from .distill import (
    PROBES_PER_RUN,
    DistillConfig,
    build_trainer,
    check_clip,
    evaluator,
    load_teacher_for,
    teacher_summary,
)
from .presets import PRESETS, resolve_preset
from .runs import RunResult, method_config, method_dict, run_result
from .units import InFolder, RunInFolder

KIND = "cifar"


@dataclass
class CifarPlan:
    """Every method × seed on a CIFAR preset: the user's data and teacher, the run length, each method's models
    and evaluation (a :class:`~lrwa_fast.apps.distill.DistillConfig` whose trainer section is left empty) and
    its typed trainer config (seed and iterations set per run)."""

    preset: str
    data: str
    teacher: str
    iterations: int
    eval_every: int
    seeds: int = 1
    first_seed: int = 0
    methods: dict[str, DistillConfig] = field(default_factory=dict)
    trainers: dict[str, DFADConfig] = field(default_factory=dict)
    kind: str = KIND

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    @property
    def student_arch(self) -> str:
        return next(iter(self.methods.values())).student.arch

    def teacher_summary(self) -> dict[str, Any]:
        return {"arch": next(iter(self.methods.values())).teacher.arch, "checkpoint": self.teacher}

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain JSON values, each trainer config with its ``method`` key."""
        plain = to_dict(dataclasses.replace(self, trainers={}))
        return plain | {"trainers": {name: method_dict(config) for name, config in self.trainers.items()}}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> CifarPlan:
        """The plan :meth:`to_dict` wrote."""
        methods = {k: from_dict(DistillConfig, v) for k, v in fields["methods"].items()}
        trainers = {k: method_config(v)[1] for k, v in fields["trainers"].items()}
        return cls(**{**fields, "methods": methods, "trainers": trainers})


MODEL_SECTIONS = ("generator.", "teacher.")  # --set keys of the models' sections (the teacher's normalisation...)


def model_overrides(overrides: dict[str, Any]) -> list[str]:
    """The ``key=value`` overrides of the models' sections (:data:`MODEL_SECTIONS`), for :func:`resolve_preset`."""
    return [f"{k}={v}" for k, v in overrides.items() if k.startswith(MODEL_SECTIONS)]


def check_overrides(methods: list[str], overrides: dict[str, Any]) -> None:
    """Refuse a shared setting that no method's config (nor the generator or the teacher) has."""
    known = {f.name for m in methods for f in dataclasses.fields(trainer_class(m).config_class)}
    unknown = sorted(k for k in overrides if not k.startswith(MODEL_SECTIONS) and k.split(".")[0] not in known)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}: no method's config has them")


def check_preset(preset: str, data: str, teacher: str, overrides: dict[str, Any] | None = None) -> None:
    """Refuse, before any work, a preset that is not an LRwA preset, missing data or teacher files, or a teacher
    file the preset cannot take (its layout, architecture or classes)."""
    if f"{preset}-dfad" not in PRESETS:
        lrwa = sorted(name[: -len("-dfad")] for name in PRESETS if name.endswith("-dfad"))
        raise ValueError(f"--preset {preset!r}: a study takes an LRwA preset (its DFAD twin comes with it): {lrwa}")
    for option, path in (("--data", data), ("--teacher", teacher)):
        if not path or not Path(path).exists():
            raise ValueError(f"a study on --preset {preset} needs {option} (an existing path), got {path!r}")
    load_teacher_for(resolve_preset(preset, data=data, teacher=teacher, overrides=model_overrides(overrides or {})))


def preset_method(preset: str, trainer: str, fields: dict[str, Any], authors: bool, data: str, teacher: str,
                  iterations: int, overrides: dict[str, Any]) -> tuple[DistillConfig, DFADConfig]:
    """One study method on ``preset``: the preset itself (``authors``: its LRwA step for ``trainer='lrwa'``, its
    DFAD twin otherwise) or its DFAD twin's shared settings under ``trainer``; then the method's ``fields``,
    the run length, a forgetting probe every 1/20 of the run unless the preset sets one, and ``overrides``
    (dotted trainer keys, each where the method's config has it; ``generator.*``, ``teacher.*`` the models'). Returns
    the models and evaluation (trainer section empty) and the validated, typed trainer config."""
    base = preset if authors and trainer == "lrwa" else f"{preset}-dfad"
    spec = resolve_preset(base, data=data, teacher=teacher, overrides=model_overrides(overrides))
    probes = {"probe_every": max(1, iterations // PROBES_PER_RUN)}
    settings = probes | copy.deepcopy(spec.trainer) | fields | {"iterations": iterations}
    config_class = trainer_class(trainer).config_class
    own = {f.name for f in dataclasses.fields(config_class)}
    for key, value in overrides.items():
        if key.split(".")[0] in own:  # a key of another method's config (memory_* of LRwA's) is not this one's
            set_nested(settings, key.split("."), value)
    config = from_dict(config_class, settings, prefix="trainer.")
    validate(config)
    return dataclasses.replace(spec, method=trainer, trainer={}, preset=preset), config


@dataclass(frozen=True)
class CifarTeacherUnit(InFolder):
    """Evaluate the user's teacher on the test split; record its accuracy in ``out/teacher.json``."""

    spec: DistillConfig
    out_dir: str
    cache_dir: str = ""
    progress: bool = False

    name = "teacher"

    def __call__(self) -> float:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        teacher, loaded = load_teacher_for(self.spec)
        evaluate, normalisation = evaluator(self.spec, loaded, device)
        accuracy = float(evaluate(teacher.to(device).eval())["accuracy"])
        record = {"preset": self.spec.preset, **teacher_summary(loaded, self.spec.dataset),
                  "normalisation": normalisation, "test_accuracy": accuracy}
        atomic_write_text(json.dumps(record, indent=2), self.result_path)
        return accuracy


@dataclass(frozen=True)
class CifarRunUnit(RunInFolder):
    """One method with one seed of a :class:`CifarPlan`, resumed from ``out/checkpoints/<name>``, its result in
    ``out/runs/<name>.json`` (the same fields as an embedded study's run)."""

    method: str
    seed: int
    plan: CifarPlan
    out_dir: str
    cache_dir: str = ""
    progress: bool = False

    def __call__(self) -> RunResult:
        if self.finished():
            return json.loads(self.result_path.read_text(encoding="utf-8"))
        config = dataclasses.replace(self.plan.trainers[self.method], seed=self.seed, iterations=self.plan.iterations,
                                     checkpoint_dir=str(self.checkpoint_dir), checkpoint_every=self.plan.eval_every,
                                     keep_checkpoints=1)
        spec = dataclasses.replace(self.plan.methods[self.method], output_dir=str(self.checkpoint_dir),
                                   eval_every=self.plan.eval_every)
        latest = latest_checkpoint(self.checkpoint_dir)
        selfcheck.forget_usage()  # the run's own record of its fast paths' backends, wherever earlier runs ran
        run, loaded = build_trainer(spec, resume=str(latest) if latest else None, config=config)
        evaluate, normalisation = evaluator(spec, loaded, run.device)
        check_clip(run.config, normalisation)
        result = run_result(self.method, self.seed, run, evaluate, self.plan.eval_every, self.progress, latest)
        atomic_write_text(json.dumps(result), self.result_path)
        return result


def cifar_units(plan: CifarPlan, out: Path, *, run_progress: bool = False
                ) -> tuple[CifarTeacherUnit, list[CifarRunUnit]]:
    """The teacher unit and the run units of ``plan`` (seed by seed, each seed's methods in order)."""
    teacher = CifarTeacherUnit(next(iter(plan.methods.values())), str(out))
    runs = [CifarRunUnit(m, s, plan, str(out), progress=run_progress) for s in plan.seed_list() for m in plan.methods]
    return teacher, runs
