"""``lrwa-fast distill``: distil a user's teacher checkpoint into a student named by architecture."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import latest_checkpoint
from .config import from_dict, to_dict
from .metrics import accuracy_evaluator
from .models import Generator, build_model
from .trainer import DFADTrainer, trainer_class


@dataclass
class ModelSpec:
    """A classifier from the model zoo, optionally initialised from a state_dict file."""

    arch: str = "resnet18"
    checkpoint: str = ""  # path to a state_dict (or {"model": state_dict}); required for the teacher
    num_classes: int = 10
    in_channels: int = 3


@dataclass
class GeneratorSpec:
    """The DCGAN-style generator; its latent size is the trainer's ``latent_dim``."""

    img_size: int = 32
    ngf: int = 64


@dataclass
class DistillConfig:
    """What ``lrwa-fast distill --config FILE`` reads."""

    method: str = "lrwa"  # "lrwa" | "dfad"
    teacher: ModelSpec = field(default_factory=lambda: ModelSpec(arch="resnet34"))
    student: ModelSpec = field(default_factory=ModelSpec)
    generator: GeneratorSpec = field(default_factory=GeneratorSpec)
    trainer: dict[str, Any] = field(default_factory=dict)  # LRwAConfig / DFADConfig fields
    eval_data: str = ""  # optional torch file {"x": images, "y": labels} to evaluate on
    eval_every: int = 100
    output_dir: str = "lrwa_runs/distill"


def load_model(spec: ModelSpec, *, required: bool) -> nn.Module:
    """Build ``spec.arch`` and load ``spec.checkpoint`` into it (strictly)."""
    model = build_model(spec.arch, spec.num_classes, spec.in_channels)
    if not spec.checkpoint:
        if required:
            raise ValueError("the teacher needs a checkpoint (teacher.checkpoint)")
        return model
    path = Path(spec.checkpoint)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {str(path)!r} does not fit architecture {spec.arch!r}: {err}") from err
    return model


DEFAULT_CHECKPOINT_EVERY = 500


def build_trainer(spec: DistillConfig, resume: str | None = None) -> DFADTrainer:
    """Teacher, student, generator and trainer described by ``spec`` (restored from ``resume``).

    Unless the trainer config says otherwise, checkpoints go to ``output_dir/checkpoints`` every
    :data:`DEFAULT_CHECKPOINT_EVERY` iterations.
    """
    trainer_cls = trainer_class(spec.method)
    defaults = {"checkpoint_dir": str(Path(spec.output_dir) / "checkpoints"),
                "checkpoint_every": DEFAULT_CHECKPOINT_EVERY}
    cfg = from_dict(trainer_cls.config_class, {**defaults, **spec.trainer}, prefix="trainer.")
    torch.manual_seed(cfg.seed)  # the student and generator initialisations follow the seed
    teacher = load_model(spec.teacher, required=True)
    student = load_model(spec.student, required=False)
    generator = Generator(cfg.latent_dim, channels=spec.teacher.in_channels, img_size=spec.generator.img_size,
                          ngf=spec.generator.ngf)
    if resume is None:
        return trainer_cls(teacher, student, generator, cfg)
    path = latest_checkpoint(resume) if Path(resume).is_dir() else Path(resume)
    if path is None:
        raise ValueError(f"no checkpoint found in {resume!r}")
    return trainer_cls.load(path, teacher, student, generator, cfg)


def run_distill(spec: DistillConfig, progress: bool = True, resume: str | None = None) -> str:
    """Train, save the student, generator and history into ``output_dir``; return a summary line
    (data-parallel: rank 0 writes and summarises, the other ranks return ``""``)."""
    trainer = build_trainer(spec, resume)
    evaluate = _evaluator(spec.eval_data) if spec.eval_data else None
    history = trainer.train(evaluate=evaluate, eval_every=spec.eval_every, progress=progress)
    if not trainer.ranks.is_main:
        return ""
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(trainer.student.state_dict(), out / "student.pt")
    torch.save(trainer.generator.state_dict(), out / "generator.pt")
    (out / "history.json").write_text(json.dumps({"config": to_dict(trainer.config), **history}, indent=2),
                                      encoding="utf-8")
    last = history["evaluations"][-1] if history["evaluations"] else {}
    return f"trained {trainer.iteration} iterations; last evaluation {last}; wrote {out}"


def _evaluator(path: str) -> Callable[[nn.Module], dict[str, float]]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or "x" not in data or "y" not in data:
        raise ValueError(f"eval_data {path!r} must hold a dict with tensors 'x' and 'y'")
    return accuracy_evaluator(data["x"], data["y"])
