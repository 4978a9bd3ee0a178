"""Inspecting the modules a trainer is given: do a teacher, a student and a generator fit together (before
any training), and running modules in eval mode for a while."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn


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


def inspect_models(teacher: nn.Module, student: nn.Module, generator: nn.Module, latent_dim: int,
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
