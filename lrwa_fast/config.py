"""Typed configuration: dataclasses with defaults, loadable from JSON/YAML and ``key=value`` overrides.

Every default of the library is written here, once: a part's settings take theirs from the field they are
built from (:func:`default_of`), so changing a default here changes it for the trainer and for every part
built on its own. The rules live with the parts (:mod:`lrwa_fast.rules`).

Nested fields use dots in overrides: ``student_optimizer.lr=0.05``, ``generator_weights.bn_prior=1``.
Unknown keys and values of the wrong type are refused with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml


@dataclass
class OptimizerConfig:
    """An optimiser and its learning-rate schedule (stepped once per iteration)."""

    name: str = "sgd"  # "sgd" | "adam"
    lr: float = 0.1  # learning rate (at the start of the schedule)
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4  # L2 penalty (SGD) / weight decay (Adam)
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
    tv_l1: float = 0.0  # DeepInversion: mean |neighbour difference| of the samples (total variation, L1)
    tv_l2: float = 0.0  # DeepInversion: norm of the neighbour differences (total variation, L2)
    input_l2: float = 0.0  # DeepInversion: mean L2 norm of the samples
    competition: float = 0.0  # Adaptive DeepInversion: 1 - JS(student, teacher) at T = 3, probabilities clamped
    contrastive: float = 0.0  # CMI: instance contrast of the teacher's features (synthesis "reinit" or "meta")


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
    adversarial_temperature: float = 1.0  # for kl / js
    adversarial_agreeing: bool = False  # the adversarial term only on samples both classify alike (CMI, Fast)
    attention_weight: float = 0.0  # ZSKT: β of the attention transfer on matched blocks in the student loss
    generator_weights: GeneratorLossWeights = field(default_factory=GeneratorLossWeights)  # the generator's loss terms
    student_optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)  # SGD 0.1, momentum 0.9, cosine
    generator_optimizer: OptimizerConfig = field(  # Adam 1e-3, cosine
        default_factory=lambda: OptimizerConfig(name="adam", lr=1e-3, weight_decay=0.0, schedule="cosine"))
    grad_clip: float = 0.0  # max global gradient norm of the student; 0 = off
    nonfinite: str = "raise"  # non-finite loss or gradient: "raise" | "skip" (step skipped, counted)
    log_every: int = 1  # iterations between metric reads (a read syncs the device; grad_cosine is computed then)
    checkpoint_every: int = 0  # iterations between checkpoints in train(); 0 = off
    checkpoint_dir: str = ""  # where train() writes checkpoints ("" = off)
    keep_checkpoints: int = 3  # how many recent checkpoints to keep
    seed: int = 0  # the latent codes' stream and the memory's key (the models are initialised by the caller)
    device: str = "auto"  # "auto" (cuda if available) | "cpu" | "cuda" | "cuda:1" ...
    backend: str = "auto"  # fused kernels: "torch" | "triton" | "auto" ($LRWA_FAST_BACKEND, else by device)
    compile_student: bool = False  # torch.compile the student in place (not with meta_mode="exact")
    dist_timeout: float = 600.0  # seconds a collective waits for the other ranks (torchrun runs) before failing
    precision: str = "fp32"  # "fp32" | "bf16" (autocast forwards, fp32 weights) | "fp16" (also loss scaling)
    channels_last: bool = False  # convolutional teacher, student and generator in channels-last memory format
    ema_decay: float = 0.0  # MAD: decay of an exponential moving average of the generator's weights; 0 = off
    ema_share: float = 0.5  # MAD: share of every student batch generated by the EMA generator (ema_decay > 0)
    probe_every: int = 0  # forgetting probes: keep a batch of pseudo-samples every k iterations; 0 = off
    probe_size: int = 64  # samples per probe (the first of the iteration's last fresh batch, this rank's)
    # How the iteration's pseudo-samples are made (docs/methods.md): "generator" (one generator trained across
    # iterations, generator_steps per iteration: DFAD, DAFL, DFQ, ZSKT, LRwA) or a synthesis round per iteration
    # of generator_steps steps whose best batch joins a pool the student steps draw from: "inversion"
    # (DeepInversion: the inputs themselves optimised from noise), "reinit" (CMI: the generator re-initialised
    # each round) or "meta" (Fast: the generator starts each round from a meta-learned initialisation).
    synthesis: str = "generator"  # "generator" | "inversion" | "reinit" | "meta" (docs/methods.md)
    synthesis_pool: int = 4096  # rounds: samples kept (reservoir over every round's) for the student steps
    synthesis_latent_lr: float = 0.0  # reinit / meta: learning rate of the round's latent codes; 0 = the generator's
    synthesis_warmup: int = 0  # rounds: the first rounds without the adversarial term (Fast: 20)
    synthesis_jitter: float = 0.0  # rounds: random shift of the teacher's view, fraction of each size (DeepInv 1/8)
    synthesis_flip: bool = False  # rounds: random horizontal flips of the teacher's view (images)
    synthesis_reset_round: int = 0  # meta: the round whose start re-initialises the generator's first layer; 0 = never
    # inversion: after each step the inputs are clipped to the image range [0, 1] under this normalisation (one
    # value per channel, the teacher's; DataFree's clip_images); empty: unclipped (signals, unknown normalisation)
    synthesis_clip_mean: tuple[float, ...] = ()
    synthesis_clip_std: tuple[float, ...] = ()
    bn_prior_momentum: float = 0.0  # rounds: the BatchNorm prior's batch statistics mixed with earlier rounds' (Fast)
    contrastive_temperature: float = 0.2  # CMI: temperature of the instance contrast
    contrastive_bank: int = 4096  # CMI: features of earlier rounds kept as negatives (CIFAR: 40960)
    contrastive_negatives: int = 1024  # CMI: bank features drawn per step (CIFAR: 4096)
    contrastive_head_dim: int = 128  # CMI: output size of the projection head (CIFAR: 256)

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
    memory_draw: str = "uniform"  # "uniform" (memory_batch_size of all stored samples) | "entry" (one whole insertion)
    memory_insert_size: int = 32  # samples inserted per insertion: the first of the last fresh batch (≤ batch)
    memory_insert_every: int = 1  # iterations between insertions
    memory_start: int = 0  # first iteration that inserts
    memory_dtype: str = "float32"  # storage dtype: "float32" | "float16" | "bfloat16"
    memory_backend: str = "auto"  # "torch" | "cpp" | "cuda" | "auto" ($LRWA_FAST_MEMORY_BACKEND, else the extension)
    inner_lr: float = 0.05  # α of the inner step θ' = θ − α(∇L_acq + λθ)
    inner_weight_decay: float = 0.0  # λ of the inner step (the authors' inner SGD: 5e-4)
    acquire_weight: float = 1.0  # a in J = a·L_acq + w·L_ret(θ') (the authors' outer loss has none: 0)
    meta_mode: str = "exact"  # "exact" | "first_order" | "finite_difference" | "none" (no meta term)
    fd_scheme: str = "central"  # finite_difference: "central" | "one_sided" (one pass fewer, less accurate)
    fd_epsilon: float | None = None  # finite_difference step ε; None = the dtype/‖θ‖ rule (updates.meta_gradient)
    retain_weight: float = 1.0  # w in J = a·L_acq + w·L_ret(θ')
    joint_replay: bool = False  # add L(θ; x_acq ∪ x_mem), as in the authors' code
    bn_mode: str = "acquire"  # BatchNorm in the meta step: "acquire" | "all" | "retain_eval" | "joint" (joint pass)
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
_FIELDS = {f.name: f for f in dataclasses.fields(LRwAConfig)}


def default_of(key: str) -> Any:
    """A settings field whose default is the flat config's for ``key`` (``"generator_weights.one_hot"``
    reaches into a nested group); the field records ``key`` in its metadata (``"config"``)."""
    name, _, inner = key.partition(".")
    found = _FIELDS[name]
    if inner:
        value = getattr(found.default_factory(), inner)  # type: ignore[misc]
        return field(default=value, metadata={"config": key})
    if found.default is not dataclasses.MISSING:
        return field(default=found.default, metadata={"config": key})
    return field(default_factory=found.default_factory, metadata={"config": key})


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
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[float, ...]: any length
            if not isinstance(value, list | tuple):
                raise ValueError(f"{key} must be a list of values, got {value!r}")
            return tuple(_coerce(args[0], v, key) for v in value)
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
