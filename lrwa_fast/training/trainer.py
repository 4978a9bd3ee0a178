"""The trainer: one adversarial DFKD iteration assembled from parts, for any teacher, student and generator.

Per iteration, generator step(s) then student step(s) on fresh pseudo-samples. The constructor turns
the flat config into each part's settings once (:func:`~lrwa_fast.training.settings.part_settings`),
builds the runtime (:class:`~lrwa_fast.runtime.services.Runtime`: device, ranks, precision, guard,
metrics, kernel backend) and hands it to the parts that need it: a student update (plain KD or LRwA's
:class:`~lrwa_fast.updates.MetaUpdate`), a memory part fed with the fresh batches
(:mod:`lrwa_fast.replay`), two :class:`~lrwa_fast.optim.Updater` s, a generator objective and random
streams. The config decides the method: a :class:`~lrwa_fast.DFADConfig` builds plain KD without a
memory, a :class:`~lrwa_fast.LRwAConfig` the memory of its ``memory_kind`` and the meta update;
``update=``, ``memory=`` and ``vae=`` replace parts. :mod:`.loop` runs the iterations, :mod:`.state`
saves and restores the trainer.

Trainers train the modules they are given, in place. The teacher is frozen (eval mode, no
gradients); the generator is called with ``z`` of shape ``(batch, latent_dim)``; any input
shape works as long as the teacher and student accept the generator's output.

A trainer built while a ``torch.distributed`` process group is initialised trains data-parallel
(:mod:`lrwa_fast.runtime.distributed`): batch sizes and the memory's capacity, batch and insert size
are global and each rank takes 1/W; each rank keeps its own memory shard; gradients are averaged in
the updaters and the BatchNorm running statistics at the end of every iteration, so all ranks hold
the same weights, optimiser states and buffers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import DFADConfig, LRwAConfig, to_dict
from ..optim import Updater, UpdateResult, gradients
from ..replay import Memory, build_memory, is_memory
from ..runtime import checkpoint as ckpt
from ..runtime.distributed import Ranks
from ..runtime.phases import phase
from ..runtime.precision import scaled
from ..runtime.randomness import RandomStreams
from ..runtime.services import Runtime
from ..updates import AttentionTransferUpdate, KDUpdate, MetaUpdate, StepContext, StudentUpdate
from . import loop, state
from .compiling import compile_module
from .generator_ema import GeneratorEMA
from .generator_objective import GeneratorObjective
from .inspection import eval_mode, inspect_models
from .loop import TrainingInterrupted
from .probes import ForgettingProbes
from .settings import PartSettings, part_settings
from .state import Stateful
from .synthesis import SynthesisRounds

__all__ = ["DFADTrainer", "LRwATrainer", "Trainer", "TrainingInterrupted", "trainer_class"]

Evaluate = Callable[[nn.Module], "float | dict[str, float]"]


class Trainer:
    """Adversarial data-free KD: per iteration, generator step(s) then student step(s).

    ``update`` replaces the student update the config describes (any
    :class:`~lrwa_fast.updates.StudentUpdate`); ``memory`` replaces its memory part (any
    :class:`~lrwa_fast.replay.Memory`; an update that holds one as ``.memory`` brings it along);
    ``vae`` replaces the built-in VAE of ``memory_kind="generative"``. The memory is fed from the fresh
    batches and checkpointed with the rest.
    """

    config_class: ClassVar[type[DFADConfig]] = DFADConfig  # the default config
    method: ClassVar[str | None] = None  # the method a named trainer is pinned to; None: the config decides

    def __init__(self, teacher: nn.Module, student: nn.Module, generator: nn.Module,
                 config: DFADConfig | None = None, *, update: StudentUpdate | None = None,
                 memory: Memory | None = None, vae: nn.Module | None = None) -> None:
        self.config = self._checked(config)
        self.settings: PartSettings = part_settings(self.config)  # every part's settings (checked), read here only
        settings, self.runtime = self.settings, Runtime(self.settings.runtime)
        self.runtime.ranks.local_size(settings.loop.batch_size, "batch_size")
        self.teacher, self.student, self.generator = self._placed(teacher, student, generator)
        self.teacher_fingerprint = ckpt.fingerprint(self.teacher)
        self.sample_shape, self.num_classes = inspect_models(self.teacher, self.student, self.generator,
                                                           settings.loop.latent_dim, self.device)
        self.student_compiled = settings.loop.compile_student and compile_module(self.student, self.device)
        trainable = [(n, p) for n, p in self.student.named_parameters() if p.requires_grad]
        self.student_names, self.student_params = [n for n, _ in trainable], [p for _, p in trainable]
        self.kd_loss = settings.loss
        self.generator_objective = GeneratorObjective(self.teacher, settings.objective, self.runtime.backend)
        self.random = RandomStreams(settings.loop.seed, self.device, self.ranks)
        rollback = (self.student, self.generator)
        self.student_updater = Updater("student", self.student_params, settings.student_updater, self.runtime,
                                       rollback=rollback)
        self.generator_updater = Updater("generator", [p for p in self.generator.parameters() if p.requires_grad],
                                         settings.generator_updater, self.runtime, rollback=rollback)
        self.memory = self._memory(memory, update, vae)
        self.update = self._update(update)
        self.synthesis = self._synthesis()
        self.generator_ema = GeneratorEMA(self.generator, settings.ema) if settings.ema.decay else None
        self.probes = ForgettingProbes(settings.probes, self.device) if settings.probes.every else None
        self.observers = [part for part in (self.memory, self.probes) if part is not None]  # of fresh batches
        self.iteration = 0
        self.history: dict[str, list[dict[str, float]]] = {"metrics": [], "evaluations": []}

    @property
    def device(self) -> torch.device:
        """The runtime's device: the models and the memory live there."""
        return self.runtime.device

    @property
    def ranks(self) -> Ranks:
        """The runtime's data-parallel ranks."""
        return self.runtime.ranks

    @property
    def checkpoint_name(self) -> str:
        """The trainer its checkpoints name: the pinned trainer of its config's method, so a ``Trainer``'s
        checkpoint loads into ``LRwATrainer`` (or ``DFADTrainer``) and back."""
        return trainer_class(method_of(self.config)).__name__

    def _checked(self, config: DFADConfig | None) -> DFADConfig:
        config = config if config is not None else self.config_class()
        if not isinstance(config, DFADConfig) or self.method not in (None, method_of(config)):
            raise ValueError(f"{type(self).__name__} needs a {self.config_class.__name__}, "
                             f"got {type(config).__name__}")
        return config

    def _placed(self, teacher: nn.Module, student: nn.Module, generator: nn.Module) -> tuple[nn.Module, ...]:
        """The three modules on the device, in the configured memory format; the teacher frozen."""
        memory_format = torch.channels_last if self.settings.loop.channels_last else torch.preserve_format
        teacher, student, generator = (m.to(self.device, memory_format=memory_format)
                                       for m in (teacher, student, generator))
        return teacher.eval().requires_grad_(False), student, generator

    def _memory(self, memory: Memory | None, update: StudentUpdate | None, vae: nn.Module | None) -> Memory | None:
        """The given memory, else the given update's, else the settings' (:func:`~lrwa_fast.replay.build_memory`)."""
        carried = getattr(update, "memory", None)
        if memory is None and is_memory(carried):
            memory = carried
        if memory is not None:
            if vae is not None:
                raise ValueError("vae builds the config's generative memory; it cannot go with a given memory")
            return memory
        return build_memory(self.settings.memory, self.runtime, teacher=self.teacher, sample_shape=self.sample_shape,
                            num_classes=self.num_classes, vae=vae)

    def _update(self, update: StudentUpdate | None) -> StudentUpdate:
        """The given update, else the settings': LRwA's meta update on the memory, ZSKT's KD with attention
        transfer, or plain KD."""
        if update is None:
            meta, attention = self.settings.meta, self.settings.attention
            if meta is not None and self.memory is not None:
                return MetaUpdate(self.memory, meta)
            if attention.weight:
                sample = torch.zeros(1, *self.sample_shape, device=self.device)
                return AttentionTransferUpdate(self.teacher, self.student, sample, attention)
            return KDUpdate()
        if not isinstance(update, StudentUpdate):
            raise ValueError(f"update must follow the StudentUpdate protocol (__call__, state_dict, "
                             f"load_state_dict), got {type(update).__name__}")
        return update

    def _synthesis(self) -> SynthesisRounds | None:
        """DeepInversion's, CMI's or Fast's synthesis rounds when the config asks for them (one process only)."""
        settings = self.settings.synthesis
        if not settings.rounds:
            return None
        if self.ranks.enabled:
            raise ValueError(f"synthesis={settings.kind!r} runs in one process: its rounds and pool are not "
                             "data-parallel (use synthesis='generator', or run without torchrun)")
        return SynthesisRounds(settings, self.generator_objective, self.generator, self.sample_shape,
                               self.num_classes, self.device)

    # ----------------------------------------------------------------- one iteration
    def step(self) -> dict[str, float]:
        """One iteration: generator step(s), student step(s); returns the metrics when read."""
        loop_settings = self.settings.loop
        self.student.train()
        self.generator.train()
        skips_before = self.runtime.guard.skipped
        if self.synthesis is not None:
            self.synthesis_round()
        else:
            for _ in range(loop_settings.generator_steps):
                self.generator_step()
        for k in range(loop_settings.student_steps):
            self.student_step(k)
        if self.ranks.enabled:
            with phase("buffer average"):
                self.ranks.average_buffers_((self.student, self.generator))
        for observer in self.observers:
            observer.end_of_iteration(self.iteration, clean=self.runtime.guard.skipped == skips_before)
        self.student_updater.advance_schedule()
        if loop_settings.generator_steps and self.synthesis is None:  # rounds use optimisers of their own
            self.generator_updater.advance_schedule()
        read = self.metrics_due()
        self.iteration += 1
        if not read:
            return {}
        self.runtime.guard.check()
        metrics = {"iteration": self.iteration, **self.runtime.metrics.read(), **self._host_metrics()}
        self.history["metrics"].append(metrics)
        return metrics

    def metrics_due(self) -> bool:
        """Whether this iteration's metrics will be read (quantities only logged are computed then)."""
        return (self.iteration + 1) % self.settings.loop.log_every == 0

    def _host_metrics(self) -> dict[str, float]:
        extra = self.memory.metrics() if self.memory is not None else {}
        if self.student_updater.scaler.enabled:  # fp16
            extra["scaler_skips"] = self.student_updater.scaler.skips + self.generator_updater.scaler.skips
        return {"lr": self.student_updater.lr, "skipped_steps": self.runtime.guard.skipped, **extra}

    def fresh_batch(self) -> tuple[Tensor, Tensor]:
        """A batch of pseudo-samples (a share from the EMA generator under MAD) and the teacher's logits on
        them (no gradients)."""
        batch, latent = self.settings.loop.batch_size, self.settings.loop.latent_dim
        if self.synthesis is not None:
            with phase("pool draw"):
                return self.synthesis.draw(batch)
        with torch.no_grad():
            with phase("generator forward"):
                z = self.random.latent(batch, latent)
                x = self.generator(z) if self.generator_ema is None else \
                    self.generator_ema.generate(self.generator, z, batch, self.ranks)
            with phase("teacher forward"):
                return x, self.teacher(x)

    def generator_step(self) -> bool:
        """One generator update on a fresh batch; ``False`` when skipped (``nonfinite="skip"``)."""
        updater = self.generator_updater
        snapshot = updater.snapshot()
        with phase("generator step"), self.runtime.autocast():
            z = self.random.latent(self.settings.loop.batch_size, self.settings.loop.latent_dim)
            loss = self.generator_objective(self.generator, self.student, z)
            result = UpdateResult(gradients(scaled(loss, updater.loss_scale), updater.params),
                                  {"loss_generator": loss})
        applied = updater.apply(result, f"iteration {self.iteration}, generator step", snapshot)
        if applied and self.generator_ema is not None:
            with phase("generator EMA"):
                self.generator_ema.update(self.generator)
        return applied

    def synthesis_round(self) -> None:
        """One synthesis round (DeepInversion, CMI, Fast): its best batch joins the pool the student draws from."""
        with phase("synthesis round"), self.runtime.autocast():
            best = self.synthesis.round(self.student)
        self.runtime.metrics.add({"loss_synthesis": torch.tensor(best)})

    def student_step(self, k: int = 0) -> bool:
        """Student update ``k`` of the iteration: a fresh batch, seen by the observers (memory, probes), the
        update's gradients on it, then the updater applies them (or skips and rolls the buffers back)."""
        updater = self.student_updater
        snapshot = updater.snapshot()
        with self.runtime.autocast():
            x, t = self.fresh_batch()
            for observer in self.observers:
                observer.observe(x, t)
            context = StepContext(self.student, self.student_params, self.student_names, self.kd_loss,
                                  self.iteration, self.metrics_due(), self.ranks, updater.loss_scale)
            result = self.update(context, x, t)
        return updater.apply(result, f"iteration {self.iteration}, student step {k}", snapshot)

    # ----------------------------------------------------------------- the run
    def train(self, iterations: int | None = None, evaluate: Evaluate | None = None, eval_every: int = 100,
              progress: bool = True, on_evaluation: Callable[[dict[str, Any]], None] | None = None,
              ) -> dict[str, list[dict[str, Any]]]:
        """Run ``iterations`` more iterations (default: up to ``config.iterations``).

        ``evaluate(student)`` (student in eval mode, no gradients) is called every ``eval_every``
        iterations and after the last; it returns a score or a dict of scores. Each evaluation's record
        (the iteration, the scores and, with forgetting probes, ``probe_agreement`` and ``forgetting``) is
        appended to the history and handed to ``on_evaluation``. Returns the history:
        ``{"metrics": [...], "evaluations": [...]}``. SIGINT/SIGTERM stop after the current iteration with a
        checkpoint (:class:`~lrwa_fast.TrainingInterrupted`).
        """
        checkpoints = self.settings.checkpoints
        total = self.settings.loop.iterations - self.iteration if iterations is None else int(iterations)
        self.check_horizon(total)  # loop.run checks total and eval_every
        name = type(self).__name__
        record = None if evaluate is None else lambda: self.record_evaluation(evaluate, on_evaluation)
        loop.run(self, total, evaluate=record, eval_every=eval_every, checkpoint_dir=checkpoints.directory,
                 checkpoint_every=checkpoints.every, progress=progress, name=name, unit="iteration",
                 resume_hint=f"{name}.load or --resume {{path}}")
        self.runtime.guard.check()
        self.history["evaluations"] = self.ranks.broadcast(self.history["evaluations"])  # rank 0's
        return self.history

    def check_horizon(self, iterations: int) -> None:
        """Refuse to train past ``config.iterations`` where a cosine schedule has reached zero."""
        horizon = self.settings.loop.iterations
        updaters = (self.settings.student_updater, self.settings.generator_updater)
        if any(u.optimizer.schedule == "cosine" for u in updaters) and self.iteration + iterations > horizon:
            raise ValueError(f"training to iteration {self.iteration + iterations} would pass config.iterations="
                             f"{horizon}, where the cosine schedule reaches a learning rate of 0; "
                             "raise config.iterations or use schedule='constant'")

    def evaluate(self, evaluate: Evaluate) -> dict[str, float]:
        """Call ``evaluate(student)`` in eval mode without gradients and return its scores."""
        with torch.no_grad(), eval_mode(self.student):
            result = evaluate(self.student)
        scores = dict(result) if isinstance(result, dict) else {"score": float(result)}
        return {"iteration": self.iteration, **scores}

    def record_evaluation(self, evaluate: Evaluate,
                          on_evaluation: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """:meth:`evaluate`, with the forgetting probes' agreements and average forgetting when probes are on,
        appended to ``history["evaluations"]`` and handed to ``on_evaluation``."""
        scores: dict[str, Any] = self.evaluate(evaluate)
        if self.probes is not None:
            with eval_mode(self.student):
                scores |= self.probes.scores(self.student, self.history["evaluations"])
        self.history["evaluations"].append(scores)
        if on_evaluation is not None:
            on_evaluation(scores)
        return scores

    # ----------------------------------------------------------------- checkpoints (lrwa_fast.training.state)
    def parts(self) -> dict[str, Stateful]:
        """The parts whose states make a checkpoint, by name (the memory first: it validates most)."""
        parts: dict[str, Stateful | None] = {
            "memory": self.memory, "student": self.student, "generator": self.generator,
            "student_updater": self.student_updater, "generator_updater": self.generator_updater,
            "guard": self.runtime.guard, "metrics": self.runtime.metrics, "random": self.random, "update": self.update,
            "generator_ema": self.generator_ema, "probes": self.probes, "synthesis": self.synthesis,  # by the config
        }
        return {name: part for name, part in parts.items() if part is not None}

    def identity(self) -> dict[str, Any]:
        """What identifies the run in a checkpoint, checked before resuming: the trainer, the student update, the
        device type, the world size, the config, the teacher's fingerprint and the architectures."""
        return {"trainer": self.checkpoint_name, "world_size": self.ranks.world_size,
                "update_type": type(self.update).__qualname__, "device_type": self.device.type,
                "config": to_dict(self.config), "teacher_fingerprint": self.teacher_fingerprint,
                "architecture": {"student": ckpt.architecture(self.student),
                                 "generator": ckpt.architecture(self.generator)}}

    def state_dict(self) -> dict[str, Any]:
        """The complete training state (:func:`lrwa_fast.training.state.trainer_state`)."""
        return state.trainer_state(self)

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; refuses (``CheckpointError``) anything that does not fit."""
        state.load_trainer_state(self, saved)

    def write_checkpoint(self, folder: str | Path) -> Path:
        """Write ``folder/ckpt-<iteration>.pt`` atomically, keeping the newest ``config.keep_checkpoints``
        (data-parallel: a collective; rank 0 writes, every rank returns its path)."""
        return state.write_checkpoint(self, folder, self.settings.checkpoints.keep)

    def save(self, path: str | Path) -> Path:
        """Write the complete state to ``path`` atomically (data-parallel: as :meth:`write_checkpoint`)."""
        return state.save(self, path)

    @classmethod
    def load(cls, path: str | Path, teacher: nn.Module, student: nn.Module, generator: nn.Module,
             config: DFADConfig | None = None, *, saved: dict[str, Any] | None = None, **parts: Any) -> Trainer:
        """A trainer for freshly built modules, restored from checkpoint ``path``.

        ``config`` defaults to the checkpoint's; a given one may differ only in the config's
        ``RESUMABLE`` fields. ``saved``: the checkpoint already read from ``path``. ``parts`` (``update=``,
        ``memory=``, ``vae=``) go to the constructor.
        """
        saved = saved if saved is not None else ckpt.read_checkpoint(path)
        named = {t.__name__: t for t in METHODS.values()}.get(saved.get("trainer"))
        if named is None or cls.method not in (None, named.method):
            raise ckpt.CheckpointError(f"checkpoint {str(path)!r} is for {saved.get('trainer')}, not {cls.__name__}")
        trainer = cls(teacher, student, generator,
                      config if config is not None else state.saved_config(named.config_class, saved, path), **parts)
        trainer.load_state_dict(saved)
        return trainer


class DFADTrainer(Trainer):
    """The trainer pinned to a :class:`~lrwa_fast.DFADConfig` (vanilla DFAD unless parts are given)."""

    config_class = DFADConfig
    method = "dfad"


class LRwATrainer(Trainer):
    """The trainer with an :class:`~lrwa_fast.LRwAConfig`: a memory of ``config.memory_kind``
    (:class:`~lrwa_fast.BufferMemory` or :class:`~lrwa_fast.GenerativeMemory`) and the LRwA meta update
    (:func:`~lrwa_fast.meta_gradient`)."""

    config_class = LRwAConfig
    method = "lrwa"


METHODS: dict[str, type[Trainer]] = {t.method: t for t in (DFADTrainer, LRwATrainer)}


def method_of(config: DFADConfig) -> str:
    """The method a config describes: ``"lrwa"`` for an :class:`~lrwa_fast.LRwAConfig`, else ``"dfad"``."""
    return "lrwa" if isinstance(config, LRwAConfig) else "dfad"


def trainer_class(method: str) -> type[Trainer]:
    """The trainer of a method name (``"dfad"`` or ``"lrwa"``); its ``config_class`` is the config."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    return METHODS[method]
