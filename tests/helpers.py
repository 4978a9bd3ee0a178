"""Plain helpers shared by the test modules (``import helpers``): subprocess runners, the meta-gradient's
reference cases, hostile files and a tiny ``distill`` config. Fixtures (the tiny models, the GPU marker)
live in ``conftest.py``, the torchrun harness beside the tests that use it (``runtime/torchrun_job.py``).

Not a test module: nothing here asserts on the library except :func:`assert_compiles`, which fails
the calling test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from torch import nn

from lrwa_fast import KDLoss, MetaSettings, meta_gradient
from lrwa_fast.models import build_model
from lrwa_fast.runtime.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


# ----------------------------------------------------------------- subprocesses
def run_python(code: str, **kw) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports this checkout and these helpers."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          check=False, timeout=300, **kw)


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment with this checkout and the test helpers importable."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), **extra}


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


# ----------------------------------------------------------------- meta-gradient reference cases
def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def bn_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.SiLU(), nn.Flatten(),
                         nn.Linear(3 * 3 * 3, 4))


def make_case(kind: str, seed: int):
    """A float64 model (``"mlp"`` or ``"bn_cnn"``, training mode) and acquisition/memory batches; fresh per seed."""
    gen = torch.Generator().manual_seed(seed)
    model = (mlp() if kind == "mlp" else bn_cnn()).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.7)
    shape = (5,) if kind == "mlp" else (2, 5, 5)
    classes = 3 if kind == "mlp" else 4
    x_acq = torch.randn(6, *shape, generator=gen, dtype=torch.float64)
    x_mem = torch.randn(5, *shape, generator=gen, dtype=torch.float64)
    t_acq = torch.randn(6, classes, generator=gen, dtype=torch.float64)
    t_mem = torch.randn(5, classes, generator=gen, dtype=torch.float64)
    return model, x_acq, t_acq, x_mem, t_mem


def run_meta(model: nn.Module, batches, *, loss: str = "l1", temperature: float = 1.0, ranks=None,
             average: bool = True, loss_scale: torch.Tensor | None = None, **settings):
    """:func:`~lrwa_fast.meta_gradient` on ``batches = (x_acq, t_acq, x_mem, t_mem)`` with the KD loss named by
    ``loss`` and ``temperature`` and the meta settings given by keyword."""
    x_acq, t_acq, x_mem, t_mem = batches
    return meta_gradient(model, (x_acq, t_acq), (x_mem, t_mem), loss=KDLoss(kind=loss, temperature=temperature),
                         settings=MetaSettings(**settings), ranks=ranks, average=average, loss_scale=loss_scale)


def flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """A gradient dict as one vector, in its order."""
    return torch.cat([g.reshape(-1) for g in grads.values()])


# ----------------------------------------------------------------- files
class CallsAFunction:
    """Pickles to a call of os.system, as a malicious file would."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_distill_config(tmp_path: Path, **trainer) -> Path:
    """A ``distill`` config file for a tiny LRwA run on a random cnn teacher, evaluated on random data."""
    torch.manual_seed(0)
    teacher = build_model("cnn", num_classes=10, in_channels=1)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    torch.save({"x": torch.randn(20, 1, 8, 8), "y": torch.randint(0, 10, (20,))}, tmp_path / "eval.pt")
    spec = {
        "method": "lrwa",
        "teacher": {"arch": "cnn", "checkpoint": str(tmp_path / "teacher.pt"), "num_classes": 10,
                    "in_channels": 1},
        "student": {"arch": "cnn_small", "num_classes": 10, "in_channels": 1},
        "generator": {"img_size": 8, "ngf": 8},
        "trainer": {"batch_size": 8, "latent_dim": 16, "iterations": 4, "student_steps": 1, "device": "cpu",
                    "checkpoint_every": 2, **trainer},
        "eval_data": str(tmp_path / "eval.pt"),
        "eval_every": 2,
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "distill.json"
    path.write_text(json.dumps(spec))
    return path
