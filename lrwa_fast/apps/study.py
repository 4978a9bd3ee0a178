"""``lrwa-fast study``: every mitigation of forgetting against its own method without memory, on an embedded
benchmark, paired by seed; run here (:class:`~lrwa_fast.apps.executors.LocalExecutor`) or on a Slurm cluster
(:mod:`.slurm`), and reported from the study folder's finished runs (:mod:`.units`) by :mod:`.statistics` and
:mod:`.study_report`.

Each seed trains every method from the same teacher and the same initial student and generator
(:func:`~lrwa_fast.apps.runs.distill_once`), so a method's per-seed difference to its twin is paired: the
library's methods against ``dfad`` (the benchmark's settings), the authors' recipe (:mod:`.recipe`) against
``authors_dfad`` (the recipe without its memory), and the two recipe steps with a meta term against
``authors_released`` (the same step whose meta term sends nothing, as the released code's). The report gives
per method the mean ± std over seeds of every statistic, and for each comparison the paired difference with
a 95% bootstrap confidence interval (``scipy.stats.bootstrap``, BCa, falling back to the percentile interval
where BCa is undefined), the smallest difference the comparison could have detected (80% power at the 5%
level, from the observed spread) and a verdict: ``better``, ``worse`` or ``not distinguishable``. With a
handful of seeds a bootstrap interval is too narrow (it cannot be wider than the differences' range), so a
verdict also needs the paired t interval to exclude 0: ``better`` or ``worse`` only when both do, on the
same side. The verdicts are on μ[acc] (higher is better) and on the average forgetting (lower is better);
the other differences come with their intervals only.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import DFADConfig, set_nested
from ..runtime import selfcheck
from ..runtime.checkpoint import atomic_write_text
from ..training.methods import COMPARED_METHODS
from ..training.settings import validate
from . import recipe
from .cifar_study import KIND as CIFAR
from .cifar_study import CifarPlan, check_overrides, check_preset, cifar_units, preset_method
from .embedded import Benchmark, benchmark
from .executors import clear_runs, run_units
from .presets import get_preset
from .reports import environment, summarize
from .runs import STATS_FROM, RunPlan, check_plan, method_config, method_dict, method_settings
from .slurm import RECORD, SlurmExecutor, SlurmSettings, UnitState, check_cluster, format_states, unit_states
from .statistics import CONFIDENCE, POWER, paired_differences
from .study_report import write_study
from .units import TEACHER_RESULT, Unit, finished_runs, plan_units, recorded_cache, teacher_accuracy


@dataclass(frozen=True)
class Method:
    """A study method: its trainer, the settings it starts from (``"benchmark"``: the benchmark's shared
    settings; ``"authors"``: the authors' recipe fitted to the benchmark), its own config fields over those,
    and its twin without memory, which it is compared with (``None`` for the twins themselves)."""

    trainer: str
    fields: dict[str, Any] = field(default_factory=dict)
    base: str = "benchmark"
    twin: str | None = "dfad"


# The methods papers compare against (lrwa_fast.training.methods), each paired with DFAD on the same seeds; CMI with
# LRwA's update with CMI.
COMPARED: dict[str, Method] = {name: Method(trainer, fields, twin="cmi" if name == "cmi_lrwa" else "dfad")
                               for name, (trainer, fields) in COMPARED_METHODS.items()}
# Settings of the library's methods are its defaults (LRwAConfig: exact, inner lr 0.05, retain weight 1,
# reservoir 2048, memory batch 32, 32 inserted per iteration), fixed before any study was run; the authors'
# methods are their recipe, fitted by the rules of lrwa_fast.apps.recipe (also fixed before any run).
METHODS: dict[str, Method] = {
    "dfad": Method("dfad", twin=None),
    "joint": Method("lrwa", {"meta_mode": "none", "joint_replay": True}),  # MB-DFKD's idea, joint replay alone
    "lrwa": Method("lrwa", {"meta_mode": "exact"}),
    "lrwa_fd": Method("lrwa", {"meta_mode": "finite_difference"}),
    "lrwa_fo": Method("lrwa", {"meta_mode": "first_order"}),
    "lrwa_gen": Method("lrwa", {"meta_mode": "exact", "memory_kind": "generative"}),
    "lrwa_gen_fd": Method("lrwa", {"meta_mode": "finite_difference", "memory_kind": "generative"}),
    "lrwa_gen_fo": Method("lrwa", {"meta_mode": "first_order", "memory_kind": "generative"}),
    "mad": Method("dfad", {"ema_decay": 0.99, "ema_share": 0.5}),  # Do et al. 2022: an EMA generator, half a batch
    "authors_dfad": Method("dfad", base="authors", twin=None),  # the recipe without memory
    "authors": Method("lrwa", {"meta_mode": "exact"}, base="authors", twin="authors_dfad"),
    "authors_fo": Method("lrwa", {"meta_mode": "first_order"}, base="authors", twin="authors_dfad"),
    "authors_released": Method("lrwa", {"meta_mode": "none"}, base="authors", twin="authors_dfad"),
}
METHODS |= COMPARED
# Pairs compared besides each method and its twin, when both run: a meta step against the same step without
# its meta term (what the authors' released code computes).
EXTRA_PAIRS = (("authors", "authors_released"), ("authors_fo", "authors_released"))
# The default study: every mitigation, the generative memory with the exact and the first-order meta-gradient
# (lrwa_gen_fd, the most expensive, is there on request), so that the MNIST-1D study fits an hour on 2 cores.
DEFAULT_METHODS = ("dfad", "joint", "lrwa", "lrwa_fd", "lrwa_fo", "lrwa_gen", "lrwa_gen_fo", "mad")


def method_fields(bench: Benchmark, name: str, iterations: int, overrides: dict[str, Any] | None = None
                  ) -> DFADConfig:
    """Study method ``name``'s typed config on ``bench``: its base settings, its own fields, then ``overrides``
    (dotted keys, the same for every method), validated."""
    method = METHODS[name]
    if method.base == "authors":
        fields = {"method": method.trainer,
                  **recipe.fitted(bench.shared(iterations), with_memory=method.trainer == "lrwa"), **method.fields}
    else:
        fields = method_dict(method_settings(bench, method.trainer, method.fields, iterations))
    for key, value in (overrides or {}).items():
        set_nested(fields, key.split("."), value)
    _, config = method_config(fields)
    validate(config)
    return config


def comparisons(methods: list[str]) -> list[tuple[str, str]]:
    """The (method, reference) pairs a study of ``methods`` reports: each method and its twin, then
    :data:`EXTRA_PAIRS`."""
    pairs = [(m, METHODS[m].twin) for m in methods if METHODS[m].twin is not None]
    return pairs + [(a, b) for a, b in EXTRA_PAIRS if a in methods and b in methods]


OWNED_BY_THE_STUDY = ("seed", "iterations", "checkpoint_dir", "checkpoint_every", "keep_checkpoints")


@dataclass
class StudySettings:
    """What a study runs: benchmark, methods, seeds, run length, teacher seed and the settings every method
    shares a change of (``overrides``: dotted config keys; a sweep's value); all in ``study.json``."""

    benchmark: str = "mnist1d"
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    seeds: int = 5
    first_seed: int = 0
    iterations: int | None = None  # None: the benchmark's
    eval_every: int | None = None  # None: the benchmark's
    teacher_seed: int | None = None  # None: the benchmark's teacher
    teacher_epochs: int | None = None  # None: the benchmark's recipe (fewer for smoke tests)
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted config key -> value, for every method
    preset: str = ""  # a CIFAR LRwA preset: the study on the user's data and teacher instead of the benchmark
    data: str = ""  # with preset: the CIFAR root, folder or .tar.gz
    teacher: str = ""  # with preset: the teacher's file (teacher.pt)

    @property
    def target(self) -> str:
        """What the study is on: the preset, else the benchmark."""
        return self.preset or self.benchmark

    def check(self) -> None:
        """Refuse what cannot be studied, before any work."""
        if self.preset:
            check_preset(self.preset, self.data, self.teacher, self.overrides)
            if self.teacher_seed is not None or self.teacher_epochs is not None:
                raise ValueError("--teacher-seed goes with an embedded benchmark; a preset's study takes --teacher")
        elif self.data or self.teacher or any(k.startswith("teacher.") for k in self.overrides):
            raise ValueError("--data, --teacher, --allow-pickle and teacher.* settings go with --preset")
        else:
            benchmark(self.benchmark)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown method(s) {unknown}; expected a comma-separated list of {list(METHODS)}")
        orphans = [f"{m} needs {METHODS[m].twin}" for m in self.methods
                   if METHODS[m].twin is not None and METHODS[m].twin not in self.methods]
        if orphans:
            raise ValueError(f"a method is compared with its twin without memory: {'; '.join(orphans)} "
                             "(include it in --methods)")
        if self.seeds < 2:
            raise ValueError(f"a study needs at least 2 seeds for paired differences, got {self.seeds}")
        owned = [k for k in self.overrides if k.split(".")[0] in OWNED_BY_THE_STUDY]
        if owned:
            raise ValueError(f"the study sets {owned} itself (use --iterations, --seeds, --first-seed)")
        for name in ("iterations", "eval_every", "teacher_epochs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.runs()  # every method's config, overrides applied, is valid

    def runs(self) -> RunPlan | CifarPlan:
        """The runs as the run engine takes them."""
        if self.preset:
            return self._preset_runs()
        bench = benchmark(self.benchmark)
        length = bench.iterations if self.iterations is None else self.iterations
        methods = {m: method_fields(bench, m, length, self.overrides) for m in self.methods}
        changed = {k: v for k, v in (("seed", self.teacher_seed), ("epochs", self.teacher_epochs)) if v is not None}
        teacher = dataclasses.replace(bench.teacher, **changed)
        every = bench.eval_every if self.eval_every is None else self.eval_every
        return RunPlan.for_benchmark(self.benchmark, methods, iterations=length, seeds=self.seeds, eval_every=every,
                                     first_seed=self.first_seed, teacher=teacher)

    def _preset_runs(self) -> CifarPlan:
        base = get_preset(self.preset).spec
        length = base["trainer"]["iterations"] if self.iterations is None else self.iterations
        data, teacher = str(Path(self.data).resolve()), str(Path(self.teacher).resolve())
        check_overrides([METHODS[m].trainer for m in self.methods], self.overrides)
        built = {m: preset_method(self.preset, METHODS[m].trainer, METHODS[m].fields, METHODS[m].base == "authors",
                                  data, teacher, length, self.overrides) for m in self.methods}
        return CifarPlan(self.preset, data, teacher, length, self.eval_every or base["eval_every"], self.seeds,
                         self.first_seed, {m: spec for m, (spec, _) in built.items()},
                         {m: config for m, (_, config) in built.items()})


STUDY_SETTINGS = "study_settings.json"  # the StudySettings of the runs in a study folder (beside settings.json)


class StudyIncomplete(RuntimeError):
    """Some units of a study have not finished: the message lists their states and logs; ``failed`` says
    whether any ended without a result (rather than still waiting or running)."""

    def __init__(self, message: str, failed: bool) -> None:
        super().__init__(message)
        self.failed = failed


def run_study(settings: StudySettings, out: Path, cache_dir: Path, *, jobs: int = 1, progress: bool = True,
              fresh: bool = False, slurm: SlurmSettings | None = None, wait: bool = True, poll_s: float = 10.0
              ) -> dict[str, Any] | None:
    """Run (or resume) the study into ``out``; write ``study.json``, ``study.md``, ``curves.png`` and
    ``forgetting.png``; return the report.

    Finished runs are kept in ``out/runs`` and reused when the study is run again with the same settings
    (unfinished ones resume from their checkpoints); other settings are refused unless ``fresh``. Locally
    (``slurm=None``) the runs go to ``jobs`` processes; with ``slurm`` the units still to do are submitted
    to Slurm, then (``wait``) their end is awaited, else ``None`` is returned at once. Raises
    :class:`StudyIncomplete` when a unit ends without a result.
    """
    settings.check()
    plan = settings.runs()
    if slurm is None:
        if isinstance(plan, RunPlan):
            check_plan(plan, jobs)
        elif jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        teacher, units = study_units(plan, out, cache_dir, progress=progress, run_progress=progress and jobs == 1)
        if fresh:
            _discard(out, teacher, units)
        _claim(out, settings, plan, fresh)
        runs, teacher_acc = run_units(teacher, units, jobs=jobs, progress=progress)
        return _report(settings, plan, runs, teacher_acc, out, executor="local", jobs=jobs)
    check_cluster()
    teacher, units = study_units(plan, out, cache_dir)
    if fresh:
        _discard(out, teacher, units)
    _claim(out, settings, plan, fresh)
    executor = SlurmExecutor(slurm)
    states = executor.submit(out, teacher, units)
    if progress or not wait:  # the job ids and logs of what was submitted
        print(format_states(states), flush=True)
    if not wait:
        return None
    states = executor.wait(out, teacher, units, poll_s=poll_s, progress=progress)
    return _finish(settings, plan, out, units, states, executor="slurm", jobs=slurm.array_parallelism)


def collect_study(out: Path) -> dict[str, Any]:
    """The report of the study in ``out`` from its folders alone (written there too), or
    :class:`StudyIncomplete` naming the units not finished, with their states and logs."""
    settings, plan = load_study(out)
    teacher, units = study_units(plan, out, recorded_cache(out))
    states = unit_states(out, [teacher, *units])
    return _finish(settings, plan, out, units, states, executor="slurm" if (out / RECORD).exists() else "local",
                   jobs=None)


def load_study(out: Path) -> tuple[StudySettings, RunPlan]:
    """The settings of the study in ``out`` (``study_settings.json``) and of its runs (``settings.json``)."""
    path = out / STUDY_SETTINGS
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {str(out)!r} holds no study of this version")
    settings, plan = StudySettings(**json.loads(path.read_text(encoding="utf-8"))), _load_plan(out)
    plan.methods = {m: plan.methods[m] for m in settings.methods}  # the study's order (settings.json sorts keys)
    if isinstance(plan, CifarPlan):
        plan.trainers = {m: plan.trainers[m] for m in settings.methods}
    return settings, plan


def _load_plan(out: Path) -> RunPlan | CifarPlan:
    """The plan recorded in ``out/settings.json``: a CIFAR study's, or an embedded benchmark's."""
    fields = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    if fields.get("kind") == CIFAR:
        return CifarPlan.from_dict(fields)
    return RunPlan.from_dict(fields)


def study_units(plan: RunPlan | CifarPlan, out: Path, cache: Path, *, progress: bool = False,
                run_progress: bool = False) -> tuple[Unit, list[Unit]]:
    """The teacher unit and the run units of ``plan``."""
    if isinstance(plan, CifarPlan):
        return cifar_units(plan, out, run_progress=run_progress)
    return plan_units(plan, out, cache, progress=progress, run_progress=run_progress)


def _finish(settings: StudySettings, plan: RunPlan | CifarPlan, out: Path, units: list[Unit],
            states: list[UnitState], *,
            executor: str, jobs: int | None) -> dict[str, Any]:
    runs = finished_runs(units)
    if runs is None or not (out / TEACHER_RESULT).exists():
        raise StudyIncomplete(format_states(states), failed=any(s.failed for s in states)
                              or not any(s.live for s in states))
    return _report(settings, plan, runs, teacher_accuracy(out), out, executor=executor, jobs=jobs)


def _report(settings: StudySettings, plan: RunPlan | CifarPlan, runs: list[dict[str, Any]], teacher_acc: float,
            out: Path, *, executor: str, jobs: int | None) -> dict[str, Any]:
    report = study_report(settings, plan, runs, teacher_acc, jobs) | {"executor": executor}
    write_study(report, out)
    return report


def _claim(out: Path, settings: StudySettings, runs: RunPlan | CifarPlan, fresh: bool) -> None:
    """Record the settings the runs in ``out`` belong to; refuse a folder holding another study's runs."""
    marker = out / "settings.json"
    mine = json.dumps(runs.to_dict(), sort_keys=True)
    if marker.exists() and not fresh and json.loads(marker.read_text(encoding="utf-8")) != json.loads(mine):
        raise ValueError(f"{str(out)!r} holds the runs of a study with other settings; use another --out, or "
                         "--fresh to discard them")
    atomic_write_text(mine, marker)
    atomic_write_text(json.dumps(asdict(settings), sort_keys=True), out / STUDY_SETTINGS)


def _discard(out: Path, teacher: Unit, units: list[Unit]) -> None:
    """``--fresh``: forget the finished and unfinished units and the job record, unless a job still waits or
    runs."""
    live = [s for s in unit_states(out, [teacher, *units]) if s.live]
    if live:
        raise ValueError(f"--fresh: {len(live)} job(s) of the study in {str(out)!r} still wait or run (e.g. "
                         f"{live[0].name}, job {live[0].job_id}); scancel them first")
    clear_runs(out)
    for name in (TEACHER_RESULT, RECORD):
        (out / name).unlink(missing_ok=True)


def study_report(settings: StudySettings, runs_settings: RunPlan | CifarPlan, runs: list[dict[str, Any]],
                 teacher_acc: float, jobs: int | None) -> dict[str, Any]:
    """Per method: mean ± std of every statistic; per comparison: the paired differences and their verdicts."""
    paired = [{"method": m, "reference": r, "statistics": paired_differences(runs, m, r)}
              for m, r in comparisons(settings.methods)]
    published = get_preset(settings.preset).published if settings.preset else None
    return {"kind": "study", "target": settings.target, "settings": asdict(settings),
            "published": asdict(published) if published else None,
            "runs_settings": runs_settings.to_dict(),
            "teacher": {**runs_settings.teacher_summary(), "test_accuracy": teacher_acc},
            "student_arch": runs_settings.student_arch, "stats_from_fraction": STATS_FROM,
            "confidence": CONFIDENCE, "power": POWER, "summary": summarize(runs), "comparisons": paired,
            "jobs": jobs, "wall_time_s": sum(r["wall_time_s"] for r in runs), "probe_cost": probe_cost(runs),
            "runs": runs, **environment(), "fast_paths": selfcheck.merged([r.get("fast_paths", {}) for r in runs])}


def probe_cost(runs: list[dict[str, Any]]) -> dict[str, float]:
    """What measuring forgetting cost: the probes' seconds against the runs' wall time, summed over runs."""
    probes = sum(r["forgetting_probes"]["seconds"] for r in runs if isinstance(r.get("forgetting_probes"), dict))
    wall = sum(r["wall_time_s"] for r in runs)
    return {"probe_seconds": probes, "wall_seconds": wall, "share": probes / wall if wall > 0 else 0.0}


