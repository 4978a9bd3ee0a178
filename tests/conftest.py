"""Session set-up that must come before any module imports Triton.

Without CUDA the Triton kernels are tested in Triton's interpreter on CPU tensors. Triton chooses
interpreter or compiler when it decorates a function, its own library functions included, at
import time; and importing ``torch._dynamo`` (as ``torch.compile`` does) imports Triton. So the
choice is made here, before any test module is collected.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
