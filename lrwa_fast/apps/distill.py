"""``lrwa-fast distill``: distil a user's teacher checkpoint into a student named by architecture."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import DFADConfig, from_dict, to_dict
from ..data.images import image_set
from ..models import Generator, TeacherFile, TeacherFileError, build_model, load_teacher
from ..models.teacher_file import ArchitectureMismatch, stats_problem
from ..runtime.checkpoint import latest_checkpoint, read_checkpoint
from ..runtime.metrics import accuracy_evaluator
from ..runtime.warn_once import warn_once
from ..training import Trainer, trainer_class
from .reports import METRICS, MetricsLog, TimedEvaluation, curve_report, environment, write_report


@dataclass
class ModelSpec:
    """A classifier from the model zoo, optionally initialised from a weights file in any layout
    :func:`~lrwa_fast.models.load_teacher` reads (this library's ``teacher.pt``, the community's files)."""

    arch: str = "resnet18"
    checkpoint: str = ""  # a weights file: teacher.pt, a state dict, a DataFree / DFAD / ... checkpoint
    num_classes: int = 10
    in_channels: int = 3
    allow_pickle: bool = False  # also load a whole pickled model: this RUNS CODE FROM THE FILE (trusted files only)


@dataclass
class TeacherSpec(ModelSpec):
    """The teacher, and the normalisation to evaluate it with: when set, it wins over what the teacher's file or
    its code base says (docs/teachers.md); set together, one value per input channel."""

    mean: tuple[float, float, float] | None = None  # of images in [0, 1]; None: the file's or its code base's
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if (self.mean, self.std) != (None, None):
            problem = stats_problem(self.mean and list(self.mean), self.std and list(self.std), self.in_channels)
            if problem:
                raise ValueError(f"teacher.mean and teacher.std are set together, {self.in_channels} values each: "
                                 f"{problem}")


@dataclass
class GeneratorSpec:
    """The DCGAN-style generator of the LRwA authors; its latent size is the trainer's ``latent_dim``."""

    img_size: int = 32
    ngf: int = 64


@dataclass
class DistillConfig:
    """What ``lrwa-fast distill --config FILE`` (or ``--preset NAME``) reads."""

    method: str = "lrwa"  # "lrwa" | "dfad"
    teacher: TeacherSpec = field(default_factory=lambda: TeacherSpec(arch="resnet34"))
    student: ModelSpec = field(default_factory=ModelSpec)
    generator: GeneratorSpec = field(default_factory=GeneratorSpec)
    trainer: dict[str, Any] = field(default_factory=dict)  # LRwAConfig / DFADConfig fields
    eval_data: str = ""  # optional torch file {"x": images, "y": labels} to evaluate on
    dataset: str = ""  # "cifar10" | "cifar100" | "svhn" | "tiny_imagenet": evaluate on its test split, read from `data`
    data: str = ""  # the dataset's files (lrwa_fast.data.load_images: CIFAR root, folder or .tar.gz; ...)
    eval_every: int = 100
    output_dir: str = "lrwa_runs/distill"
    preset: str = ""  # the preset this config was resolved from (recorded in the report)


def load_model(spec: ModelSpec, section: str) -> tuple[nn.Module, TeacherFile | None]:
    """Build the config's ``section`` (``"teacher"``, which needs a file, or ``"student"``) from its weights file
    (any layout :func:`~lrwa_fast.models.load_teacher` reads, checked against the arch, classes and channels the
    config says), or untrained without one; returns it and what was read from the file (``None`` without one)."""
    if not spec.checkpoint:
        if section == "teacher":
            raise ValueError("the teacher needs a checkpoint (teacher.checkpoint)")
        return build_model(spec.arch, spec.num_classes, spec.in_channels), None
    try:
        loaded = load_teacher(spec.checkpoint, spec.arch, allow_pickle=spec.allow_pickle)
    except ArchitectureMismatch as err:
        raise TeacherFileError(f"{err}; set {section}.arch={err.found}") from None
    for key, found in (("num_classes", loaded.num_classes), ("in_channels", loaded.in_channels)):
        if found != getattr(spec, key):
            raise ValueError(f"checkpoint {spec.checkpoint!r} holds a {loaded.arch} with {key}={found}, the config "
                             f"says {section}.{key}={getattr(spec, key)}")
    return loaded.model, loaded


DEFAULT_CHECKPOINT_EVERY = 500
PROBES_PER_RUN = 20  # forgetting probes a run keeps unless the trainer config sets probe_every


def build_trainer(spec: DistillConfig, resume: str | None = None, config: DFADConfig | None = None
                  ) -> tuple[Trainer, TeacherFile]:
    """Teacher, student, generator and trainer described by ``spec`` (restored from ``resume``), and what was
    read from the teacher's file; ``config``: the trainer's typed config, used as it is (else ``spec.trainer``).

    Unless the trainer config says otherwise, checkpoints go to ``output_dir/checkpoints`` every
    :data:`DEFAULT_CHECKPOINT_EVERY` iterations, and when the run is evaluated a forgetting probe is kept
    every 1/:data:`PROBES_PER_RUN` of it (a resumed run keeps its checkpoint's setting).
    """
    trainer_cls = trainer_class(spec.method)
    path = _checkpoint_file(resume)
    saved = read_checkpoint(path) if path is not None else None  # read once: it may hold a large memory
    cfg = config if config is not None else _trainer_config(spec, trainer_cls, saved)
    torch.manual_seed(cfg.seed)  # the student and generator initialisations follow the seed
    teacher, loaded = load_teacher_for(spec)
    student, _ = load_model(spec.student, "student")
    generator = Generator(cfg.latent_dim, channels=spec.teacher.in_channels, img_size=spec.generator.img_size,
                          ngf=spec.generator.ngf)
    if path is None:
        return trainer_cls(teacher, student, generator, cfg), loaded
    return trainer_cls.load(path, teacher, student, generator, cfg, saved=saved), loaded


def load_teacher_for(spec: DistillConfig) -> tuple[nn.Module, TeacherFile]:
    """The run's teacher from its file, refused when the file says it was trained on another dataset."""
    teacher, loaded = load_model(spec.teacher, "teacher")
    check_trained_on(loaded, spec.dataset)
    return teacher, loaded


def check_trained_on(teacher: TeacherFile, dataset: str) -> None:
    """Refuse a teacher whose file says it was trained on another dataset than the one it is scored on."""
    trained_on = teacher.meta.get("dataset", dataset)
    if dataset and trained_on != dataset:
        raise ValueError(f"teacher {teacher.path!r} was trained on {trained_on}, and this run evaluates on {dataset}")


def _trainer_config(spec: DistillConfig, trainer_cls: type[Trainer], saved: dict[str, Any] | None) -> DFADConfig:
    """The trainer config of ``spec.trainer`` (the config file's section) with the defaults above filled in."""
    defaults = {"checkpoint_dir": str(Path(spec.output_dir) / "checkpoints"),
                "checkpoint_every": DEFAULT_CHECKPOINT_EVERY, "probe_every": _default_probes(spec, trainer_cls, saved)}
    return from_dict(trainer_cls.config_class, {**defaults, **spec.trainer}, prefix="trainer.")


def _default_probes(spec: DistillConfig, trainer_cls: type[Trainer], saved: dict[str, Any] | None) -> int:
    """``probe_every`` unless the trainer config sets it: the checkpoint's when resuming, else one probe every
    1/:data:`PROBES_PER_RUN` of an evaluated run (probes are read at evaluations), else none."""
    if saved is not None:
        return int(saved["config"].get("probe_every", 0))
    iterations = int(spec.trainer.get("iterations", trainer_cls.config_class.iterations))
    return max(1, iterations // PROBES_PER_RUN) if spec.dataset or spec.eval_data else 0


def _checkpoint_file(resume: str | None) -> Path | None:
    """The checkpoint ``resume`` names (a file, or the newest in a folder); ``None`` without ``resume``."""
    if resume is None:
        return None
    path = latest_checkpoint(resume) if Path(resume).is_dir() else Path(resume)
    if path is None:
        raise ValueError(f"no checkpoint found in {resume!r}")
    return path


def run_distill(spec: DistillConfig, progress: bool = True, resume: str | None = None) -> str:
    """Train and evaluate; write the student, generator, history, ``report.json``, ``metrics.jsonl`` and
    ``accuracy.png`` into ``output_dir``; return a summary line (data-parallel: rank 0 evaluates,
    writes and summarises; the other ranks return ``""``)."""
    trainer, teacher = build_trainer(spec, resume)
    evaluate, normalisation = evaluator(spec, teacher, trainer.device)
    check_clip(trainer.config, normalisation)
    if not trainer.ranks.is_main:
        trainer.train(evaluate=evaluate, eval_every=spec.eval_every, progress=False)
        return ""
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(out / METRICS, trainer.history["evaluations"])
    timed = TimedEvaluation(evaluate) if evaluate is not None else None
    start_iteration, start = trainer.iteration, time.perf_counter()
    try:
        history = trainer.train(evaluate=timed, eval_every=spec.eval_every, progress=progress, on_evaluation=log)
    finally:
        log.close()
    wall = time.perf_counter() - start
    torch.save(trainer.student.state_dict(), out / "student.pt")
    torch.save(trainer.generator.state_dict(), out / "generator.pt")
    (out / "history.json").write_text(json.dumps({"config": to_dict(trainer.config), **history}, indent=2),
                                      encoding="utf-8")
    eval_seconds = timed.seconds if timed is not None else 0.0
    write_report(out, _report(spec, trainer, teacher, normalisation, trainer.iteration - start_iteration,
                              wall, eval_seconds))
    last = history["evaluations"][-1] if history["evaluations"] else {}
    return f"trained {trainer.iteration} iterations; last evaluation {last}; wrote {out}"


def _report(spec: DistillConfig, trainer: Trainer, teacher: TeacherFile, normalisation: dict[str, Any],
            iterations_run: int, wall: float, eval_seconds: float) -> dict[str, Any]:
    """report.json of a distillation run: curve statistics, throughput, config, teacher, versions."""
    cfg = trainer.config
    images = iterations_run * (cfg.generator_steps + cfg.student_steps) * cfg.batch_size
    train_seconds = max(wall - eval_seconds, 1e-9)
    return {
        "kind": "distill", "label": spec.preset or spec.method, "preset": spec.preset, "method": spec.method,
        "seed": cfg.seed, "dataset": spec.dataset or None, "student_arch": spec.student.arch,
        "teacher": teacher_summary(teacher, spec.dataset),
        "normalisation": normalisation,
        **curve_report(trainer.history["evaluations"], trainer.probes), "stats_over": "all evaluations",
        "iterations_run": iterations_run, "wall_time_s": wall, "eval_time_s": eval_seconds,
        "eval_fraction": eval_seconds / wall if wall > 0 else 0.0,
        "images_per_second": images / train_seconds,
        "images_per_second_definition": "pseudo-images generated per second of training (evaluation excluded): "
                                        "iterations x (generator_steps + student_steps) x batch_size",
        "config": {**to_dict(spec), "trainer": to_dict(cfg)}, **environment(),
    }


def teacher_summary(teacher: TeacherFile, dataset: str) -> dict[str, Any]:
    """What a report says of the teacher: its file, architecture, recognised layout and the accuracy published
    for it (where one is known)."""
    published = teacher.published_accuracy(dataset) if dataset else None
    return {"checkpoint": teacher.path, "arch": teacher.arch, "num_classes": teacher.num_classes,
            "layout": teacher.layout, "code_bases": teacher.code_bases, "wrapper": teacher.wrapper,
            "names": teacher.names,
            **{k: teacher.meta[k] for k in ("dataset", "test_accuracy", "best_acc1", "epoch") if k in teacher.meta},
            "published_accuracy": published[0] if published else None,
            "published_source": published[1] if published else None}


def teacher_normalisation(teacher: TeacherFile, dataset: str, mean: tuple[float, ...] | None = None,
                          std: tuple[float, ...] | None = None) -> dict[str, Any]:
    """The statistics ``teacher`` is evaluated with on ``dataset``, and where they come from: ``mean`` / ``std``
    when given (the config's ``teacher.mean`` / ``teacher.std``), else the file's or its recognised code base's,
    else the dataset's own with one warning naming them (a teacher trained with others would be scored wrongly)."""
    if (mean, std) != (None, None):
        problem = stats_problem(mean, std, teacher.in_channels)
        if problem:
            raise ValueError(f"teacher.mean and teacher.std are set together, {teacher.in_channels} values each: "
                             f"{problem}")
        return {"mean": list(mean), "std": list(std), "from": "the config (teacher.mean, teacher.std)"}
    known = teacher.known_normalisation(dataset)
    if known is not None:
        (mean, std), source = known
        return {"mean": list(mean), "std": list(std), "from": source}
    assumed = image_set(dataset)
    warn_once(f"normalisation of {teacher.path}",
              f"the normalisation teacher {teacher.path!r} was trained with is not known (layout: {teacher.layout}); "
              f"assumed {dataset}'s mean={list(assumed.mean)} std={list(assumed.std)} ({assumed.stats_source}). "
              f"If it was trained with others, state them: --set teacher.mean=[...] --set teacher.std=[...]")
    return {"mean": list(assumed.mean), "std": list(assumed.std),
            "from": f"assumed: {dataset}'s statistics ({assumed.stats_source}); the teacher's are not known"}


def check_clip(config: DFADConfig, normalisation: dict[str, Any]) -> None:
    """One warning when DeepInversion's inputs are clipped under another normalisation than the teacher's."""
    clip, known = (config.synthesis_clip_mean, config.synthesis_clip_std), (normalisation.get("mean"),
                                                                            normalisation.get("std"))
    if not clip[0] or known[0] is None or all(_same_values(a, b) for a, b in zip(clip, known)):
        return
    warn_once(f"synthesis clip {clip} {known}", f"the inputs are clipped to the image range under mean={list(clip[0])} "
              f"std={list(clip[1])} (synthesis_clip_mean, synthesis_clip_std), but the teacher's normalisation is "
              f"mean={list(known[0])} std={list(known[1])} ({normalisation.get('from')}); set them to the teacher's: "
              "--set trainer.synthesis_clip_mean=[...] --set trainer.synthesis_clip_std=[...]")


def _same_values(a: tuple[float, ...] | list[float], b: tuple[float, ...] | list[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b))


def evaluator(spec: DistillConfig, teacher: TeacherFile, device: torch.device
              ) -> tuple[Callable[[nn.Module], dict[str, float]] | None, dict[str, Any]]:
    """The evaluation callback (the dataset's test split on the device, normalised as the teacher was trained, or
    ``eval_data``) and the normalisation used."""
    if spec.dataset:
        from ..data import Normalize, load_images

        if not spec.data:
            raise ValueError(f"dataset={spec.dataset!r} needs the path of its files (data=PATH, --data)")
        data = load_images(spec.dataset, spec.data, train=False)
        normalisation = teacher_normalisation(teacher, spec.dataset, spec.teacher.mean, spec.teacher.std)
        evaluate = accuracy_evaluator(data.x_test.to(device), data.y_test.to(device),
                                      transform=Normalize(normalisation["mean"], normalisation["std"]))
        return evaluate, normalisation
    if not spec.eval_data:
        return None, {}
    data = torch.load(spec.eval_data, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or "x" not in data or "y" not in data:
        raise ValueError(f"eval_data {spec.eval_data!r} must hold a dict with tensors 'x' and 'y'")
    return accuracy_evaluator(data["x"], data["y"]), {"from": f"eval_data {spec.eval_data!r} (used as stored)"}
