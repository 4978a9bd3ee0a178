"""Helpers shared by the test modules (``import helpers``; pytest fixtures live in ``conftest.py``): the
small models and configs most tests train, subprocess runners, torchrun jobs, reference cases and hostile
files.

Not a test module: nothing here asserts on the library except :func:`assert_compiles`, which fails
the calling test.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import torch
from torch import nn

from lrwa_fast import KDLoss, MetaSettings, meta_gradient
from lrwa_fast.models import Generator, SmallCNN, build_model
from lrwa_fast.runtime.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
# The small run most trainer tests use (16 samples of 1×8×8, latent 8, 2 student steps, 10 iterations).
SMALL = dict(batch_size=16, latent_dim=8, iterations=10, student_steps=2, device="cpu", seed=3)


# ----------------------------------------------------------------- models
def tiny_models(seed: int = 0, student_seed: int | None = None, *, channels: int = 1,
                student_width: int = 4) -> tuple[nn.Module, nn.Module, nn.Module]:
    """BatchNorm CNN teacher (width 8, from ``seed``), student (from ``seed + 1`` unless given) and a
    generator of ``channels``×8×8 samples from latent 8, created after the student."""
    torch.manual_seed(seed)
    teacher = SmallCNN(10, channels, width=8)
    torch.manual_seed(seed + 1 if student_seed is None else student_seed)
    return teacher, SmallCNN(10, channels, width=student_width), Generator(8, channels=channels, img_size=8, ngf=8)


def one_seed_models(seed: int = 0) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The :func:`tiny_models` architectures, all three created in a row from one ``seed``."""
    torch.manual_seed(seed)
    return SmallCNN(10, 1, width=8), SmallCNN(10, 1, width=4), Generator(8, channels=1, img_size=8, ngf=8)


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
        from helpers import tiny_models
        from lrwa_fast import LRwATrainer
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


# ----------------------------------------------------------------- torchrun jobs
class TorchrunJob:
    """``torchrun --standalone --nproc_per_node=2 ARGS`` in its own session, one thread per process, its
    output (the workers' too) in ``folder/torchrun.log``, under a deadline: ``with TorchrunJob(...) as
    job``; on leaving, every process it started is killed (the workers run in sessions of their own)."""

    def __init__(self, args: list[str], folder: Path, deadline_s: float = 90.0) -> None:
        self.args, self.log, self.deadline = args, folder / "torchrun.log", time.monotonic() + deadline_s
        self.marker = str(folder)  # in the command line of every process of the job
        self.proc: subprocess.Popen | None = None
        self.pids: set[int] = set()

    def __enter__(self) -> TorchrunJob:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *self.args]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         env=subprocess_env(OMP_NUM_THREADS="1"))
        self.pids.add(self.proc.pid)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def left(self) -> float:
        """Seconds to the deadline (``TimeoutError`` once it has passed)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"torchrun {' '.join(self.args)} ran past its deadline:\n{self.output()[-3000:]}")
        return left

    def wait(self) -> int:
        """torchrun's exit status."""
        return self.proc.wait(timeout=self.left())

    def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.left()
            time.sleep(0.05)

    def workers(self) -> dict[int, int]:
        """The pid of each rank, once torchrun has started both."""
        ranks: dict[int | None, int] = {}
        while not {0, 1} <= set(ranks):
            self.left()
            time.sleep(0.05)
            ranks = {_rank_of(pid): pid for pid in _all_pids() if _stat(pid)[1:2] == [str(self.proc.pid)]}
        self.pids.update(ranks[r] for r in (0, 1))
        return {r: ranks[r] for r in (0, 1)}

    def exit_statuses(self, pids: list[int]) -> list[int]:
        """The exit statuses of orphaned workers, reaped here (:func:`child_subreaper`)."""
        statuses = {}
        while len(statuses) < len(pids):
            for pid in set(pids) - set(statuses):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    statuses[pid] = os.waitstatus_to_exitcode(status)
            if len(statuses) < len(pids):
                self.left()
                time.sleep(0.05)
        return [statuses[pid] for pid in pids]

    def running(self) -> list[int]:
        """The processes of the job still running (zombies are finished)."""
        return [pid for pid in _all_pids() if self.marker in _read(pid, "cmdline") and _stat(pid)[:1] != ["Z"]]

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in self.running():
            os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        for pid in self.pids - {self.proc.pid}:  # orphans handed to this process by child_subreaper, all ended
            if _stat(pid)[1:2] == [str(os.getpid())]:
                with suppress(ChildProcessError):
                    os.waitpid(pid, 0)


@contextmanager
def child_subreaper() -> Iterator[None]:
    """Orphaned descendants (workers whose launcher died) become this process's children while inside, so
    their exit status can be read and nothing outlives the test unseen (Linux ``PR_SET_CHILD_SUBREAPER``)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl(36, 1, 0, 0, 0)
    try:
        yield
    finally:
        prctl(36, 0, 0, 0, 0)


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _read(pid: int, name: str) -> str:
    try:
        return (Path("/proc") / str(pid) / name).read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # gone meanwhile
        return ""


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command's name: state, parent pid, ...; [] when gone."""
    stat = _read(pid, "stat")
    return stat[stat.rfind(")") + 2:].split()


def _rank_of(pid: int) -> int | None:
    ranks = [v.split("=", 1)[1] for v in _read(pid, "environ").split(" ") if v.startswith("RANK=")]
    return int(ranks[0]) if ranks else None


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
