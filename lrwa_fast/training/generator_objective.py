"""The generator's loss: adversarial discrepancy plus the priors that keep samples teacher-like."""

from __future__ import annotations

from torch import Tensor, nn

from .. import ops
from ..config import DFADConfig
from ..ops import losses


class GeneratorObjective:
    """Weighted sum of the terms of ``config.generator_weights`` on a batch ``generator(z)``; terms
    with weight 0 are skipped, and so are the teacher hooks they would need."""

    def __init__(self, teacher: nn.Module, config: DFADConfig, backend: str | None = None) -> None:
        self.teacher, self.weights, self.backend = teacher, config.generator_weights, backend
        self.kind, self.temperature = config.adversarial_loss, config.adversarial_temperature
        self.probe = losses.TeacherProbe(teacher, bn_prior=self.weights.bn_prior > 0,
                                         features=self.weights.activation > 0)

    def __call__(self, generator: nn.Module, student: nn.Module, z: Tensor) -> Tensor:
        w = self.weights
        with self.probe.active():
            x = generator(z)
            t = self.teacher(x).float()  # fp32 for the loss terms under mixed precision
        loss = t.new_zeros(())
        if w.adversarial:
            discrepancy = ops.kd_loss(student(x), t, kind=self.kind, temperature=self.temperature,
                                      backend=self.backend)
            loss = loss + w.adversarial * losses.adversarial_from_discrepancy(discrepancy, self.kind)
        if w.one_hot:
            loss = loss + w.one_hot * losses.one_hot_loss(t)
        if w.balance:
            loss = loss + w.balance * losses.class_balance_loss(t)
        if w.activation:
            loss = loss + w.activation * losses.activation_loss(self.probe.features())
        if w.bn_prior:
            loss = loss + w.bn_prior * self.probe.bn_loss()
        return loss
