"""Optional ``torch.compile`` of the student (``compile_student``): fused kernels, fewer launches.

Compiled graphs have no double backward, so the exact meta-gradient cannot run through them; the
config refuses ``compile_student`` with ``meta_mode="exact"``. The student is compiled in place
(``nn.Module.compile``), so parameter names, ``state_dict`` and checkpoints are unchanged. CUDA
graphs are not used: the first-order retention pass lets the parameters hold θ' for a moment,
which a captured graph would not see. Where compilation cannot run (no C++ compiler for the CPU,
no Triton for CUDA, a Python that ``torch.compile`` does not support) the student stays eager and
one ``RuntimeWarning`` per process says why.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import torch
from torch import nn

from ..runtime.warn_once import warn_once


def compile_unavailable_reason(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot run for ``device`` here, or ``None`` when it can."""
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "Triton is not installed"
    if device.type == "cpu":
        compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
        if not any(shutil.which(c) for c in compilers if c):
            return "no C++ compiler found (set CXX or install g++)"
    return None


def compile_module(module: nn.Module, device: torch.device) -> bool:
    """Compile ``module`` in place when possible; otherwise warn once and leave it eager."""
    reason = compile_unavailable_reason(device)
    if reason is None:
        module.compile()
        return True
    warn_once("compile", f"lrwa_fast: compile_student=True but {reason}; the student runs eagerly", stacklevel=3)
    return False
