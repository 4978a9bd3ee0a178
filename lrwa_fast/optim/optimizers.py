"""Optimisers and learning-rate schedules built from :class:`~lrwa_fast.config.OptimizerConfig`."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from ..choices import OPTIMIZERS, SCHEDULES
from ..config import OptimizerConfig
from ..rules import Problem, SettingsError, one_of


def optimizer_problems(cfg: OptimizerConfig) -> list[Problem]:
    """The rules of an optimiser's settings (the fields of :class:`~lrwa_fast.config.OptimizerConfig`)."""
    problems = one_of(cfg, name=OPTIMIZERS, schedule=SCHEDULES)
    if not cfg.lr >= 0 or not cfg.weight_decay >= 0:
        problems.append(Problem(f"{{lr}} and {{weight_decay}} must be >= 0, got {cfg.lr} and {cfg.weight_decay}"))
    if not 0 <= cfg.momentum < 1 or not all(0 <= b < 1 for b in cfg.betas):
        problems.append(Problem(f"{{momentum}} and {{betas}} must lie in [0, 1), got {cfg.momentum} and "
                                f"{list(cfg.betas)}"))
    return problems


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
    problems = optimizer_problems(cfg)
    if problems:
        raise SettingsError(type(cfg).__name__, problems)
    if cfg.name == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                                     weight_decay=cfg.weight_decay, foreach=True)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, foreach=True)
    factor = CosineFactor(horizon) if cfg.schedule == "cosine" else ConstantFactor()
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
