"""ZSKT's student update: the KD loss plus β × the attention transfer between matched blocks of the student and
the teacher (:func:`~lrwa_fast.ops.synthesis_terms.attention_transfer_loss`, summed over the pairs).

Blocks are matched by resolution. In each model, a spatial size's block is the last to finish of the containers
(modules with children) that output that size, at most one level below the shallowest of them (a WRN's or ResNet's
group: its last block; a MobileNetV2 block; a ShuffleNetV2 stage; not the first layers of the next, down-sampling
block, which are deeper); where no container outputs a size, the last plain layer that does (a plain CNN's last
activation before a pooling). The sizes both models have are paired, in order. On a WRN these are ZSKT's three
group outputs (before the final BatchNorm and ReLU).
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
    """Each spatial size of ``model``'s feature maps on ``sample`` → its block (the module docstring's rule; sizes
    of one position left out: no attention map), in the order the sizes first finished."""
    depth = {m: name.count(".") for name, m in model.named_modules() if m is not model}
    found: list[tuple[tuple[int, ...], nn.Module]] = []  # (size, module) in the order forwards finish

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, Tensor) and output.dim() >= 3 and output.shape[2:].numel() > 1:
            found.append((tuple(output.shape[2:]), module))

    handles = [m.register_forward_hook(hook) for m in depth]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
    blocks: dict[tuple[int, ...], nn.Module] = {}
    for size in dict.fromkeys(size for size, _ in found):
        modules = [m for s, m in found if s == size]
        containers = [m for m in modules if next(m.children(), None) is not None]
        if containers:  # a stem beside a flat list of blocks is one level above them: both levels count
            shallowest = min(depth[m] for m in containers)
            blocks[size] = [m for m in containers if depth[m] <= shallowest + 1][-1]
        else:
            blocks[size] = modules[-1]
    return blocks


def matched_blocks(teacher: nn.Module, student: nn.Module, sample: Tensor
                   ) -> list[tuple[nn.Module, nn.Module, tuple[int, ...]]]:
    """The (teacher block, student block, spatial size) of the sizes both have, in the teacher's order."""
    training = [(m, m.training) for m in (teacher, student)]
    teacher.eval(), student.eval()
    try:
        t_blocks, s_blocks = block_outputs(teacher, sample), block_outputs(student, sample)
    finally:
        for m, flag in training:
            m.train(flag)
    pairs = [(t_blocks[size], s_blocks[size], size) for size in t_blocks if size in s_blocks]
    if not pairs:
        raise ValueError("attention transfer: the teacher and the student have no feature maps of a common spatial "
                         f"size (teacher {sorted(t_blocks)}, student {sorted(s_blocks)})")
    return pairs


@contextmanager
def block_maps(modules: list[tuple[nn.Module, tuple[int, ...]]]) -> Iterator[list[Tensor | None]]:
    """The outputs of ``modules`` (each at its spatial size: a module called at several sizes is taken at its own)
    in the forwards run in the block, the last of each."""
    found: list[Tensor | None] = [None] * len(modules)

    def keep(index: int, size: tuple[int, ...]) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            if tuple(output.shape[2:]) == size:
                found[index] = output
        return hook

    handles = [m.register_forward_hook(keep(i, size)) for i, (m, size) in enumerate(modules)]
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


class AttentionTransferUpdate:
    """KD on the fresh batch plus ``weight`` × Σ attention transfer over the matched blocks (ZSKT). The teacher's
    block outputs come from a forward of its own on the batch (without gradients; ZSKT's release takes them from
    the forward that gives the logits). Stateless; no hook outlives a call."""

    def __init__(self, teacher: nn.Module, student: nn.Module, sample: Tensor, settings: AttentionSettings) -> None:
        self.teacher, self.weight = teacher, settings.weight
        self.pairs = matched_blocks(teacher, student, sample)

    def __call__(self, ctx: StepContext, x: Tensor, t: Tensor) -> UpdateResult:
        with torch.no_grad(), phase("teacher forward"), block_maps([(tm, size) for tm, _, size in self.pairs]) as \
                teacher_maps:
            self.teacher(x)
        with phase("student forward"), block_maps([(sm, size) for _, sm, size in self.pairs]) as student_maps:
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
