"""The meta-gradient's reference cases: small float64 models with their batches, the call with a KD loss and
meta settings by keyword, and a gradient dict as one vector."""

from __future__ import annotations

import torch
from torch import nn

from lrwa_fast import KDLoss, MetaSettings, meta_gradient


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def bn_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.SiLU(), nn.Flatten(),
                         nn.Linear(3 * 3 * 3, 4))


def make_case(kind: str, seed: int):
    """A float64 model (``"mlp"`` or ``"bn_cnn"``, training mode) and acquisition/memory batches; fresh per seed."""
    gen = torch.Generator().manual_seed(seed)
    model = (mlp() if kind == "mlp" else bn_cnn()).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.7)
    shape = (5,) if kind == "mlp" else (2, 5, 5)
    classes = 3 if kind == "mlp" else 4
    x_acq = torch.randn(6, *shape, generator=gen, dtype=torch.float64)
    x_mem = torch.randn(5, *shape, generator=gen, dtype=torch.float64)
    t_acq = torch.randn(6, classes, generator=gen, dtype=torch.float64)
    t_mem = torch.randn(5, classes, generator=gen, dtype=torch.float64)
    return model, x_acq, t_acq, x_mem, t_mem


def run_meta(model: nn.Module, batches, *, loss: str = "l1", temperature: float = 1.0, ranks=None,
             average: bool = True, loss_scale: torch.Tensor | None = None, **settings):
    """:func:`~lrwa_fast.meta_gradient` on ``batches = (x_acq, t_acq, x_mem, t_mem)`` with the KD loss named by
    ``loss`` and ``temperature`` and the meta settings given by keyword."""
    x_acq, t_acq, x_mem, t_mem = batches
    return meta_gradient(model, (x_acq, t_acq), (x_mem, t_mem), loss=KDLoss(kind=loss, temperature=temperature),
                         settings=MetaSettings(**settings), ranks=ranks, average=average, loss_scale=loss_scale)


def flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """A gradient dict as one vector, in its order."""
    return torch.cat([g.reshape(-1) for g in grads.values()])
