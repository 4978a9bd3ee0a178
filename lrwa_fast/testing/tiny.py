"""The smallest models a trainer runs on, for tests (ours and users'): a BatchNorm CNN teacher and student on
1×8×8 samples and a generator from a latent of 8, with a run that takes well under a second."""

from __future__ import annotations

import torch
from torch import nn

from ..models import Generator, SmallCNN

# A run of 10 iterations on batches of 16 (latent 8, 2 student steps), on the CPU, seed 3.
TINY_RUN: dict[str, object] = dict(batch_size=16, latent_dim=8, iterations=10, student_steps=2, device="cpu", seed=3)


def tiny_models(seed: int = 0, student_seed: int | None = None, *, channels: int = 1,
                student_width: int = 4) -> tuple[nn.Module, nn.Module, nn.Module]:
    """BatchNorm CNN teacher (width 8, from ``seed``), student (from ``seed + 1`` unless given) and a generator of
    ``channels`` × 8 × 8 samples from latent 8, created after the student."""
    torch.manual_seed(seed)
    teacher = SmallCNN(10, channels, width=8)
    torch.manual_seed(seed + 1 if student_seed is None else student_seed)
    return teacher, SmallCNN(10, channels, width=student_width), Generator(8, channels=channels, img_size=8, ngf=8)


def one_seed_models(seed: int = 0) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The :func:`tiny_models` architectures, all three created in a row from one ``seed``."""
    torch.manual_seed(seed)
    return SmallCNN(10, 1, width=8), SmallCNN(10, 1, width=4), Generator(8, channels=1, img_size=8, ngf=8)
