"""Trainers assembled from parts: a student update (strategy), two updaters, a generator objective,
random streams, a non-finite guard, metrics and, for LRwA, a replay memory; :mod:`.loop` runs them.

Trainers train the modules they are given, in place. The teacher is frozen (eval mode, no
gradients); the generator is called with ``z`` of shape ``(batch, latent_dim)``; any input
shape works as long as the teacher and student accept the generator's output.

A trainer built while a ``torch.distributed`` process group is initialised trains data-parallel
(:mod:`.distributed`): batch sizes and the memory's capacity, batch and insert size are global and
each rank takes 1/W; each rank keeps its own memory shard; gradients are averaged in the updaters
and the BatchNorm running statistics at the end of every iteration, so all ranks hold the same
weights, optimiser states and buffers; checkpoints are written by rank 0 with every rank's memory
shard and random state gathered into them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from . import checkpoint as ckpt
from . import loop
from .compiling import compile_module
from .config import DFADConfig, LRwAConfig, from_dict, to_dict, validate
from .distributed import DataParallel, local_device
from .generative_replay import GenerativeMemory
from .generator_objective import GeneratorObjective
from .guard import NonFiniteGuard
from .loop import Evaluate, TrainingInterrupted
from .memory import ReplayBuffer
from .meta import gradients
from .metrics import MetricAccumulator
from .phases import phase
from .precision import autocast
from .randomness import RandomStreams
from .replay import InsertSchedule, Memory, ReplayMemory
from .updater import Updater
from .updates import KDLoss, KDUpdate, MetaUpdate, StepContext, StudentUpdate, UpdateResult, scaled

__all__ = ["DFADTrainer", "LRwATrainer", "TrainingInterrupted", "trainer_class"]

# Config fields that may change when resuming: they do not change what is computed.
RESUMABLE_CHANGES = frozenset({"checkpoint_dir", "checkpoint_every", "keep_checkpoints", "log_every", "device",
                               "memory_backend", "nonfinite", "compile_student", "dist_timeout"})
# Parts whose state differs between data-parallel ranks: a checkpoint holds one state per rank.
PER_RANK_PARTS = ("memory", "random")


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → this process's GPU when CUDA is available (its own under torchrun), else the CPU;
    anything else as ``torch.device``."""
    if name == "auto":
        return local_device()
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Temporarily put modules (and all their children) in eval mode."""
    flags = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def probe_models(teacher: nn.Module, student: nn.Module, generator: nn.Module, latent_dim: int,
                 device: torch.device) -> tuple[tuple[int, ...], int]:
    """Check that the three modules fit together; return (sample shape, number of classes)."""
    for name, module in (("student", student), ("generator", generator)):
        if not any(p.requires_grad for p in module.parameters()):
            raise ValueError(f"the {name} has no trainable parameters")
    z = torch.randn(2, latent_dim, device=device)
    with torch.no_grad(), eval_mode(teacher, student, generator):
        x = _call_or_explain(generator, z, f"the generator does not accept z of shape (2, {latent_dim})"
                                           " (config.latent_dim)")
        t = _call_or_explain(teacher, x, f"the teacher does not accept the generator's output of shape "
                                         f"{tuple(x.shape)}")
        s = _call_or_explain(student, x, f"the student does not accept the generator's output of shape "
                                         f"{tuple(x.shape)}")
    for name, out in (("teacher", t), ("student", s)):
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != 2:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the {name} must return logits of shape (batch, classes), got {shape}")
    if t.shape[1] != s.shape[1]:
        raise ValueError(f"output widths differ: the teacher gives {t.shape[1]} logits, "
                         f"the student {s.shape[1]}")
    return tuple(x.shape[1:]), int(t.shape[1])


def _call_or_explain(module: nn.Module, x: Tensor, message: str) -> Any:
    try:
        return module(x)
    except Exception as err:
        raise ValueError(f"{message}: {type(err).__name__}: {err}") from err


class DFADTrainer:
    """Adversarial data-free KD: per iteration, generator step(s) then student step(s).

    By default the student update is plain KD (DFAD). ``update`` replaces it with any
    :class:`~lrwa_fast.updates.StudentUpdate`; ``replay`` adds a replay memory fed from the fresh
    batches (as :class:`LRwATrainer` does with :class:`~lrwa_fast.updates.MetaUpdate`; an update
    that holds a ``ReplayMemory`` as ``.memory`` brings it along).
    """

    config_class: type[DFADConfig] = DFADConfig

    def __init__(self, teacher: nn.Module, student: nn.Module, generator: nn.Module,
                 config: DFADConfig | None = None, *, update: StudentUpdate | None = None,
                 replay: Memory | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise ValueError(f"{type(self).__name__} needs a {self.config_class.__name__}, "
                             f"got {type(self.config).__name__}")
        validate(self.config)
        cfg = self.config
        self.ranks = DataParallel.current()
        self.ranks.local_size(cfg.batch_size, "batch_size")
        self.device = resolve_device(cfg.device)
        memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
        self.teacher = teacher.to(self.device, memory_format=memory_format).eval().requires_grad_(False)
        self.teacher_fingerprint = ckpt.fingerprint(self.teacher)
        self.student = student.to(self.device, memory_format=memory_format)
        self.generator = generator.to(self.device, memory_format=memory_format)
        self.sample_shape, self.num_classes = probe_models(self.teacher, self.student, self.generator,
                                                           cfg.latent_dim, self.device)
        self.student_compiled = cfg.compile_student and compile_module(self.student, self.device)
        trainable = [(n, p) for n, p in self.student.named_parameters() if p.requires_grad]
        self.student_names, self.student_params = [n for n, _ in trainable], [p for _, p in trainable]
        backend = None if cfg.backend == "auto" else cfg.backend  # None: $LRWA_FAST_BACKEND
        self.kd_loss = KDLoss(cfg.loss, cfg.temperature, backend)
        self.generator_objective = GeneratorObjective(self.teacher, cfg, backend)
        self.random = RandomStreams(cfg.seed, self.device, self.ranks)
        self.guard = NonFiniteGuard(cfg.nonfinite, defer=self.device.type == "cuda")
        self.metrics = MetricAccumulator(self.device)
        self.student_updater, self.generator_updater = self._updaters()
        self.update: StudentUpdate = KDUpdate()
        self.replay: Memory | None = None
        self.use(update=update, replay=replay)
        self.iteration = 0
        self.history: dict[str, list[dict[str, float]]] = {"metrics": [], "evaluations": []}

    def _updaters(self) -> tuple[Updater, Updater]:
        cfg, shared = self.config, dict(guard=self.guard, metrics=self.metrics, ranks=self.ranks,
                                        rollback=(self.student, self.generator),
                                        loss_scaling=self.config.precision == "fp16")
        generator_params = [p for p in self.generator.parameters() if p.requires_grad]
        return (Updater("student", self.student_params, cfg.student_optimizer, cfg.iterations,
                        clip=cfg.grad_clip, **shared),
                Updater("generator", generator_params, cfg.generator_optimizer, cfg.iterations, **shared))

    def use(self, *, update: StudentUpdate | None = None, replay: Memory | None = None) -> None:
        """Give the trainer a student update and/or a replay memory (``None`` keeps the current one).

        An update holding a :class:`~lrwa_fast.replay.Memory` as ``.memory`` (as
        :class:`~lrwa_fast.updates.MetaUpdate` does) makes it the trainer's replay memory, so it is fed
        and checkpointed.
        """
        if update is not None:
            if not isinstance(update, StudentUpdate):
                raise ValueError(f"update must follow the StudentUpdate protocol (__call__, state_dict, "
                                 f"load_state_dict), got {type(update).__name__}")
            self.update = update
        if replay is None and isinstance(getattr(update, "memory", None), Memory):
            replay = update.memory
        if replay is not None:
            self.replay = replay

    @property
    def memory(self) -> ReplayBuffer | None:
        """The replay buffer, when the trainer has a buffer memory."""
        return self.replay.buffer if isinstance(self.replay, ReplayMemory) else None

    # ----------------------------------------------------------------- one iteration
    def step(self) -> dict[str, float]:
        """One iteration: generator step(s), student step(s); returns the metrics when read."""
        cfg = self.config
        self.student.train()
        self.generator.train()
        skips_before = self.guard.skipped
        for _ in range(cfg.generator_steps):
            self.generator_step()
        for k in range(cfg.student_steps):
            self.student_step(k)
        if self.ranks.enabled:
            with phase("buffer average"):
                self.ranks.average_buffers_((self.student, self.generator))
        if self.replay is not None:
            self.replay.end_of_iteration(self.iteration, clean=self.guard.skipped == skips_before)
        self.student_updater.advance_schedule()
        if cfg.generator_steps:
            self.generator_updater.advance_schedule()
        read = self.metrics_due()
        self.iteration += 1
        if not read:
            return {}
        self.guard.check()
        metrics = {"iteration": self.iteration, **self.metrics.read(), **self._host_metrics()}
        self.history["metrics"].append(metrics)
        return metrics

    def metrics_due(self) -> bool:
        """Whether this iteration's metrics will be read (quantities only logged are computed then)."""
        return (self.iteration + 1) % self.config.log_every == 0

    def _host_metrics(self) -> dict[str, float]:
        extra = self.replay.metrics() if self.replay is not None else {}
        if self.config.precision == "fp16":
            extra["scaler_skips"] = self.student_updater.scaler.skips + self.generator_updater.scaler.skips
        return {"lr": self.student_updater.lr, "skipped_steps": self.guard.skipped, **extra}

    def fresh_batch(self) -> tuple[Tensor, Tensor]:
        """A batch of pseudo-samples and the teacher's logits on them (no gradients)."""
        with torch.no_grad():
            with phase("generator forward"):
                x = self.generator(self.random.latent(self.config.batch_size, self.config.latent_dim))
            with phase("teacher forward"):
                return x, self.teacher(x)

    def student_loss(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        """The configured KD loss (fused kernel where available)."""
        return self.kd_loss(student_logits, teacher_logits)

    def generator_step(self) -> bool:
        """One generator update on a fresh batch; ``False`` when skipped (``nonfinite="skip"``)."""
        cfg = self.config

        def compute() -> UpdateResult:
            with phase("generator step"), autocast(cfg.precision, self.device):
                z = self.random.latent(cfg.batch_size, cfg.latent_dim)
                loss = self.generator_objective(self.generator, self.student, z)
                grads = gradients(scaled(loss, self.generator_updater.loss_scale), self.generator_updater.params)
                return UpdateResult(grads, {"loss_generator": loss})

        return self.generator_updater.step(compute, f"iteration {self.iteration}, generator step")

    def student_step(self, k: int = 0) -> bool:
        """Student update ``k`` of the iteration on a fresh batch; ``False`` when skipped."""

        def compute() -> UpdateResult:
            with autocast(self.config.precision, self.device):
                x, t = self.fresh_batch()
                if self.replay is not None:
                    self.replay.observe(x, t)
                context = StepContext(self.student, self.student_params, self.student_names, self.kd_loss,
                                      self.iteration, self.metrics_due(), self.ranks.group,
                                      self.student_updater.loss_scale)
                return self.update(context, x, t)

        return self.student_updater.step(compute, f"iteration {self.iteration}, student step {k}")

    # ----------------------------------------------------------------- the run
    def train(self, iterations: int | None = None, evaluate: Evaluate | None = None, eval_every: int = 100,
              progress: bool = True) -> dict[str, list[dict[str, float]]]:
        """Run ``iterations`` more iterations (default: up to ``config.iterations``).

        ``evaluate(student)`` (student in eval mode, no gradients) is called every ``eval_every``
        iterations and after the last; it returns a score or a dict of scores. Returns the
        history: ``{"metrics": [...], "evaluations": [...]}``. SIGINT/SIGTERM stop after the
        current iteration with a checkpoint (:class:`TrainingInterrupted`).
        """
        return loop.train(self, iterations, evaluate, eval_every, progress)

    def check_horizon(self, iterations: int) -> None:
        """Refuse to train past ``config.iterations`` where a cosine schedule has reached zero."""
        cfg = self.config
        cosine = [o.schedule == "cosine" for o in (cfg.student_optimizer, cfg.generator_optimizer)]
        if any(cosine) and self.iteration + iterations > cfg.iterations:
            raise ValueError(f"training to iteration {self.iteration + iterations} would pass config.iterations="
                             f"{cfg.iterations}, where the cosine schedule reaches a learning rate of 0; "
                             "raise config.iterations or use schedule='constant'")

    def check_finite(self) -> None:
        """Raise :class:`~lrwa_fast.NonFiniteError` for a deferred non-finite value (one device sync)."""
        self.guard.check()

    def evaluate(self, evaluate: Evaluate) -> dict[str, float]:
        """Call ``evaluate(student)`` in eval mode without gradients and return its scores."""
        with torch.no_grad(), eval_mode(self.student):
            result = evaluate(self.student)
        scores = dict(result) if isinstance(result, dict) else {"score": float(result)}
        return {"iteration": self.iteration, **scores}

    # ----------------------------------------------------------------- checkpoints
    def parts(self) -> dict[str, Stateful]:
        """The parts whose states make a checkpoint, by name (the memory first: it validates most)."""
        parts: dict[str, Stateful] = {"memory": self.replay} if self.replay is not None else {}
        return parts | {
            "student": self.student, "generator": self.generator,
            "student_updater": self.student_updater, "generator_updater": self.generator_updater,
            "guard": self.guard, "metrics": self.metrics, "random": self.random, "update": self.update,
        }

    def state_dict(self) -> dict[str, Any]:
        """The complete training state: each part's state plus what identifies the run; checks
        finiteness first.

        Tensors are the live ones (as ``nn.Module.state_dict``): serialise it, or deep-copy it to
        keep a snapshot in memory. Data-parallel: a collective (call it on every rank); the states of
        :data:`PER_RANK_PARTS` of every rank are gathered into ``rank_states`` on rank 0, and the
        other ranks get their local state.
        """
        self.guard.check()
        state = self._local_state()
        if self.ranks.enabled:
            gathered = self.ranks.gather({name: state.pop(name) for name in PER_RANK_PARTS if name in state})
            if gathered is not None:
                state["rank_states"] = gathered
        return state

    def _local_state(self) -> dict[str, Any]:
        return {
            "format_version": ckpt.FORMAT_VERSION, "trainer": type(self).__name__,
            "world_size": self.ranks.world_size,
            "update_type": type(self.update).__qualname__,
            "device_type": self.device.type, "config": to_dict(self.config),
            "teacher_fingerprint": self.teacher_fingerprint,
            "architecture": {"student": ckpt.architecture(self.student),
                             "generator": ckpt.architecture(self.generator)},
            "iteration": self.iteration, "history": self.history,
            **{name: part.state_dict() for name, part in self.parts().items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; refuses (``CheckpointError``) anything that does not fit."""
        state = self._local_view(state)
        self._check_compatible(state)
        try:
            for name, part in self.parts().items():
                part.load_state_dict(state[name])
        except (KeyError, ValueError) as err:
            raise ckpt.CheckpointError(f"cannot resume: {err}") from err
        self.iteration, self.history = int(state["iteration"]), state["history"]

    def _local_view(self, state: dict[str, Any]) -> dict[str, Any]:
        """The state with this rank's share of ``rank_states`` in place; refuses another world size."""
        saved, world = state.get("world_size", 1), self.ranks.world_size
        if saved != world:
            raise ckpt.CheckpointError(f"cannot resume: the checkpoint was written by {saved} process(es) and "
                                       f"this run has {world}; the replay memory and the random streams are "
                                       f"sharded per process and are not re-sharded (resume with {saved})")
        if "rank_states" not in state:
            return state
        return {**state, **state["rank_states"][self.ranks.rank]}

    def _check_compatible(self, state: dict[str, Any]) -> None:
        if state.get("format_version") != ckpt.FORMAT_VERSION:
            raise ckpt.CheckpointError(f"cannot resume: the state has format version "
                                       f"{state.get('format_version')!r}, this version of lrwa_fast reads "
                                       f"format version {ckpt.FORMAT_VERSION}")
        problems = []
        update_type = type(self.update).__qualname__
        if state.get("update_type") != update_type:
            problems.append(f"it was written with the student update {state.get('update_type')}, and this "
                            f"trainer uses {update_type} (pass update= to load)")
        if state.get("device_type", self.device.type) != self.device.type:
            problems.append(f"it was made on {state['device_type']} and this trainer runs on "
                            f"{self.device.type} (random generator states differ between devices)")
        if state.get("trainer") != type(self).__name__:
            problems.append(f"checkpoint is for {state.get('trainer')}, not {type(self).__name__}")
        if state.get("teacher_fingerprint") != self.teacher_fingerprint:
            problems.append("it was made with a different teacher (weights fingerprint differs)")
        missing = [name for name in self.parts() if name not in state]
        if missing:
            problems.append(f"it holds no state for {missing}")
        if "memory" in state and self.replay is None:
            problems.append("it has a replay memory and this trainer has none")
        for part, module in (("student", self.student), ("generator", self.generator)):
            problems += ckpt.architecture_diff(state["architecture"][part], ckpt.architecture(module), part)
        saved = {**to_dict(self.config_class()), **state["config"]}  # fields added since: their defaults
        problems += ckpt.config_diff(saved, to_dict(self.config), ignore=RESUMABLE_CHANGES)
        if problems:
            raise ckpt.CheckpointError("cannot resume from this checkpoint: " + "; ".join(problems))

    def write_checkpoint(self, folder: str | Path) -> Path:
        """Write ``folder/ckpt-<iteration>.pt`` atomically, keeping the newest ``config.keep_checkpoints``
        (data-parallel: a collective; rank 0 writes, every rank returns its path)."""
        state = self.state_dict()
        return self.ranks.from_main(lambda: ckpt.save_rotating(state, folder, self.iteration,
                                                               self.config.keep_checkpoints))

    def save(self, path: str | Path) -> Path:
        """Write the complete state to ``path`` atomically (data-parallel: as :meth:`write_checkpoint`)."""
        state = self.state_dict()
        return self.ranks.from_main(lambda: ckpt.atomic_save(state, path))

    @classmethod
    def load(cls, path: str | Path, teacher: nn.Module, student: nn.Module, generator: nn.Module,
             config: DFADConfig | None = None, **parts: Any) -> DFADTrainer:
        """A trainer for freshly built modules, restored from checkpoint ``path``.

        ``config`` defaults to the checkpoint's; a given one may differ only in
        :data:`RESUMABLE_CHANGES`. ``parts`` (e.g. ``update=``) go to the constructor.
        """
        state = ckpt.read_checkpoint(path)
        if state.get("trainer") != cls.__name__:
            raise ckpt.CheckpointError(f"checkpoint {str(path)!r} is for {state.get('trainer')}, "
                                       f"not {cls.__name__}")
        try:
            config = config if config is not None else from_dict(cls.config_class, state["config"])
        except ValueError as err:
            raise ckpt.CheckpointError(f"checkpoint {str(path)!r} holds an incompatible config: "
                                       f"{err}") from err
        trainer = cls(teacher, student, generator, config, **parts)
        trainer.load_state_dict(state)
        return trainer


class LRwATrainer(DFADTrainer):
    """DFAD plus a replay memory and the LRwA meta-learned student update (:func:`~lrwa_fast.meta_gradient`),
    composed from a memory (``config.memory_kind``: :class:`~lrwa_fast.replay.ReplayMemory` or
    :class:`~lrwa_fast.generative_replay.GenerativeMemory`) and :class:`~lrwa_fast.updates.MetaUpdate`."""

    config_class = LRwAConfig
    config: LRwAConfig

    def __init__(self, teacher: nn.Module, student: nn.Module, generator: nn.Module,
                 config: LRwAConfig | None = None, *, update: StudentUpdate | None = None,
                 vae: nn.Module | None = None) -> None:
        """``update`` replaces the meta update built from the config (the memory stays); ``vae`` replaces
        the built-in VAE of ``memory_kind="generative"`` (see :mod:`lrwa_fast.memory.generative`)."""
        super().__init__(teacher, student, generator, config)
        cfg = self.config
        memory = self._build_memory(vae)
        if update is None:
            update = MetaUpdate(memory, mode=cfg.meta_mode, inner_lr=cfg.inner_lr, retain_weight=cfg.retain_weight,
                                joint_replay=cfg.joint_replay, bn_mode=cfg.bn_mode, fd_scheme=cfg.fd_scheme,
                                fd_epsilon=cfg.fd_epsilon)
        self.use(update=update, replay=memory)

    def _build_memory(self, vae: nn.Module | None) -> Memory:
        """The memory of ``config.memory_kind``: a buffer of pseudo-samples, or a VAE learning them."""
        cfg, ranks = self.config, self.ranks
        seed, batch = rank_seed(cfg.seed, ranks.rank), ranks.local_size(cfg.memory_batch_size, "memory_batch_size")
        if cfg.memory_kind == "generative":  # data-parallel: each rank trains and samples its own VAE
            local = dataclasses.replace(cfg, memory_batch_size=batch, seed=seed,
                                        vae_fresh_size=ranks.local_size(cfg.vae_fresh_size, "vae_fresh_size"))
            return GenerativeMemory.from_config(local, vae, self.teacher, self.sample_shape, guard=self.guard,
                                                metrics=self.metrics, device=self.device)
        if vae is not None:
            raise ValueError("vae is used only with memory_kind='generative', got memory_kind='buffer'")
        buffer = ReplayBuffer(ranks.local_size(cfg.memory_capacity, "memory_capacity"), self.sample_shape,
                              self.num_classes, policy=cfg.memory_policy, device=self.device,
                              dtype=getattr(torch, cfg.memory_dtype), seed=seed,
                              backend=None if cfg.memory_backend == "auto" else cfg.memory_backend)
        return ReplayMemory(buffer, batch, InsertSchedule(
            ranks.local_size(cfg.memory_insert_size, "memory_insert_size"), cfg.memory_insert_every,
            cfg.memory_start))


def rank_seed(seed: int, rank: int) -> int:
    """The memory seed of ``rank``: ``seed`` itself on rank 0, a distinct key (below 2^62) on the others."""
    return seed if rank == 0 else (seed + rank * 0x9E3779B97F4A7C15) % 2**62


METHODS: dict[str, type[DFADTrainer]] = {"dfad": DFADTrainer, "lrwa": LRwATrainer}


def trainer_class(method: str) -> type[DFADTrainer]:
    """The trainer of a method name (``"dfad"`` or ``"lrwa"``); its ``config_class`` is the config."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    return METHODS[method]
