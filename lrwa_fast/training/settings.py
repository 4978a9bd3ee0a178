"""From the flat config to each part's settings, in one place: one function per part reads its own group of
config fields and builds that part's frozen settings by keyword. :func:`part_settings` runs them all; the
trainer calls it once and builds every part from what it returns, so no part reads the config itself.

The config (:class:`~lrwa_fast.DFADConfig`, :class:`~lrwa_fast.LRwAConfig`) stays the flat, documented
interface users write; the settings are how the inside is built from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import DFADConfig, LRwAConfig
from ..optim import UpdaterSettings
from ..replay import BufferSettings, GenerativeSettings
from ..replay.factory import MemorySettings
from ..runtime.services import RuntimeSettings
from ..updates import KDLoss, MetaSettings
from .generator_ema import EMASettings
from .generator_objective import ObjectiveSettings
from .probes import ProbeSettings


@dataclass(frozen=True, kw_only=True)
class LoopSettings:
    """The trainer's own: what one iteration is, how long the run is, where the models live."""

    batch_size: int = 256  # fresh samples per step (global)
    latent_dim: int = 256
    iterations: int = 1000
    generator_steps: int = 1
    student_steps: int = 5
    log_every: int = 1  # iterations between metric reads
    seed: int = 0  # the latent codes' stream
    channels_last: bool = False
    compile_student: bool = False


@dataclass(frozen=True, kw_only=True)
class CheckpointSettings:
    """Periodic checkpoints in :meth:`~lrwa_fast.Trainer.train`."""

    directory: str = ""  # "" = off
    every: int = 0  # iterations between checkpoints; 0 = off
    keep: int = 3  # the newest kept


def runtime_settings(cfg: DFADConfig) -> RuntimeSettings:
    return RuntimeSettings(device=cfg.device, backend=cfg.backend, precision=cfg.precision, nonfinite=cfg.nonfinite,
                           dist_timeout=cfg.dist_timeout)


def loop_settings(cfg: DFADConfig) -> LoopSettings:
    return LoopSettings(batch_size=cfg.batch_size, latent_dim=cfg.latent_dim, iterations=cfg.iterations,
                        generator_steps=cfg.generator_steps, student_steps=cfg.student_steps, log_every=cfg.log_every,
                        seed=cfg.seed, channels_last=cfg.channels_last, compile_student=cfg.compile_student)


def checkpoint_settings(cfg: DFADConfig) -> CheckpointSettings:
    return CheckpointSettings(directory=cfg.checkpoint_dir, every=cfg.checkpoint_every, keep=cfg.keep_checkpoints)


def kd_loss(cfg: DFADConfig) -> KDLoss:
    return KDLoss(kind=cfg.loss, temperature=cfg.temperature, backend=cfg.backend)


def objective_settings(cfg: DFADConfig) -> ObjectiveSettings:
    return ObjectiveSettings(kind=cfg.adversarial_loss, temperature=cfg.adversarial_temperature,
                             weights=cfg.generator_weights)


def student_updater_settings(cfg: DFADConfig) -> UpdaterSettings:
    return UpdaterSettings(optimizer=cfg.student_optimizer, horizon=cfg.iterations, clip=cfg.grad_clip,
                           loss_scaling=cfg.precision == "fp16")


def generator_updater_settings(cfg: DFADConfig) -> UpdaterSettings:
    return UpdaterSettings(optimizer=cfg.generator_optimizer, horizon=cfg.iterations,
                           loss_scaling=cfg.precision == "fp16")


def memory_settings(cfg: DFADConfig) -> MemorySettings | None:
    """The memory of an :class:`~lrwa_fast.LRwAConfig` (``memory_kind``); none for DFAD."""
    if not isinstance(cfg, LRwAConfig):
        return None
    if cfg.memory_kind == "generative":
        weights = cfg.generator_weights
        return GenerativeSettings(batch_size=cfg.memory_batch_size, steps=cfg.vae_steps, fresh_size=cfg.vae_fresh_size,
                                  kl_weight=cfg.vae_kl_weight, teacher_weight=cfg.vae_teacher_weight,
                                  refine_steps=cfg.vae_refine_steps, refine_lr=cfg.vae_refine_lr,
                                  one_hot=weights.one_hot, balance=weights.balance, start=cfg.memory_start,
                                  latent_dim=cfg.vae_latent_dim or cfg.latent_dim, width=cfg.vae_width,
                                  optimizer=cfg.vae_optimizer, horizon=cfg.iterations, seed=cfg.seed)
    return BufferSettings(capacity=cfg.memory_capacity, batch_size=cfg.memory_batch_size, policy=cfg.memory_policy,
                          draw=cfg.memory_draw, insert_size=cfg.memory_insert_size,
                          insert_every=cfg.memory_insert_every, start=cfg.memory_start, dtype=cfg.memory_dtype,
                          backend=cfg.memory_backend, seed=cfg.seed)


def meta_settings(cfg: DFADConfig) -> MetaSettings | None:
    """LRwA's update of an :class:`~lrwa_fast.LRwAConfig`; none for DFAD (plain KD)."""
    if not isinstance(cfg, LRwAConfig):
        return None
    return MetaSettings(mode=cfg.meta_mode, inner_lr=cfg.inner_lr, inner_weight_decay=cfg.inner_weight_decay,
                        acquire_weight=cfg.acquire_weight, retain_weight=cfg.retain_weight,
                        joint_replay=cfg.joint_replay, bn_mode=cfg.bn_mode, fd_scheme=cfg.fd_scheme,
                        fd_epsilon=cfg.fd_epsilon)


def ema_settings(cfg: DFADConfig) -> EMASettings | None:
    return EMASettings(decay=cfg.ema_decay, share=cfg.ema_share) if cfg.ema_decay else None


def probe_settings(cfg: DFADConfig) -> ProbeSettings | None:
    return ProbeSettings(every=cfg.probe_every, size=cfg.probe_size) if cfg.probe_every else None


@dataclass(frozen=True, kw_only=True)
class PartSettings:
    """Every part's settings, as :func:`part_settings` builds them from one config."""

    runtime: RuntimeSettings
    loop: LoopSettings
    checkpoints: CheckpointSettings
    loss: KDLoss
    objective: ObjectiveSettings
    student_updater: UpdaterSettings
    generator_updater: UpdaterSettings
    memory: MemorySettings | None
    meta: MetaSettings | None
    ema: EMASettings | None
    probes: ProbeSettings | None


BUILDERS: dict[str, Callable[[DFADConfig], Any]] = {
    "runtime": runtime_settings, "loop": loop_settings, "checkpoints": checkpoint_settings, "loss": kd_loss,
    "objective": objective_settings, "student_updater": student_updater_settings,
    "generator_updater": generator_updater_settings, "memory": memory_settings, "meta": meta_settings,
    "ema": ema_settings, "probes": probe_settings,
}


def part_settings(cfg: DFADConfig) -> PartSettings:
    """Each part's settings from the flat config ``cfg`` (one builder per part, :data:`BUILDERS`)."""
    return PartSettings(**{name: build(cfg) for name, build in BUILDERS.items()})
