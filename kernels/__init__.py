"""Fused Triton kernels of lrwa_fast, installed as ``lrwa_fast.kernels``.

* :mod:`.kd_loss`: KD losses (L1, temperature KL, JS) between logit matrices, one program per row
  (or per block of rows), gradients written during the forward pass.
* :mod:`.grad_alignment`: ⟨a_i, b_i⟩, ‖a_i‖², ‖b_i‖² over two lists of tensors in one
  multi-tensor launch per dtype group, reduced deterministically.

The submodules import Triton; load them through :func:`lrwa_fast.dispatch.kernels`, which falls back
to the PyTorch reference when Triton is missing. Importing this package alone needs no Triton.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor

from lrwa_fast.dispatch import interpreter_enabled

# Triton decides between compiling and interpreting when a kernel is decorated, i.e. when the
# submodules are imported; remember which one applies to CPU tensors.
INTERPRETED = interpreter_enabled()


def check_launchable(*tensors: Tensor) -> None:
    """Raise ``RuntimeError`` when CPU tensors meet kernels that were compiled, not interpreted."""
    if not INTERPRETED and any(t.device.type == "cpu" for t in tensors):
        raise RuntimeError("the Triton kernels were loaded without TRITON_INTERPRET=1, so they cannot "
                           "run on CPU tensors; set TRITON_INTERPRET=1 before the first kernel call")


def on_device(t: Tensor) -> AbstractContextManager:
    """Make ``t``'s GPU current for a launch (Triton launches on the current device and stream)."""
    return torch.cuda.device(t.device) if t.is_cuda else nullcontext()
