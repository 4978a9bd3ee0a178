"""Fused Triton kernels of lrwa_fast, installed as ``lrwa_fast.kernels``.

* :mod:`.kd_loss`: KD losses (L1, temperature KL, JS) between logit matrices, one program per row
  (or per block of rows), gradients written during the forward pass.
* :mod:`.grad_alignment`: ⟨a_i, b_i⟩, ‖a_i‖², ‖b_i‖² over two lists of tensors in one
  multi-tensor launch per dtype group, reduced deterministically.

The submodules import Triton; load them through :func:`lrwa_fast.ops.dispatch.kernels`, which falls back
to the PyTorch reference when Triton is missing. This package imports only torch (no Triton, no
``lrwa_fast`` module), so ``lrwa_fast.ops.dispatch`` can read :func:`interpreter_enabled` from it before
loading any kernel, and nothing here imports the dispatcher back. :mod:`.kd_loss` imports the
reference losses from :mod:`lrwa_fast.ops.losses`; the kernel modules are loaded only through the
dispatcher, after ``lrwa_fast`` has finished importing, so that import closes no cycle.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor

_TRUE = ("1", "true", "on", "yes", "y")  # what Triton itself accepts, in any case


def interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` asks Triton to run kernels on the CPU through its interpreter."""
    return os.environ.get("TRITON_INTERPRET", "").lower() in _TRUE


def check_launchable(interpreted: bool, *tensors: Tensor) -> None:
    """Raise ``RuntimeError`` when CPU tensors meet kernels that were compiled (``interpreted`` false).

    Triton chooses between compiling and interpreting when it decorates a kernel, so each kernel
    module records :func:`interpreter_enabled` at its import and passes that here; this package's
    own import (``lrwa_fast.ops.dispatch`` may import it earlier, for the flag) decides nothing.
    """
    if not interpreted and any(t.device.type == "cpu" for t in tensors):
        raise RuntimeError("the Triton kernels were loaded without TRITON_INTERPRET=1, so they cannot "
                           "run on CPU tensors; set TRITON_INTERPRET=1 before the first kernel call")


def on_device(t: Tensor) -> AbstractContextManager:
    """Make ``t``'s GPU current for a launch (Triton launches on the current device and stream)."""
    return torch.cuda.device(t.device) if t.is_cuda else nullcontext()
