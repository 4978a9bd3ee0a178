"""The training loop shared by DFAD and LRwA: generator step(s), then student step(s).

Trainers train the modules they are given, in place. The teacher is frozen (eval mode, no
gradients); the generator is called with ``z`` of shape ``(batch, latent_dim)``; any input
shape works as long as the teacher and student accept the generator's output.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import checkpoint as ckpt
from . import losses, ops
from .compiling import compile_module
from .config import DFADConfig, LRwAConfig, from_dict, to_dict, validate
from .guard import NonFiniteGuard
from .memory import ReplayBuffer
from .meta import forward_for_pass, gradients, meta_gradient
from .metrics import MetricAccumulator
from .optim import build_optimizer
from .phases import phase

Evaluate = Callable[[nn.Module], "float | dict[str, float]"]


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM arrived during :meth:`DFADTrainer.train`; a checkpoint was written first."""

    def __init__(self, message: str, path: Path, signum: int) -> None:
        super().__init__(message)
        self.path, self.signum = path, signum


# Config fields that may change when resuming: they do not change what is computed.
RESUMABLE_CHANGES = frozenset({"checkpoint_dir", "checkpoint_every", "keep_checkpoints", "log_every", "device",
                               "memory_backend", "nonfinite", "compile_student"})
DEFAULT_INTERRUPT_DIR = "lrwa_runs/interrupted"


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
    """Vanilla adversarial data-free KD; the base loop that :class:`LRwATrainer` extends."""

    config_class: type[DFADConfig] = DFADConfig

    def __init__(self, teacher: nn.Module, student: nn.Module, generator: nn.Module,
                 config: DFADConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise ValueError(f"{type(self).__name__} needs a {self.config_class.__name__}, "
                             f"got {type(self.config).__name__}")
        validate(self.config)
        cfg = self.config
        self.device = resolve_device(cfg.device)
        self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        self.teacher_fingerprint = ckpt.fingerprint(self.teacher)
        self.student = student.to(self.device)
        self.generator = generator.to(self.device)
        self.sample_shape, self.num_classes = probe_models(self.teacher, self.student, self.generator,
                                                           cfg.latent_dim, self.device)
        self.student_compiled = cfg.compile_student and compile_module(self.student, self.device)
        self.student_params = [p for p in self.student.parameters() if p.requires_grad]
        self.generator_params = [p for p in self.generator.parameters() if p.requires_grad]
        self.student_opt, self.student_sched = build_optimizer(self.student_params, cfg.student_optimizer,
                                                               cfg.iterations)
        self.generator_opt, self.generator_sched = build_optimizer(self.generator_params,
                                                                   cfg.generator_optimizer, cfg.iterations)
        weights = cfg.generator_weights
        self.probe = losses.TeacherProbe(self.teacher, bn_prior=weights.bn_prior > 0,
                                         features=weights.activation > 0)
        self.rng = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.kernel_backend = None if cfg.backend == "auto" else cfg.backend  # None: LRWA_FAST_BACKEND
        self.iteration = 0
        self._checkpointed_at = -1
        self._skips_before = 0
        self._snapshot: list[tuple[Tensor, Tensor]] = []
        self.guard = NonFiniteGuard(cfg.nonfinite, defer=self.device.type == "cuda")
        self.history: dict[str, list[dict[str, float]]] = {"metrics": [], "evaluations": []}
        self._metrics = MetricAccumulator()

    # ----------------------------------------------------------------- one iteration
    def step(self) -> dict[str, float]:
        """One iteration: generator step(s), student step(s); returns the metrics when read."""
        cfg = self.config
        self.student.train()
        self.generator.train()
        self._skips_before = self.guard.skipped
        for _ in range(cfg.generator_steps):
            self._generator_step()
        for k in range(cfg.student_steps):
            self._student_step(k)
        self._end_of_iteration()
        self.student_sched.step()
        if cfg.generator_steps:
            self.generator_sched.step()
        logging = self._logging_now()
        self.iteration += 1
        if not logging:
            return {}
        self.guard.check()
        metrics = {"iteration": self.iteration, **self._metrics.read(), **self._host_metrics()}
        self.history["metrics"].append(metrics)
        return metrics

    def _logging_now(self) -> bool:
        """Whether this iteration's metrics will be read (quantities only logged are computed then)."""
        return (self.iteration + 1) % self.config.log_every == 0

    def _host_metrics(self) -> dict[str, float]:
        return {"lr": self.student_opt.param_groups[0]["lr"], "skipped_steps": self.guard.skipped}

    def _end_of_iteration(self) -> None:
        """Hook for subclasses (LRwA inserts into its memory here)."""

    def _sample_z(self) -> Tensor:
        return torch.randn(self.config.batch_size, self.config.latent_dim, device=self.device,
                           generator=self.rng)

    def fresh_batch(self) -> tuple[Tensor, Tensor]:
        """A batch of pseudo-samples and the teacher's logits on them (no gradients)."""
        with torch.no_grad():
            with phase("generator forward"):
                x = self.generator(self._sample_z())
            with phase("teacher forward"):
                return x, self.teacher(x)

    def student_loss(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        """The configured KD loss (fused kernel where available)."""
        cfg = self.config
        return ops.kd_loss(student_logits, teacher_logits, kind=cfg.loss, temperature=cfg.temperature,
                           backend=self.kernel_backend)

    def _generator_step(self) -> None:
        self._snapshot_buffers()
        with phase("generator step"):
            loss = self._generator_loss()
            grads = gradients(loss, self.generator_params)
        self._apply(self.generator_opt, self.generator_params, grads, {"loss_generator": loss},
                    "generator step", clip=0.0, norm_key="grad_norm_generator")

    def _generator_loss(self) -> Tensor:
        """Weighted sum of the generator's terms on a fresh batch (zero weights are skipped)."""
        cfg, w = self.config, self.config.generator_weights
        with self.probe.active():
            x = self.generator(self._sample_z())
            t = self.teacher(x)
        loss = x.new_zeros(())
        if w.adversarial:
            s = self.student(x)
            discrepancy = ops.kd_loss(s, t, kind=cfg.adversarial_loss,
                                      temperature=cfg.adversarial_temperature, backend=self.kernel_backend)
            adv = losses.adversarial_from_discrepancy(discrepancy, cfg.adversarial_loss)
            loss = loss + w.adversarial * adv
        if w.one_hot:
            loss = loss + w.one_hot * losses.one_hot_loss(t)
        if w.balance:
            loss = loss + w.balance * losses.class_balance_loss(t)
        if w.activation:
            loss = loss + w.activation * losses.activation_loss(self.probe.features())
        if w.bn_prior:
            loss = loss + w.bn_prior * self.probe.bn_loss()
        return loss

    def _student_step(self, k: int) -> None:
        self._snapshot_buffers()
        x, t = self.fresh_batch()
        self._apply_student(*self._kd_grads(x, t), k)

    def _snapshot_buffers(self) -> None:
        """Under ``nonfinite="skip"``, remember the BatchNorm statistics a skipped step must not keep."""
        if self.config.nonfinite == "skip":
            self._snapshot = [(b, b.clone()) for m in (self.student, self.generator) for b in m.buffers()]

    def _kd_grads(self, x: Tensor, t: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Gradient of the plain KD loss on ``(x, t)`` and what to log."""
        with phase("student forward"):
            loss = self.student_loss(self.student(x), t)
        with phase("student backward"):
            grads = gradients(loss, self.student_params)
        return grads, {"loss_student": loss}

    def _apply_student(self, grads: list[Tensor], logged: dict[str, Tensor], k: int) -> None:
        self._apply(self.student_opt, self.student_params, grads, logged, f"student step {k}",
                    clip=self.config.grad_clip, norm_key="grad_norm_student")

    def _apply(self, opt: torch.optim.Optimizer, params: list[Tensor], grads: list[Tensor],
               logged: dict[str, Tensor], where: str, *, clip: float, norm_key: str) -> None:
        """Check finiteness (policy ``nonfinite``), then take the optimiser step and log."""
        with phase("finite check"):
            grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            if not self.guard.allows(logged, grad_norm, f"iteration {self.iteration}, {where}"):
                for buffer, saved in self._snapshot:
                    buffer.copy_(saved)
                return
        with phase("optimizer"):
            if clip > 0:  # as clip_grad_norm_, reusing the norm computed above
                torch._foreach_mul_(grads, (clip / (grad_norm + 1e-6)).clamp(max=1.0))
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            opt.zero_grad(set_to_none=True)
        self._metrics.add({**logged, norm_key: grad_norm})

    # ----------------------------------------------------------------- the run
    def train(self, iterations: int | None = None, evaluate: Evaluate | None = None, eval_every: int = 100,
              progress: bool = True) -> dict[str, list[dict[str, float]]]:
        """Run ``iterations`` more iterations (default: up to ``config.iterations``).

        ``evaluate(student)`` (student in eval mode, no gradients) is called every ``eval_every``
        iterations and after the last; it returns a score or a dict of scores. Returns the
        history: ``{"metrics": [...], "evaluations": [...]}``.
        """
        total = self.config.iterations - self.iteration if iterations is None else int(iterations)
        if total < 0 or eval_every < 1:
            raise ValueError(f"iterations must be >= 0 and eval_every >= 1, got {total} and {eval_every}")
        self._check_horizon(total)
        bar = _progress(total, progress, type(self).__name__)
        with _StopRequests() as stop:
            for i in range(total):
                metrics = self.step()
                if evaluate is not None and (self.iteration % eval_every == 0 or i == total - 1):
                    self.history["evaluations"].append(self.evaluate(evaluate))
                self._maybe_checkpoint(final=i == total - 1)
                bar.update(1)
                if metrics:
                    bar.set_postfix(_postfix(metrics, self.history["evaluations"]), refresh=False)
                if stop.signum is not None:
                    bar.close()
                    self._interrupted(stop.signum)
        bar.close()
        self.guard.check()
        return self.history

    def _check_horizon(self, total: int) -> None:
        """Refuse to train past ``config.iterations`` where a cosine schedule has reached zero."""
        cfg = self.config
        cosine = [o.schedule == "cosine" for o in (cfg.student_optimizer, cfg.generator_optimizer)]
        if any(cosine) and self.iteration + total > cfg.iterations:
            raise ValueError(f"training to iteration {self.iteration + total} would pass config.iterations="
                             f"{cfg.iterations}, where the cosine schedule reaches a learning rate of 0; "
                             "raise config.iterations or use schedule='constant'")

    def _maybe_checkpoint(self, *, final: bool) -> None:
        cfg = self.config
        if not cfg.checkpoint_dir or not cfg.checkpoint_every:
            return
        if final or self.iteration % cfg.checkpoint_every == 0:
            self._write_checkpoint(cfg.checkpoint_dir)

    def _write_checkpoint(self, folder: str | Path) -> Path:
        path = ckpt.save_rotating(self.state_dict(), folder, self.iteration, self.config.keep_checkpoints)
        self._checkpointed_at = self.iteration
        return path

    def _interrupted(self, signum: int) -> None:
        folder = self.config.checkpoint_dir or Path(DEFAULT_INTERRUPT_DIR) / f"{type(self).__name__}-{os.getpid()}"
        if self._checkpointed_at == self.iteration and self.config.checkpoint_dir:
            path = ckpt.checkpoint_path(folder, self.iteration)
        else:
            path = self._write_checkpoint(folder)
        name = signal.Signals(signum).name
        raise TrainingInterrupted(f"{name} received: stopped after iteration {self.iteration}; checkpoint "
                                  f"written to {path} (resume with {type(self).__name__}.load or "
                                  f"--resume {path})", path, signum)

    def evaluate(self, evaluate: Evaluate) -> dict[str, float]:
        """Call ``evaluate(student)`` in eval mode without gradients and return its scores."""
        with torch.no_grad(), eval_mode(self.student):
            result = evaluate(self.student)
        scores = dict(result) if isinstance(result, dict) else {"score": float(result)}
        return {"iteration": self.iteration, **scores}


    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The complete training state (see :mod:`lrwa_fast.checkpoint`); checks finiteness first.

        Tensors are the live ones (as ``nn.Module.state_dict``): serialise it, or deep-copy it to
        keep a snapshot in memory.
        """
        self.guard.check()
        return {
            "device_type": self.device.type,
            "format_version": ckpt.FORMAT_VERSION, "trainer": type(self).__name__,
            "config": to_dict(self.config), "iteration": self.iteration,
            "skipped_steps": self.guard.skipped, "history": self.history,
            "teacher_fingerprint": self.teacher_fingerprint,
            "architecture": {"student": ckpt.architecture(self.student),
                             "generator": ckpt.architecture(self.generator)},
            "student": self.student.state_dict(), "generator": self.generator.state_dict(),
            "student_optimizer": self.student_opt.state_dict(),
            "generator_optimizer": self.generator_opt.state_dict(),
            "student_scheduler": self.student_sched.state_dict(),
            "generator_scheduler": self.generator_sched.state_dict(),
            "rng": ckpt.rng_state(self.rng), "metrics": self._metrics.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; refuses (``CheckpointError``) anything that does not fit."""
        self._check_compatible(state)
        self._restore(state)

    def _restore(self, state: dict[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        self.generator.load_state_dict(state["generator"])
        self.student_opt.load_state_dict(state["student_optimizer"])
        self.generator_opt.load_state_dict(state["generator_optimizer"])
        self.student_sched.load_state_dict(state["student_scheduler"])
        self.generator_sched.load_state_dict(state["generator_scheduler"])
        ckpt.set_rng_state(state["rng"], self.rng)
        self._metrics.load_state_dict(state["metrics"], self.device)
        self.iteration, self.guard.skipped = int(state["iteration"]), int(state["skipped_steps"])
        self.history = state["history"]

    def _check_compatible(self, state: dict[str, Any]) -> None:
        problems = []
        if state.get("device_type", self.device.type) != self.device.type:
            problems.append(f"it was made on {state['device_type']} and this trainer runs on "
                            f"{self.device.type} (random generator states differ between devices)")
        if state.get("trainer") != type(self).__name__:
            problems.append(f"checkpoint is for {state.get('trainer')}, not {type(self).__name__}")
        if state.get("teacher_fingerprint") != self.teacher_fingerprint:
            problems.append("it was made with a different teacher (weights fingerprint differs)")
        for part, module in (("student", self.student), ("generator", self.generator)):
            problems += ckpt.architecture_diff(state["architecture"][part], ckpt.architecture(module), part)
        problems += [d for d in ckpt.config_diff(state["config"], to_dict(self.config))
                     if d.split(":")[0] not in RESUMABLE_CHANGES]
        if problems:
            raise ckpt.CheckpointError("cannot resume from this checkpoint: " + "; ".join(problems))

    def save(self, path: str | Path) -> Path:
        """Write the complete state to ``path`` atomically."""
        return ckpt.atomic_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path, teacher: nn.Module, student: nn.Module, generator: nn.Module,
             config: DFADConfig | None = None) -> DFADTrainer:
        """A trainer for freshly built modules, restored from checkpoint ``path``.

        ``config`` defaults to the checkpoint's; a given one may differ only in
        :data:`RESUMABLE_CHANGES`.
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
        trainer = cls(teacher, student, generator, config)
        trainer.load_state_dict(state)
        return trainer


class _StopRequests:
    """Turn SIGINT/SIGTERM into a flag checked between iterations (a second SIGINT stops at once).

    Only in the main thread (Python delivers signals there), and not for signals set to be ignored.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _NoProgress:
    """Stands in for a progress bar when progress is off (no tqdm import needed)."""

    def update(self, n: int) -> None:
        """Nothing to show."""

    def set_postfix(self, values: dict[str, str], refresh: bool = False) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""


def _progress(total: int, enabled: bool, name: str) -> Any:
    if not enabled:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=name, unit="it", leave=False, dynamic_ncols=True)


def _postfix(metrics: dict[str, float], evaluations: list[dict[str, float]]) -> dict[str, str]:
    shown = {k: f"{v:.4g}" for k, v in metrics.items() if k.startswith("loss")}
    if evaluations:
        shown.update({k: f"{v:.4g}" for k, v in evaluations[-1].items() if k != "iteration"})
    return shown


class LRwATrainer(DFADTrainer):
    """DFAD plus a replay memory and the LRwA meta-learned student update (:func:`meta_gradient`)."""

    config_class = LRwAConfig
    config: LRwAConfig

    def __init__(self, teacher: nn.Module, student: nn.Module, generator: nn.Module,
                 config: LRwAConfig | None = None) -> None:
        super().__init__(teacher, student, generator, config)
        cfg = self.config
        self.memory = ReplayBuffer(cfg.memory_capacity, self.sample_shape, self.num_classes,
                                   policy=cfg.memory_policy, device=self.device,
                                   dtype=getattr(torch, cfg.memory_dtype), seed=cfg.seed,
                                   backend=cfg.memory_backend)
        self.student_names = [n for n, p in self.student.named_parameters() if p.requires_grad]
        self._last_batch: tuple[Tensor, Tensor] | None = None
        self._memory_out: tuple[Tensor, Tensor] | None = None

    def _student_step(self, k: int) -> None:
        self._snapshot_buffers()
        x, t = self.fresh_batch()
        self._last_batch = (x, t)
        if len(self.memory) == 0:
            self._apply_student(*self._kd_grads(x, t), k)
            return
        cfg = self.config
        with phase("memory sample"):
            x_mem, t_mem = self.memory.sample(cfg.memory_batch_size, dtype=x.dtype, out=self._memory_batch(x.dtype))
        if cfg.meta_mode == "none":
            grads, logged = self._kd_grads(x, t)
        else:
            grads, logged = self._meta_grads(x, t, x_mem, t_mem)
        if cfg.joint_replay:
            with phase("joint replay forward/backward"):
                params = dict(self.student.named_parameters())
                joint_logits = forward_for_pass(self.student, params, torch.cat([x, x_mem]), cfg.bn_mode)
                joint = self.student_loss(joint_logits, torch.cat([t, t_mem]))
                grads = torch._foreach_add(grads, gradients(joint, self.student_params))
            logged["loss_joint"] = joint
        self._apply_student(grads, logged, k)

    def _memory_batch(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The tensors every memory draw is written into (allocated once; the previous step's
        graph, the only other user, is gone by the next draw)."""
        if self._memory_out is None or self._memory_out[0].dtype != dtype:
            self._memory_out = self.memory.storage.empty_sample(self.config.memory_batch_size, dtype)
        return self._memory_out

    def _meta_grads(self, x: Tensor, t: Tensor, x_mem: Tensor,
                    t_mem: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
        cfg = self.config
        res = meta_gradient(self.student, x, t, x_mem, t_mem, inner_lr=cfg.inner_lr, mode=cfg.meta_mode,
                            loss=cfg.loss, temperature=cfg.temperature, retain_weight=cfg.retain_weight,
                            bn_mode=cfg.bn_mode, backend=self.kernel_backend, alignment=self._logging_now())
        logged = {"loss_student": res.loss_acq, "loss_retain": res.loss_ret}
        if res.grad_cosine is not None:
            logged["grad_cosine"] = res.grad_cosine
        return [res.grads[n] for n in self.student_names], logged

    def _end_of_iteration(self) -> None:
        cfg = self.config
        since_start = self.iteration - cfg.memory_start
        due = since_start >= 0 and since_start % cfg.memory_insert_every == 0
        clean = self.guard.skipped == self._skips_before  # a skipped step may have met a non-finite batch
        if due and clean and self._last_batch is not None:
            x, t = self._last_batch
            with phase("memory insert"):
                self.memory.add(x[: cfg.memory_insert_size], t[: cfg.memory_insert_size], step=self.iteration)
        self._last_batch = None

    def _host_metrics(self) -> dict[str, float]:
        return {**super()._host_metrics(), "memory_fill": len(self.memory)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "memory" not in state:
            raise ckpt.CheckpointError("checkpoint has no replay memory")
        self._check_compatible(state)
        try:
            self.memory.load_state_dict(state["memory"])
        except ValueError as err:
            raise ckpt.CheckpointError(f"cannot resume: {err}") from err
        self._restore(state)
