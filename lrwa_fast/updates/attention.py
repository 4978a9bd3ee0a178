"""ZSKT's student update: the KD loss plus β × the attention transfer between matched blocks of the student and
the teacher (:func:`~lrwa_fast.ops.synthesis_terms.attention_transfer_loss`, summed over the pairs).

Blocks are matched by resolution: in each model, the last module (in the order forwards finish) whose output is a
feature map of a given spatial size is that size's block (a ResNet's or WRN's group, a plain CNN's last activation
at that size); the sizes both models have are paired, in order. ZSKT pairs a WRN's group outputs before the final
BatchNorm and ReLU; this rule takes the last group's after them (docs/methods.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..config import default_of
from ..ops import synthesis_terms as terms
from ..optim import UpdateResult, gradients
from ..rules import check, non_negative
from ..runtime.phases import phase
from ..runtime.precision import scaled
from .base import StepContext
from .kd import refuse_state


@dataclass(frozen=True, kw_only=True)
class AttentionSettings:
    """ZSKT's attention transfer (the config's ``attention_weight``; 0: plain KD)."""

    weight: float = default_of("attention_weight")

    def __post_init__(self) -> None:
        check(self, non_negative(self, "weight"))


def block_outputs(model: nn.Module, sample: Tensor) -> dict[tuple[int, ...], nn.Module]:
    """Each spatial size of ``model``'s feature maps on ``sample`` → the module whose output is the last of that
    size (sizes of one position left out: no attention map)."""
    last: dict[tuple[int, ...], nn.Module] = {}
    handles = []

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, Tensor) and output.dim() >= 3 and output.shape[2:].numel() > 1:
            size = tuple(output.shape[2:])
            last.pop(size, None)
            last[size] = module  # re-inserted: the dict keeps the order in which sizes last finished

    for module in model.modules():
        if module is not model:
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
    return last


def matched_blocks(teacher: nn.Module, student: nn.Module, sample: Tensor) -> list[tuple[nn.Module, nn.Module]]:
    """The (teacher block, student block) pairs of the spatial sizes both have, in the teacher's order."""
    training = [(m, m.training) for m in (teacher, student)]
    teacher.eval(), student.eval()
    try:
        t_blocks, s_blocks = block_outputs(teacher, sample), block_outputs(student, sample)
    finally:
        for m, flag in training:
            m.train(flag)
    pairs = [(t_blocks[size], s_blocks[size]) for size in t_blocks if size in s_blocks]
    if not pairs:
        raise ValueError("attention transfer: the teacher and the student have no feature maps of a common spatial "
                         f"size (teacher {sorted(t_blocks)}, student {sorted(s_blocks)})")
    return pairs


class AttentionTransferUpdate:
    """KD on the fresh batch plus ``weight`` × Σ attention transfer over the matched blocks (ZSKT). The teacher's
    block outputs are taken from its forward on the same batch when it was the last one (the trainer's), else
    from a forward of its own. Stateless."""

    def __init__(self, teacher: nn.Module, student: nn.Module, sample: Tensor, settings: AttentionSettings) -> None:
        self.teacher, self.weight = teacher, settings.weight
        self.pairs = matched_blocks(teacher, student, sample)
        self._teacher_input: Tensor | None = None
        self._teacher_maps: list[Tensor] = []
        self._hooks = [teacher.register_forward_pre_hook(self._seen)]
        self._hooks += [t.register_forward_hook(self._teacher_output) for t, _ in self.pairs]

    def _seen(self, _module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        self._teacher_input, self._teacher_maps = inputs[0], []

    def _teacher_output(self, _module: nn.Module, _inputs: Any, output: Tensor) -> None:
        self._teacher_maps.append(output.detach())

    def teacher_maps(self, x: Tensor) -> list[Tensor]:
        """The teacher's matched block outputs on ``x``."""
        if self._teacher_input is not x or len(self._teacher_maps) != len(self.pairs):
            with torch.no_grad(), phase("teacher forward"):
                self.teacher(x)
        return self._teacher_maps

    @contextmanager
    def student_maps(self) -> Iterator[list[Tensor]]:
        """The student's matched block outputs of the forwards in the block."""
        found: list[Tensor] = []
        handles = [s.register_forward_hook(lambda _m, _i, out: found.append(out)) for _, s in self.pairs]
        try:
            yield found
        finally:
            for handle in handles:
                handle.remove()

    def __call__(self, ctx: StepContext, x: Tensor, t: Tensor) -> UpdateResult:
        teacher_maps = self.teacher_maps(x)
        with phase("student forward"), self.student_maps() as student_maps:
            kd = ctx.loss(ctx.student(x), t)
        at = sum((terms.attention_transfer_loss(s.float(), tm.float()) for s, tm in zip(student_maps, teacher_maps)),
                 kd.new_zeros(()))
        loss = kd + self.weight * at
        with phase("student backward"):
            grads = gradients(scaled(loss, ctx.loss_scale), ctx.params)
        return UpdateResult(grads, {"loss_student": loss, "loss_attention": at})

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        refuse_state(self, state)
