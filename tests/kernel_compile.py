"""Shared by the kernel tests: compile Triton kernels to sm_90 cubins in a fresh process (no GPU).

The interpreter accepts code the real compiler may reject, so each kernel test module also
compiles its kernels; the subprocess runs without ``TRITON_INTERPRET``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def assert_compiles(script: str) -> None:
    """Run ``script`` (which prints ``ok`` after compiling) without the interpreter; fail loudly."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
