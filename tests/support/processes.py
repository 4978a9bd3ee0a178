"""Fresh Python processes for the tests: the environment that makes this checkout (and ``tests.support``)
importable, a runner, a resume in a new interpreter and the check that Triton kernels compile for real."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from lrwa_fast.runtime.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, **kw) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports this checkout."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          check=False, timeout=300, **kw)


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment with the repository root first on the path: this checkout's ``lrwa_fast``
    and the ``tests`` package (``tests.support``) importable."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def resume_in_a_fresh_process(first, tmp_path: Path) -> dict:
    """Save ``first`` (an LRwA trainer on :func:`tiny_models`), load it in a new Python process, train to
    the end there and return the state it ends with."""
    first.save(tmp_path / "half.pt")
    code = textwrap.dedent(f"""
        from lrwa_fast import LRwATrainer
        from lrwa_fast.testing import tiny_models
        trainer = LRwATrainer.load({str(tmp_path / 'half.pt')!r}, *tiny_models())
        trainer.train(progress=False)
        trainer.save({str(tmp_path / 'resumed.pt')!r})
    """)
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    return read_checkpoint(tmp_path / "resumed.pt")


def assert_compiles(script: str) -> None:
    """Run ``script`` (which prints ``ok`` after compiling Triton kernels to sm_90 cubins) in a fresh process
    without Triton's interpreter: the interpreter accepts code the real compiler may reject."""
    env = {k: v for k, v in subprocess_env().items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
