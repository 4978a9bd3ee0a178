"""A custom student update: KD plus an L2 pull towards the student's initial weights.

Public names only (the documentation's "custom update" example). Use:
DFADTrainer(teacher, student, generator, config, update=AnchoredKD(student, 1e-2))
"""

import torch

from lrwa_fast import StepContext, UpdateResult, kd_gradients


class AnchoredKD:
    """∇[KD loss + strength/2 · ‖θ − θ₀‖²]: the KD gradient plus strength · (θ − θ₀)."""

    def __init__(self, student: torch.nn.Module, strength: float) -> None:
        self.anchor = [p.detach().clone() for p in student.parameters() if p.requires_grad]
        self.strength = strength

    def __call__(self, ctx: StepContext, x: torch.Tensor, t: torch.Tensor) -> UpdateResult:
        kd = kd_gradients(ctx, x, t)
        pull = [p.detach() - a for p, a in zip(ctx.params, self.anchor)]
        grads = [g + self.strength * d for g, d in zip(kd.grads, pull)]
        distance = torch.cat([d.reshape(-1) for d in pull]).norm()
        return UpdateResult(grads, {**kd.logged, "anchor_distance": distance})

    def state_dict(self) -> dict:
        return {"anchor": self.anchor, "strength": self.strength}

    def load_state_dict(self, state: dict) -> None:
        self.anchor = [a.to(p.device) for a, p in zip(state["anchor"], self.anchor)]
        self.strength = float(state["strength"])
