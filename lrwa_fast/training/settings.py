"""From the flat config to each part's settings, in one place. Each part's settings are built by name from
the config keys its field map (:data:`FIELDS`) names; the defaults are the config's (written once, in
:mod:`lrwa_fast.config`) and the rules the part's own (its settings' ``__post_init__``). :func:`part_settings`
builds them all, gathering every broken rule in one message named by config keys; the trainer calls it once
and builds every part from what it returns, so no part reads the config itself.

The config (:class:`~lrwa_fast.DFADConfig`, :class:`~lrwa_fast.LRwAConfig`) stays the flat, documented
interface users write; the settings are how the inside is built from it.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..choices import MEMORY_KINDS
from ..config import DFADConfig, LRwAConfig
from ..optim import UpdaterSettings
from ..replay import BufferSettings, GenerativeSettings
from ..replay.factory import MemorySettings
from ..rules import Problem, SettingsError, check, non_negative, one_of, positive
from ..runtime.services import RuntimeSettings
from ..updates import AttentionSettings, KDLoss, MetaSettings
from .generator_ema import EMASettings
from .generator_objective import ObjectiveSettings
from .probes import ProbeSettings
from .synthesis import SynthesisSettings


@dataclass(frozen=True, kw_only=True)
class LoopSettings:
    """The trainer's own: what one iteration is, how long the run is, where the models live (built from the
    config only: no defaults of its own)."""

    batch_size: int  # fresh samples per step (global)
    latent_dim: int
    iterations: int
    generator_steps: int
    student_steps: int
    log_every: int  # iterations between metric reads
    seed: int  # the latent codes' stream
    channels_last: bool
    compile_student: bool

    def __post_init__(self) -> None:
        check(self, [*positive(self, "batch_size", "latent_dim", "iterations", "student_steps", "log_every"),
                     *non_negative(self, "generator_steps")])


@dataclass(frozen=True, kw_only=True)
class CheckpointSettings:
    """Periodic checkpoints in :meth:`~lrwa_fast.Trainer.train` (built from the config only)."""

    directory: str  # "" = off
    every: int  # iterations between checkpoints; 0 = off
    keep: int  # the newest kept

    def __post_init__(self) -> None:
        check(self, [*non_negative(self, "every"), *positive(self, "keep")])


@dataclass(frozen=True)
class Derived:
    """A settings value computed from config ``keys``; messages name the key ``named`` picks (else the first)."""

    keys: tuple[str, ...]
    compute: Callable[[DFADConfig], Any]
    named: Callable[[DFADConfig], str] | None = None


Source = str | Derived  # a config key ("generator_weights.one_hot" reaches into a group), or a computation
FP16 = Derived(("precision",), lambda cfg: cfg.precision == "fp16")  # loss scaling

# Each part's settings field → where its value comes from in the flat config.
FIELDS: dict[str, Mapping[str, Source]] = {
    "runtime": {"device": "device", "backend": "backend", "precision": "precision", "nonfinite": "nonfinite",
                "dist_timeout": "dist_timeout"},
    "loop": {name: name for name in ("batch_size", "latent_dim", "iterations", "generator_steps", "student_steps",
                                     "log_every", "seed", "channels_last", "compile_student")},
    "checkpoints": {"directory": "checkpoint_dir", "every": "checkpoint_every", "keep": "keep_checkpoints"},
    "loss": {"kind": "loss", "temperature": "temperature", "backend": "backend"},
    "objective": {"kind": "adversarial_loss", "temperature": "adversarial_temperature",
                  "agreeing": "adversarial_agreeing", "weights": "generator_weights",
                  "bn_momentum": "bn_prior_momentum"},
    "synthesis": {"kind": "synthesis", "steps": "generator_steps", "batch_size": "batch_size",
                  "latent_dim": "latent_dim", "pool": "synthesis_pool", "latent_lr": "synthesis_latent_lr",
                  "warmup": "synthesis_warmup", "jitter": "synthesis_jitter", "flip": "synthesis_flip",
                  "reset_round": "synthesis_reset_round", "clip_mean": "synthesis_clip_mean",
                  "clip_std": "synthesis_clip_std",
                  "optimizer": "generator_optimizer", "contrastive": "generator_weights.contrastive",
                  "contrastive_temperature": "contrastive_temperature", "contrastive_bank": "contrastive_bank",
                  "contrastive_negatives": "contrastive_negatives", "contrastive_head_dim": "contrastive_head_dim",
                  "seed": "seed"},
    "attention": {"weight": "attention_weight"},
    "student_updater": {"optimizer": "student_optimizer", "horizon": "iterations", "clip": "grad_clip",
                        "loss_scaling": FP16},
    "generator_updater": {"optimizer": "generator_optimizer", "horizon": "iterations", "loss_scaling": FP16},
    "buffer": {"capacity": "memory_capacity", "batch_size": "memory_batch_size", "policy": "memory_policy",
               "draw": "memory_draw", "insert_size": "memory_insert_size", "insert_every": "memory_insert_every",
               "start": "memory_start", "dtype": "memory_dtype", "backend": "memory_backend", "seed": "seed"},
    "generative": {"batch_size": "memory_batch_size", "steps": "vae_steps", "fresh_size": "vae_fresh_size",
                   "kl_weight": "vae_kl_weight", "teacher_weight": "vae_teacher_weight",
                   "refine_steps": "vae_refine_steps", "refine_lr": "vae_refine_lr",
                   "one_hot": "generator_weights.one_hot", "balance": "generator_weights.balance",
                   "start": "memory_start",
                   "latent_dim": Derived(("vae_latent_dim", "latent_dim"),
                                         lambda cfg: cfg.vae_latent_dim or cfg.latent_dim,
                                         lambda cfg: "vae_latent_dim" if cfg.vae_latent_dim else "latent_dim"),
                   "width": "vae_width", "optimizer": "vae_optimizer", "horizon": "iterations", "seed": "seed"},
    "meta": {"mode": "meta_mode", "inner_lr": "inner_lr", "inner_weight_decay": "inner_weight_decay",
             "acquire_weight": "acquire_weight", "retain_weight": "retain_weight", "joint_replay": "joint_replay",
             "bn_mode": "bn_mode", "fd_scheme": "fd_scheme", "fd_epsilon": "fd_epsilon"},
    "ema": {"decay": "ema_decay", "share": "ema_share"},
    "probes": {"every": "probe_every", "size": "probe_size"},
}
SETTINGS: dict[str, type] = {
    "runtime": RuntimeSettings, "loop": LoopSettings, "checkpoints": CheckpointSettings, "loss": KDLoss,
    "objective": ObjectiveSettings, "synthesis": SynthesisSettings, "attention": AttentionSettings,
    "student_updater": UpdaterSettings, "generator_updater": UpdaterSettings,
    "buffer": BufferSettings, "generative": GenerativeSettings, "meta": MetaSettings, "ema": EMASettings,
    "probes": ProbeSettings,
}


def config_key(source: Source, cfg: DFADConfig) -> str:
    """The config key a value comes from in ``cfg``, as messages name it."""
    if not isinstance(source, Derived):
        return source
    return source.named(cfg) if source.named is not None else source.keys[0]


def values_of(fields: str, cfg: DFADConfig) -> dict[str, Any]:
    """The values of ``FIELDS[fields]`` in ``cfg``, by settings field."""
    return {name: source.compute(cfg) if isinstance(source, Derived) else operator.attrgetter(source)(cfg)
            for name, source in FIELDS[fields].items()}


def config_names(fields: str, cfg: DFADConfig) -> dict[str, str]:
    """Each settings field of ``FIELDS[fields]`` → the config key messages name it by."""
    return {name: config_key(source, cfg) for name, source in FIELDS[fields].items()}


def build(fields: str, cfg: DFADConfig) -> Any:
    """The settings of ``FIELDS[fields]`` read from ``cfg``; a broken rule names the config's keys."""
    try:
        return SETTINGS[fields](**values_of(fields, cfg))
    except SettingsError as err:
        names = config_names(fields, cfg)
        raise SettingsError("configuration", [p.renamed(names) for p in err.problems]) from None


def memory_settings(cfg: DFADConfig) -> MemorySettings | None:
    """The memory of an :class:`~lrwa_fast.LRwAConfig` (``memory_kind``); none for DFAD."""
    if not isinstance(cfg, LRwAConfig):
        return None
    check(cfg, one_of(cfg, memory_kind=MEMORY_KINDS))
    return build("generative" if cfg.memory_kind == "generative" else "buffer", cfg)


def meta_settings(cfg: DFADConfig) -> MetaSettings | None:
    """LRwA's update of an :class:`~lrwa_fast.LRwAConfig`; none for DFAD (plain KD)."""
    return build("meta", cfg) if isinstance(cfg, LRwAConfig) else None


@dataclass(frozen=True, kw_only=True)
class PartSettings:
    """Every part's settings, as :func:`part_settings` builds them from one config; checks the rules that
    join two parts (:func:`joining_problems`)."""

    runtime: RuntimeSettings
    loop: LoopSettings
    checkpoints: CheckpointSettings
    loss: KDLoss
    objective: ObjectiveSettings
    synthesis: SynthesisSettings
    attention: AttentionSettings  # weight 0: no attention transfer
    student_updater: UpdaterSettings
    generator_updater: UpdaterSettings
    memory: MemorySettings | None
    meta: MetaSettings | None
    ema: EMASettings  # decay 0: no EMA generator
    probes: ProbeSettings  # every 0: no probes

    def __post_init__(self) -> None:
        check(self, joining_problems({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}))


def joining_problems(parts: Mapping[str, Any]) -> list[Problem]:
    """The rules that join two parts, on the parts of ``parts`` (by :class:`PartSettings` field); a rule whose
    parts are missing (they broke rules of their own) is left out."""
    return [*_generator_problems(parts), *_compile_problems(parts), *_entry_problems(parts),
            *_synthesis_problems(parts), *_attention_problems(parts)]


def _generator_problems(parts: Mapping[str, Any]) -> list[Problem]:
    loop, objective = parts.get("loop"), parts.get("objective")
    if loop and objective and loop.generator_steps > 0 and not any(dataclasses.astuple(objective.weights)):
        return [Problem("{objective.weights} are all zero but {loop.generator_steps} > 0")]
    return []


def _compile_problems(parts: Mapping[str, Any]) -> list[Problem]:
    loop, meta = parts.get("loop"), parts.get("meta")
    if loop and meta and loop.compile_student and meta.mode == "exact":
        return [Problem("{loop.compile_student}=True with {meta.mode}='exact': compiled graphs have no double "
                        "backward (use {meta.mode}='first_order', or {loop.compile_student}=False)")]
    return []


def _entry_problems(parts: Mapping[str, Any]) -> list[Problem]:
    """An entry is the first samples of one fresh batch."""
    loop, memory = parts.get("loop"), parts.get("memory")
    if loop and isinstance(memory, BufferSettings) and memory.draw == "entry" and memory.insert_size > loop.batch_size:
        return [Problem(f"{{memory.insert_size}} ({memory.insert_size}) must not exceed {{loop.batch_size}} "
                        f"({loop.batch_size}): an entry is the first samples of one fresh batch")]
    return []


def _synthesis_problems(parts: Mapping[str, Any]) -> list[Problem]:
    """Rounds make the samples themselves: no EMA generator to share them with, no fp16 loss scaling (their
    optimisers are their own)."""
    synthesis, ema, runtime = parts.get("synthesis"), parts.get("ema"), parts.get("runtime")
    objective = parts.get("objective")
    if not synthesis:
        return []
    if not synthesis.rounds:
        if objective and objective.bn_momentum:
            return [Problem("{objective.bn_momentum} > 0 mixes statistics across synthesis rounds: "
                            f"{{synthesis.kind}}={synthesis.kind!r} makes none (use 'inversion', 'reinit' or 'meta')")]
        return []
    problems = []
    if ema and ema.decay:
        problems.append(Problem(f"{{synthesis.kind}}={synthesis.kind!r} makes the samples in rounds: "
                                "{ema.decay} must be 0 (MAD's EMA generator shares the generator's batches)"))
    if runtime and runtime.precision == "fp16":
        problems.append(Problem(f"{{synthesis.kind}}={synthesis.kind!r} runs in fp32 or bf16: "
                                "{runtime.precision}='fp16' needs loss scaling the rounds do not have"))
    return problems


def _attention_problems(parts: Mapping[str, Any]) -> list[Problem]:
    """Attention transfer is a term of the plain KD update (ZSKT's), not of LRwA's meta step."""
    attention, meta = parts.get("attention"), parts.get("meta")
    if attention and meta and attention.weight:
        return [Problem("{attention.weight} > 0 is ZSKT's term of the plain KD update; LRwA's meta update "
                        "({meta.mode}) does not take it: use a DFADConfig, or attention_weight=0")]
    return []


# One builder per part, in PartSettings' order: the memory and the meta update depend on the config's kind;
# every other part is its field map read from the config (probes and MAD too: 0 means off).
BUILDERS: dict[str, Callable[[DFADConfig], Any]] = {
    "runtime": partial(build, "runtime"), "loop": partial(build, "loop"),
    "checkpoints": partial(build, "checkpoints"), "loss": partial(build, "loss"),
    "objective": partial(build, "objective"), "synthesis": partial(build, "synthesis"),
    "attention": partial(build, "attention"), "student_updater": partial(build, "student_updater"),
    "generator_updater": partial(build, "generator_updater"), "memory": memory_settings, "meta": meta_settings,
    "ema": partial(build, "ema"), "probes": partial(build, "probes"),
}


def part_settings(cfg: DFADConfig) -> PartSettings:
    """Each part's settings from the flat config ``cfg`` (one builder per part, :data:`BUILDERS`); raises
    ``ValueError`` naming every config key whose value breaks a rule, each problem once (``backend`` feeds two
    parts), the parts' own and those joining parts."""
    built, problems = {}, []
    for name, builder in BUILDERS.items():
        try:
            built[name] = builder(cfg)
        except SettingsError as err:
            problems += err.problems
    names = {f"{part}.{name}": key for part, fields in _fields_of(built).items()
             for name, key in config_names(fields, cfg).items()}
    problems += [p.renamed(names) for p in joining_problems(built)]
    if problems:
        raise SettingsError("configuration", list(dict.fromkeys(problems)))
    return PartSettings(**built)


def _fields_of(built: dict[str, Any]) -> dict[str, str]:
    """Each built part's field map in :data:`FIELDS` (the memory's by its kind)."""
    kinds = {BufferSettings: "buffer", GenerativeSettings: "generative"}
    return {name: kinds.get(type(part), name) for name, part in built.items() if part is not None}


def validate(config: DFADConfig) -> None:
    """Raise ``ValueError`` naming every config key whose value is out of range or not a valid choice."""
    part_settings(config)
