"""The generator's loss: adversarial discrepancy plus the priors that keep samples teacher-like, and the
teacher hooks (:class:`TeacherProbe`) that collect what the priors need."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .. import ops
from ..config import DFADConfig, GeneratorLossWeights, default_of
from ..ops import losses
from ..ops import synthesis_terms as terms
from ..rules import Problem, check, in_interval, nested, non_negative


@dataclass(frozen=True, kw_only=True)
class ObjectiveSettings:
    """The generator's objective (the config's ``adversarial_loss``, ``adversarial_temperature`` and
    ``generator_weights``)."""

    kind: str = default_of("adversarial_loss")  # the adversarial discrepancy: -L1 | -KL | 1-JS
    temperature: float = default_of("adversarial_temperature")
    agreeing: bool = default_of("adversarial_agreeing")  # the discrepancy only where both pick the same class
    weights: GeneratorLossWeights = default_of("generator_weights")
    bn_momentum: float = default_of("bn_prior_momentum")  # Fast's bn_mmt: earlier rounds' statistics mixed in

    def __post_init__(self) -> None:
        names = [f.name for f in dataclasses.fields(self.weights)]
        problems = [*losses.loss_problems(self), *nested("weights", non_negative(self.weights, *names)),
                    *in_interval(self, "bn_momentum", 0, 1, closed=False)]
        if self.bn_momentum and not self.weights.bn_prior:
            problems.append(Problem("{bn_momentum} > 0 mixes the statistics of the BatchNorm prior: "
                                    "{weights.bn_prior} must be > 0"))
        check(self, problems)


class GeneratorObjective:
    """Weighted sum of the terms of ``settings.weights`` on a batch ``generator(z)``; terms with weight 0 are
    skipped, and so are the teacher hooks they would need. ``backend``: the fused kernels' (the runtime's).
    The contrastive term is the synthesis round's (:mod:`.synthesis`), which adds it."""

    def __init__(self, teacher: nn.Module, settings: ObjectiveSettings, backend: str = DFADConfig.backend) -> None:
        self.teacher, self.weights, self.backend = teacher, settings.weights, backend
        self.kind, self.temperature, self.agreeing = settings.kind, settings.temperature, settings.agreeing
        self.probe = TeacherProbe(teacher, bn_prior=self.weights.bn_prior > 0, features=self.weights.activation > 0,
                                  momentum=settings.bn_momentum)

    def __call__(self, generator: nn.Module, student: nn.Module, z: Tensor) -> Tensor:
        with self.probe.active():
            x = generator(z)
            t = self.teacher(x).float()  # fp32 for the loss terms under mixed precision
        return self.terms(x, x, t, student)

    def on_samples(self, x: Tensor, view: Tensor, student: nn.Module, *, adversarial: bool = True,
                   targets: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The loss of samples ``x`` (a synthesis round's) whose teacher sees ``view`` (``x`` augmented), and the
        teacher's logits; ``targets``: the classes the one-hot term asks for (else the teacher's own);
        ``adversarial=False`` leaves the adversarial and competition terms out (a warm-up round)."""
        with self.probe.active():
            t = self.teacher(view).float()
        return self.terms(x, view, t, student, adversarial=adversarial, targets=targets), t

    def terms(self, x: Tensor, view: Tensor, t: Tensor, student: nn.Module, *, adversarial: bool = True,
              targets: Tensor | None = None) -> Tensor:
        """The weighted terms, the teacher's logits ``t`` on ``view`` (``x`` as the teacher saw it) given and its
        hooks' collections still in the probe."""
        w = self.weights
        loss = t.new_zeros(())
        if adversarial and (w.adversarial or w.competition):
            s = student(view)
            if w.adversarial:
                loss = loss + self._adversarial(s, t)
            if w.competition:
                loss = loss + w.competition * terms.competition_loss(s, t)
        if w.one_hot:
            loss = loss + w.one_hot * losses.one_hot_loss(t, targets)
        if w.balance:
            loss = loss + w.balance * losses.class_balance_loss(t)
        if w.activation:
            loss = loss + w.activation * losses.activation_loss(self.probe.features())
        if w.bn_prior:
            loss = loss + w.bn_prior * self.probe.bn_loss()
        for weight, prior in ((w.tv_l1, terms.total_variation_l1), (w.tv_l2, terms.total_variation_l2),
                              (w.input_l2, terms.input_l2_loss)):  # DeepInversion's priors on the samples themselves
            if weight:
                loss = loss + weight * prior(x)
        return loss

    def end_round(self) -> None:
        """A synthesis round ended: its last batch statistics join the earlier rounds' (``bn_momentum``)."""
        self.probe.update_momentum()

    def state_dict(self) -> dict[str, Any]:
        """What carries over between rounds: the mixed BatchNorm statistics (empty without ``bn_momentum``)."""
        return self.probe.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.probe.load_state_dict(state)

    def _adversarial(self, s: Tensor, t: Tensor) -> Tensor:
        """The weighted adversarial term."""
        reduction = "none" if self.agreeing else "mean"
        discrepancy = ops.kd_loss(s, t, kind=self.kind, temperature=self.temperature, reduction=reduction,
                                  backend=self.backend)
        if self.agreeing:
            discrepancy = (discrepancy * terms.agreement(s, t)).mean()
        return self.weights.adversarial * losses.adversarial_from_discrepancy(discrepancy, self.kind)


class TeacherProbe:
    """Forward hooks on a teacher that collect what the generator priors need.

    ``bn_prior`` hooks every BatchNorm layer and accumulates the DeepInversion term
    ``Σ ‖μ_batch − running_mean‖₂ + ‖σ²_batch − running_var‖₂`` over the layers' inputs; with ``momentum`` m
    (Fast's ``bn_mmt``) and statistics kept from earlier rounds (:meth:`update_momentum`), μ_batch and σ²_batch
    are replaced by ``(1 − m)·batch + m·kept``.
    ``features`` captures the input of ``feature_module`` (default: the last ``nn.Linear``).
    Hooks exist only while :meth:`active` is entered and only for terms that are switched on,
    so a zero weight costs nothing.
    """

    def __init__(self, teacher: nn.Module, *, bn_prior: bool, features: bool,
                 feature_module: nn.Module | None = None, momentum: float = 0.0) -> None:
        self.teacher, self.momentum = teacher, momentum
        self.bn_layers = [m for m in teacher.modules() if isinstance(m, _BatchNorm)] if bn_prior else []
        if bn_prior and not self.bn_layers:
            raise ValueError("bn_prior weight > 0 but the teacher has no BatchNorm layers")
        self.feature_module = None
        if features:
            self.feature_module = feature_module or last_linear(teacher)
        self._bn_terms: list[Tensor] = []
        self._features: Tensor | None = None
        self._last: dict[int, tuple[Tensor, Tensor]] = {}  # each layer's batch statistics of its last forward
        self._kept: dict[int, tuple[Tensor, Tensor]] | None = None  # the earlier rounds' (momentum > 0)

    @contextmanager
    def active(self) -> Iterator[TeacherProbe]:
        """Register the hooks for the duration of the block and reset what they collected."""
        self._bn_terms, self._features = [], None
        handles = [layer.register_forward_hook(functools.partial(self._bn_hook, i))
                   for i, layer in enumerate(self.bn_layers)]
        if self.feature_module is not None:
            handles.append(self.feature_module.register_forward_hook(self._feature_hook))
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _bn_hook(self, index: int, module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
        x = inputs[0]
        dims = [d for d in range(x.dim()) if d != 1]
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, unbiased=False)
        if self.momentum:
            kept_dtype = module.running_mean.dtype  # fp32 statistics under bf16 autocast, fp64 with an fp64 teacher
            self._last[index] = (mean.detach().to(kept_dtype), var.detach().to(kept_dtype))
            if self._kept is not None and index in self._kept:
                kept_mean, kept_var = self._kept[index]
                mean = (1 - self.momentum) * mean + self.momentum * kept_mean
                var = (1 - self.momentum) * var + self.momentum * kept_var
        self._bn_terms.append(torch.linalg.vector_norm(mean - module.running_mean)
                              + torch.linalg.vector_norm(var - module.running_var))

    def update_momentum(self) -> None:
        """Mix the last forward's batch statistics into the kept ones (the first round's are kept as they are)."""
        if not self.momentum or not self._last:
            return
        m, kept = self.momentum, dict(self._kept or {})
        for i, (mean, var) in self._last.items():  # a layer first run in this round: its statistics as they are
            kept[i] = (m * kept[i][0] + (1 - m) * mean, m * kept[i][1] + (1 - m) * var) if i in kept else (mean, var)
        self._kept = kept

    def state_dict(self) -> dict[str, Any]:
        """The kept statistics by the index of their BatchNorm layer in module order (``None`` before the first
        round's end; an empty dict without momentum)."""
        return {"bn_statistics": self._kept and dict(self._kept)} if self.momentum else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s kept statistics onto the teacher's device."""
        if set(state) != set(self.state_dict()):
            raise ValueError(f"teacher probe state holds {sorted(state)}, this probe (momentum "
                             f"{self.momentum}) needs {sorted(self.state_dict())}")
        kept = state.get("bn_statistics")
        if kept and not set(kept) <= set(range(len(self.bn_layers))):
            raise ValueError(f"kept statistics of BatchNorm layers {sorted(kept)}, the teacher has "
                             f"{len(self.bn_layers)}")
        device = self.bn_layers[0].running_mean.device if self.bn_layers else None
        self._kept = None if kept is None else {int(i): (mean.to(device), var.to(device))
                                                for i, (mean, var) in kept.items()}

    def _feature_hook(self, _module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
        self._features = inputs[0].flatten(1)

    def bn_loss(self) -> Tensor:
        """The BatchNorm-statistics prior of the last forward pass."""
        if not self._bn_terms:
            raise RuntimeError("no BatchNorm statistics collected: run the teacher inside active()")
        return torch.stack(self._bn_terms).sum()

    def features(self) -> Tensor:
        """The penultimate features of the last forward pass."""
        if self._features is None:
            raise RuntimeError("no features collected: run the teacher inside active()")
        return self._features


def last_linear(model: nn.Module) -> nn.Module:
    """The last ``nn.Linear`` in ``model``: its input is taken as the penultimate features."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("activation weight > 0 needs a teacher with an nn.Linear head "
                         "(or pass feature_module explicitly)")
    return linears[-1]
