"""The benchmark cases: a student/teacher pair with its batch sizes, the variants timed on it, and the
models, configs and filled memories every benchmark and profile builds them from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import LRwAConfig
from ..models import Generator, build_model
from ..training import Trainer, trainer_class
from ..training.methods import COMPARED_METHODS


@dataclass(frozen=True)
class BenchCase:
    """A student/teacher pair and the batch sizes of one comparison."""

    student: str = "cnn_small"
    teacher: str = "cnn"
    batch: int = 128
    memory_batch: int = 32
    image_size: int = 8
    channels: int = 1
    num_classes: int = 10
    loss: str = "l1"  # the student's KD loss (the authors' L1 by default; "kl" is smooth)
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16" (the trainers' precision field)

    @property
    def name(self) -> str:
        extra = "".join(f" {v}" for v, default in ((self.loss, "l1"), (self.precision, "fp32")) if v != default)
        return f"{self.student}<-{self.teacher} b{self.batch}/m{self.memory_batch}{extra}"


CASES: dict[str, BenchCase] = {
    "cnn": BenchCase(),
    "wrn16_1": BenchCase("wrn16_1", "wrn40_2", 128, 32, 32, 3, 10),
    "resnet18": BenchCase("resnet18", "resnet34", 256, 64, 32, 3, 100),
    "cnn32": BenchCase("cnn", "cnn_large", 128, 32, 32, 3, 10),  # 4-layer BatchNorm CNN, width 32, 32×32
}
# LRwA step variants → their meta-update settings.
META_VARIANTS: dict[str, dict[str, str]] = {
    "lrwa_first_order": {"meta_mode": "first_order"},
    "lrwa_exact": {"meta_mode": "exact"},
    "lrwa_fd_central": {"meta_mode": "finite_difference", "fd_scheme": "central"},
    "lrwa_fd_one_sided": {"meta_mode": "finite_difference", "fd_scheme": "one_sided"},
}
STEP_VARIANTS = ("dfad_step", *META_VARIANTS, "higher_exact")
ITERATION_VARIANTS = ("dfad_iteration", "lrwa_iteration", "lrwa_generative_iteration")
# LRwA variants → their memory settings (the others use the replay buffer).
MEMORY_VARIANTS: dict[str, dict[str, str]] = {"lrwa_generative_iteration": {"memory_kind": "generative"}}
COMPILED = "+compile"  # suffix of a variant whose student is compiled (compile_student=True)
# The meta variants a compiled student can run: all but exact (a compiled graph has no double backward).
COMPILABLE: dict[str, dict[str, str]] = {k: v for k, v in META_VARIANTS.items() if v["meta_mode"] != "exact"}
COMPILED_VARIANTS = tuple(name + COMPILED for name in ("dfad_step", *COMPILABLE))
SMOOTH = "kl"  # the loss the meta-gradients are also checked on when a case's loss is L1
ON_SMOOTH = f" ({SMOOTH})"  # suffix of those rows


def alike(baseline: str, name: str) -> str:
    """The baseline variant a variant compares with: compiled with compiled, on the smooth loss with on the
    smooth loss, eager with eager."""
    return baseline + next((s for s in (COMPILED, ON_SMOOTH) if name.endswith(s)), "")


def require_compiled(trainer: Trainer, what: str) -> None:
    """Refuse to time an eager student under a compiled variant's name."""
    if not trainer.student_compiled:
        raise RuntimeError(f"{what} needs torch.compile, which cannot run here (see the warning)")


def full_grid(names: list[str]) -> list[BenchCase]:
    """Acquisition batch {64, 256} × memory batch {16, 64} for each named case."""
    return [dataclasses.replace(CASES[n], batch=b, memory_batch=m) for n in names for b in (64, 256)
            for m in (16, 64)]


def case_models(case: BenchCase, device: torch.device,
                latent_dim: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The case's teacher, student and generator, initialised from seed 0, on ``device``."""
    torch.manual_seed(0)
    teacher = build_model(case.teacher, case.num_classes, case.channels)
    student = build_model(case.student, case.num_classes, case.channels)
    generator = Generator(latent_dim, case.channels, case.image_size, ngf=32 if case.image_size <= 8 else 64)
    return teacher.to(device), student.to(device), generator.to(device)


def case_config(cls: type, case: BenchCase, device: torch.device, **extra: Any) -> Any:
    """A config of class ``cls`` with the case's sizes, loss and precision (``extra``: more fields)."""
    shared = dict(batch_size=case.batch, latent_dim=64, iterations=10**6, device=str(device), log_every=10**9,
                  loss=case.loss, precision=case.precision)
    if issubclass(cls, LRwAConfig):
        shared |= dict(memory_batch_size=case.memory_batch, memory_capacity=2048, memory_insert_size=case.batch)
    return cls(**shared, **extra)


# The methods timed side by side (bench --methods, profile --methods): DFAD, LRwA and those papers compare against.
METHOD_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {"dfad": ("dfad", {}), "lrwa": ("lrwa", {}),
                                                          **COMPARED_METHODS}


def method_trainer(name: str, case: BenchCase, device: torch.device, **extra: Any) -> Trainer:
    """A trainer of method ``name`` (:data:`METHOD_VARIANTS`) on the case's models; ``extra``: more config fields.
    Its replay memory is filled and, for a synthesis round method, its pool holds one round."""
    method, fields = METHOD_VARIANTS[name]
    cls = trainer_class(method)
    trainer = cls(*case_models(case, device, 64), case_config(cls.config_class, case, device, **(fields | extra)))
    if trainer.synthesis is not None:
        trainer.synthesis_round()
    if trainer.memory is not None:
        fill_memory(trainer)
    return trainer


def fill_memory(trainer: Trainer) -> None:
    """Fill the replay buffer with generator samples (a generative memory: one VAE update) so every step
    replays."""
    buffer = getattr(trainer.memory, "buffer", None)
    if buffer is None:
        trainer.memory.observe(*trainer.fresh_batch())
        trainer.memory.end_of_iteration(trainer.iteration, clean=True)
        return
    while len(buffer) < buffer.capacity:
        buffer.add(*trainer.fresh_batch())
