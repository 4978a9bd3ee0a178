"""Typed configuration: dataclasses with defaults, loadable from JSON/YAML and ``key=value`` overrides.

Nested fields use dots in overrides: ``student_optimizer.lr=0.05``, ``generator_weights.bn_prior=1``.
Unknown keys and values of the wrong type are refused with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from . import choices


@dataclass
class OptimizerConfig:
    """An optimiser and its learning-rate schedule (stepped once per iteration)."""

    name: str = "sgd"  # "sgd" | "adam"
    lr: float = 0.1
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.5, 0.999)  # Adam only
    schedule: str = "cosine"  # "constant" | "cosine" (to 0 over the run's iterations)


@dataclass
class GeneratorLossWeights:
    """Weights of the generator's loss terms; 0 switches a term off (and its hooks)."""

    adversarial: float = 1.0  # -L1 / -KL / 1-JS between teacher and student
    one_hot: float = 0.0  # CE of the teacher against its argmax
    balance: float = 0.0  # log C − entropy of the batch-mean teacher softmax
    activation: float = 0.0  # −mean |teacher penultimate features|
    bn_prior: float = 0.0  # DeepInversion BatchNorm-statistics prior


@dataclass
class DFADConfig:
    """Vanilla adversarial DFKD (DFAD): generator step(s), then student step(s) on fresh samples."""

    batch_size: int = 256  # fresh samples per student / generator step
    latent_dim: int = 256  # the generator is called with z of shape (batch, latent_dim)
    iterations: int = 1000  # run length; the horizon of the cosine schedules
    generator_steps: int = 1  # per iteration
    student_steps: int = 5  # per iteration
    loss: str = "l1"  # student loss: "l1" | "kl" | "js"
    temperature: float = 1.0  # for kl / js
    adversarial_loss: str = "l1"  # generator's discrepancy: "l1" | "kl" | "js"
    adversarial_temperature: float = 1.0
    generator_weights: GeneratorLossWeights = field(default_factory=GeneratorLossWeights)
    student_optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    generator_optimizer: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(name="adam", lr=1e-3, weight_decay=0.0, schedule="cosine"))
    grad_clip: float = 0.0  # max global gradient norm of the student; 0 = off
    nonfinite: str = "raise"  # non-finite loss or gradient: "raise" | "skip" (step skipped, counted)
    log_every: int = 1  # iterations between metric reads (a read syncs the device; grad_cosine is computed then)
    checkpoint_every: int = 0  # iterations between checkpoints in train(); 0 = off
    checkpoint_dir: str = ""  # where train() writes checkpoints ("" = off)
    keep_checkpoints: int = 3  # how many recent checkpoints to keep
    seed: int = 0
    device: str = "auto"  # "auto" (cuda if available) | "cpu" | "cuda" | "cuda:1" ...
    backend: str = "auto"  # fused kernels: "auto" | "torch" | "triton" (env LRWA_FAST_BACKEND)
    compile_student: bool = False  # torch.compile the student in place (not with meta_mode="exact")
    dist_timeout: float = 600.0  # seconds a collective waits for the other ranks (torchrun runs) before failing
    precision: str = "fp32"  # "fp32" | "bf16" (autocast forwards, fp32 weights) | "fp16" (also loss scaling)
    channels_last: bool = False  # convolutional teacher, student and generator in channels-last memory format

    # Fields that may change when resuming from a checkpoint: they do not change what is computed.
    RESUMABLE: ClassVar[frozenset[str]] = frozenset({
        "checkpoint_dir", "checkpoint_every", "keep_checkpoints", "log_every", "device", "memory_backend",
        "nonfinite", "compile_student", "dist_timeout"})


@dataclass
class LRwAConfig(DFADConfig):
    """LRwA: DFAD plus a replay memory and the meta-learned student update."""

    memory_capacity: int = 2048  # samples kept
    memory_batch_size: int = 32  # memory samples per student step
    memory_policy: str = "reservoir"  # "reservoir" | "fifo"
    memory_insert_size: int = 32  # samples inserted per insertion: the first of the last fresh batch (≤ batch)
    memory_insert_every: int = 1  # iterations between insertions
    memory_start: int = 0  # first iteration that inserts
    memory_dtype: str = "float32"  # storage dtype: "float32" | "float16" | "bfloat16"
    memory_backend: str = "auto"  # "auto" | "torch" | "cpp" | "cuda" (env LRWA_FAST_MEMORY_BACKEND)
    inner_lr: float = 0.05  # α of the inner step θ' = θ − α∇L_acq
    meta_mode: str = "exact"  # "exact" | "first_order" | "finite_difference" | "none" (no meta term)
    fd_scheme: str = "central"  # finite_difference: "central" | "one_sided" (one pass fewer, less accurate)
    fd_epsilon: float | None = None  # finite_difference step ε; None = the dtype/‖θ‖ rule (updates.meta_gradient)
    retain_weight: float = 1.0  # w in J = L_acq + w·L_ret(θ')
    joint_replay: bool = False  # add L(θ; x_acq ∪ x_mem), as in the authors' code
    bn_mode: str = "acquire"  # BatchNorm in the meta step: "acquire" | "all" | "retain_eval"
    memory_kind: str = "buffer"  # "buffer" (stored samples, memory_* fields) | "generative" (a VAE, vae_* fields)
    # Generative memory. Defaults: the authors' Ours-2 run (gaurav104/LRA src/configs/Ours-2.json; the VAE update in
    # src/agents/predfkd_meta.py, the draw in src/agents/base.py distill_knowledge_meta7; PRE-DFKD's main.py has
    # the same optimiser, update count and replay size).
    vae_latent_dim: int = 0  # 0 = latent_dim (authors: the generator's latent size, 1000)
    vae_width: int = 64  # conv channels width / 2·width (authors: 64 / 128); MLP VAE: 4·width hidden units
    vae_steps: int = 4  # VAE updates per iteration, on the first fresh batches (authors: 4 of 10 student steps)
    vae_fresh_size: int = 128  # fresh samples per VAE update, plus memory_batch_size decoded ones (authors: batch/2)
    vae_optimizer: OptimizerConfig = field(  # authors: Adam at lr_G / 40 = 5e-4, default betas, no decay
        default_factory=lambda: OptimizerConfig(name="adam", lr=5e-4, weight_decay=0.0, betas=(0.9, 0.999),
                                                schedule="constant"))
    vae_kl_weight: float = 1e-5  # weight of KL(q(z|x) ‖ N(0, I)) (authors: 1e-5)
    vae_teacher_weight: float = 1.0  # weight of L1(T(reconstruction), T(x)) (authors: 1)
    vae_refine_steps: int = 1  # Adam steps on prior codes before decoding; 0 = plain prior (authors: 1)
    vae_refine_lr: float = 0.02  # (authors: lr_G = 0.02); the teacher terms use generator_weights' one_hot, balance


C = TypeVar("C")


def from_dict(cls: type[C], data: dict[str, Any], *, prefix: str = "") -> C:
    """Build dataclass ``cls`` from a (possibly nested) dict, checking keys and types."""
    if not isinstance(data, dict):
        raise ValueError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown config key(s) {[prefix + k for k in unknown]} for {cls.__name__}; "
                         f"valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, prefix + name) for name, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, prefix=key + ".")
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ValueError(f"{key} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(t, v, key) for t, v in zip(args, value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key} must be a mapping, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = [t for t in typing.get_args(hint) if t is not type(None)]
        return value if value is None or len(options) != 1 else _coerce(options[0], value, key)
    if hint is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        return _to_float(value, key)
    if hint in (int, str, bool) and type(value) is not hint:
        raise ValueError(f"{key} must be {hint.__name__}, got {value!r}")
    if hint is float and not isinstance(value, float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return value


def _to_float(value: int | float | str, key: str) -> float:
    """A number, also from strings such as ``"1e-3"`` that YAML 1.1 does not read as floats."""
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{key} must be a number, got {value!r}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples as lists), e.g. for JSON."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None) -> C:
    """Defaults of ``cls``, updated by a JSON/YAML file, then by ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
        loaded = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        data = loaded or {}
    apply_overrides(data, overrides or [])
    return from_dict(cls, data)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> None:
    """Set each ``key.sub=value`` override (:func:`parse_override`) in the nested dict ``data``."""
    for item in overrides:
        key, value = parse_override(item)
        set_nested(data, key.split("."), value)


def parse_override(item: str) -> tuple[str, Any]:
    """``"a.b=value"`` → ``("a.b", value)``, the value read as YAML (numbers, lists, booleans...)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {item!r} must look like key=value")
    return key.strip(), yaml.safe_load(raw)


def set_nested(data: dict[str, Any], keys: list[str], value: Any) -> None:
    """``data[k1][k2]... = value``, creating mappings on the way."""
    for i, k in enumerate(keys[:-1]):
        data = data.setdefault(k, {})
        if not isinstance(data, dict):
            raise ValueError(f"cannot set {'.'.join(keys)}: {'.'.join(keys[:i + 1])} is not a mapping")
    data[keys[-1]] = value


# The choices of each field, defined once in lrwa_fast.choices.
_CHOICES: dict[str, tuple[str, ...]] = {
    "loss": choices.LOSS_KINDS,
    "adversarial_loss": choices.LOSS_KINDS,
    "nonfinite": choices.NONFINITE_POLICIES,
    "backend": choices.KERNEL_BACKENDS,
    "memory_policy": choices.MEMORY_POLICIES,
    "memory_dtype": choices.MEMORY_DTYPES,
    "memory_backend": choices.MEMORY_BACKENDS,
    "meta_mode": choices.META_MODES,
    "bn_mode": choices.BN_MODES,
    "fd_scheme": choices.FD_SCHEMES,
    "precision": choices.PRECISIONS,
    "memory_kind": choices.MEMORY_KINDS,
}
_POSITIVE = ("batch_size", "latent_dim", "iterations", "student_steps", "log_every", "keep_checkpoints",
             "memory_capacity", "memory_batch_size", "memory_insert_size", "memory_insert_every",
             "temperature", "adversarial_temperature", "dist_timeout", "vae_width", "vae_steps", "vae_fresh_size")
_NON_NEGATIVE = ("generator_steps", "checkpoint_every", "memory_start", "inner_lr", "retain_weight",
                 "grad_clip", "vae_latent_dim", "vae_kl_weight", "vae_teacher_weight", "vae_refine_steps",
                 "vae_refine_lr")


def check_fd_args(scheme: str, epsilon: float | None) -> None:
    """``ValueError`` naming ``fd_scheme`` or ``fd_epsilon`` when either is not valid."""
    if scheme not in choices.FD_SCHEMES:
        raise ValueError(f"unknown fd_scheme {scheme!r}; expected one of {choices.FD_SCHEMES}")
    if epsilon is not None and not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"fd_epsilon must be a positive finite number (or None for the rule), got {epsilon!r}")


def _optimizer_problems(name: str, opt: dict[str, Any]) -> list[str]:
    problems = []
    if opt["name"] not in choices.OPTIMIZERS:
        problems.append(f"{name}.name={opt['name']!r} (expected one of {choices.OPTIMIZERS})")
    if opt["schedule"] not in choices.SCHEDULES:
        problems.append(f"{name}.schedule={opt['schedule']!r} (expected one of {choices.SCHEDULES})")
    if not opt["lr"] >= 0 or not opt["weight_decay"] >= 0:
        problems.append(f"{name}: lr and weight_decay must be >= 0, got {opt['lr']} and {opt['weight_decay']}")
    if not 0 <= opt["momentum"] < 1 or not all(0 <= b < 1 for b in opt["betas"]):
        problems.append(f"{name}: momentum and betas must lie in [0, 1), got {opt['momentum']} and "
                        f"{list(opt['betas'])}")
    return problems


def validate(config: DFADConfig) -> None:
    """Raise ``ValueError`` naming every field whose value is out of range or not a valid choice."""
    problems = []
    values = dataclasses.asdict(config)
    for key, allowed in _CHOICES.items():
        if key in values and values[key] not in allowed:
            problems.append(f"{key}={values[key]!r} (expected one of {allowed})")
    problems += [f"{k}={values[k]!r} (must be > 0)" for k in _POSITIVE if k in values and not values[k] > 0]
    problems += [f"{k}={values[k]!r} (must be >= 0)" for k in _NON_NEGATIVE
                 if k in values and not values[k] >= 0]
    weights = values["generator_weights"]
    problems += [f"generator_weights.{k}={v!r} (must be >= 0)" for k, v in weights.items() if not v >= 0]
    if values["generator_steps"] > 0 and not any(weights.values()):
        problems.append("generator_weights are all zero but generator_steps > 0")
    for name in ("student_optimizer", "generator_optimizer", "vae_optimizer"):
        problems += _optimizer_problems(name, values[name]) if name in values else []
    if values.get("meta_mode") == "none" and not values.get("joint_replay"):
        problems.append("meta_mode='none' without joint_replay would sample the memory and never use it "
                        "(use DFADTrainer, or set joint_replay=True)")
    if "fd_epsilon" in values:
        try:
            check_fd_args(values["fd_scheme"], values["fd_epsilon"])
        except ValueError as err:
            problems.append(str(err))
    if values["compile_student"] and values.get("meta_mode") == "exact":
        problems.append("compile_student=True with meta_mode='exact': compiled graphs have no double "
                        "backward (use meta_mode='first_order', or compile_student=False)")

    if problems:
        raise ValueError("invalid configuration: " + "; ".join(problems))
