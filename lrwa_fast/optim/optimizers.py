"""Optimisers and learning-rate schedules built from :class:`~lrwa_fast.config.OptimizerConfig`."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from ..choices import OPTIMIZERS, SCHEDULES
from ..config import OptimizerConfig


class CosineFactor:
    """Learning-rate factor ``½(1 + cos(π·min(i, T)/T))``: cosine to zero at ``T``, then flat."""

    def __init__(self, horizon: int) -> None:
        self.horizon = max(1, int(horizon))

    def __call__(self, i: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(i, self.horizon) / self.horizon))


class ConstantFactor:
    """Learning-rate factor 1."""

    def __call__(self, i: int) -> float:
        return 1.0


def build_optimizer(params: Iterable[nn.Parameter], cfg: OptimizerConfig,
                    horizon: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser named by ``cfg`` and its per-iteration schedule over ``horizon`` iterations
    (multi-tensor ``foreach`` updates: one launch per operation instead of one per tensor)."""
    params = list(params)
    if cfg.name not in OPTIMIZERS or cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown optimizer {cfg.name!r} or schedule {cfg.schedule!r}; expected one of "
                         f"{OPTIMIZERS} and {SCHEDULES}")
    if cfg.name == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                                     weight_decay=cfg.weight_decay, foreach=True)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, foreach=True)
    factor = CosineFactor(horizon) if cfg.schedule == "cosine" else ConstantFactor()
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
