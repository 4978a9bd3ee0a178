"""The functions the ranks of the data-parallel tests run (on W local gloo processes, with
:func:`lrwa_fast.testing.run_local`: every run has a deadline, processes alive then are killed).
A helper module, not a test module: spawned ranks import it by name, ``tests.support.workers``."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lrwa_fast import DFADConfig, KDLoss, LRwAConfig, LRwATrainer, MetaSettings, Ranks, meta_gradient
from lrwa_fast.models import SmallCNN
from lrwa_fast.testing import TINY_RUN as BASE
from lrwa_fast.testing import tiny_models as bn_models  # the BatchNorm models (seed 0, student seed 1)
from lrwa_fast.training import DFADTrainer

SMALL = dict(BASE, iterations=40, log_every=1)
LRWA = dict(SMALL, memory_capacity=24, memory_batch_size=8, memory_insert_size=8)


# ----------------------------------------------------------------- models


def bn_free_models(seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, nn.Module, nn.Module]:
    torch.manual_seed(seed)
    teacher = SmallCNN(10, 1, width=8, batch_norm=False)
    torch.manual_seed(seed + 1)
    student = SmallCNN(10, 1, width=4, batch_norm=False)
    generator = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 64), nn.Unflatten(1, (1, 8, 8)))
    return teacher.to(dtype), student.to(dtype), generator.to(dtype)


def training_state(trainer: DFADTrainer) -> dict[str, Any]:
    """What must agree between ranks: weights, buffers, optimiser states."""
    return {"student": {k: v.clone() for k, v in trainer.student.state_dict().items()},
            "generator": {k: v.clone() for k, v in trainer.generator.state_dict().items()},
            "student_optimizer": trainer.student_updater.optimizer.state_dict(),
            "generator_optimizer": trainer.generator_updater.optimizer.state_dict()}


# ----------------------------------------------------------------- what the ranks run


def train_lrwa(rank: int, world: int, out: Path, iterations: int, mode: str = "exact",
               **overrides: Any) -> dict[str, Any]:
    trainer = LRwATrainer(*bn_models(), LRwAConfig(**{**LRWA, **overrides}, meta_mode=mode))
    trainer.train(iterations, progress=False)
    extra = {"ema": {k: v.clone() for k, v in trainer.generator_ema.module.state_dict().items()
                     if v.is_floating_point() and "running" not in k}} if trainer.generator_ema else {}
    probes = {"probes": trainer.probes.iterations} if trainer.probes else {}
    vae = {"vae": {k: v.detach().clone() for k, v in trainer.memory.vae.named_parameters()}} \
        if hasattr(trainer.memory, "vae") else {}
    buffer = getattr(trainer.memory, "buffer", None)
    draws = {"sampler": buffer.sampler.state_dict(), "last_draw": buffer.sample_with_indices(
        buffer.sampler.size)[2]} if buffer is not None and buffer.draw == "entry" else {}
    return {**training_state(trainer), "latent": trainer.random.latent(16, 8), "memory": len(trainer.memory),
            "metrics": trainer.history["metrics"][-1], **extra, **probes, **draws, **vae}


def train_dfad_bn_free(rank: int, world: int, out: Path, iterations: int) -> dict[str, Any]:
    trainer = DFADTrainer(*bn_free_models(), DFADConfig(**SMALL))
    trainer.train(iterations, progress=False)
    return training_state(trainer)


def meta_gradient_on_shards(rank: int, world: int, out: Path, mode: str, seed: int,
                            **terms: Any) -> dict[str, Any]:
    model, x_acq, t_acq, x_mem, t_mem = meta_problem(seed)
    n_acq, n_mem = x_acq.shape[0] // world, x_mem.shape[0] // world
    shard = slice(rank * n_acq, (rank + 1) * n_acq), slice(rank * n_mem, (rank + 1) * n_mem)
    res = meta_gradient(model, (x_acq[shard[0]], t_acq[shard[0]]), (x_mem[shard[1]], t_mem[shard[1]]),
                        loss=KDLoss(kind="kl", temperature=2.0),
                        settings=MetaSettings(inner_lr=0.3, mode=mode, retain_weight=0.7, **terms),
                        ranks=Ranks(dist.group.WORLD))
    return {"grads": res.grads, "loss_acq": res.loss_acq, "loss_ret": res.loss_ret}


def meta_problem(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A BatchNorm-free float64 model and batches (acquisition 10, memory 6), drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    def draw(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    return model, draw(10, 5), draw(10, 3), draw(6, 5), draw(6, 3)


def checkpoint_then_resume(rank: int, world: int, out: Path, phase: str) -> dict[str, Any]:
    """``"first"``: 3 iterations, checkpoint, 3 more; ``"resume"``: load that checkpoint, 3 more."""
    folder = out / "ckpt"
    if phase == "first":
        trainer = LRwATrainer(*bn_models(), LRwAConfig(**LRWA))
        trainer.train(3, progress=False)
        path = trainer.write_checkpoint(folder)
        trainer.train(3, progress=False)
        return {"path": str(path), **training_state(trainer)}
    trainer = LRwATrainer.load(folder / "ckpt-00000003.pt", *bn_models(student_seed=5))  # other initial weights
    trainer.train(3, progress=False)
    return training_state(trainer)


def references_to_the_group(rank: int, world: int, out: Path) -> dict[str, int]:
    """References to the default group before any trainer, then with an LRwA (exact, memory) and a DFAD
    trainer alive after training and a meta-gradient computed over the group."""
    group = dist.group.WORLD
    before = sys.getrefcount(group)
    trainers = [LRwATrainer(*bn_models(), LRwAConfig(**LRWA)), DFADTrainer(*bn_models(), DFADConfig(**SMALL))]
    for trainer in trainers:
        trainer.train(3, progress=False)
    meta_gradient_on_shards(rank, world, out, mode="exact", seed=0)
    gc.collect()
    return {"before": before, "after": sys.getrefcount(group), "memory": len(trainers[0].memory)}


def train_until_signalled(rank: int, world: int, out: Path) -> dict[str, Any]:
    """Train with checkpoints until a signal stops the run; say when training has started."""
    cfg = LRwAConfig(**{**LRWA, "iterations": 100000}, checkpoint_dir=str(out / "ckpt"), checkpoint_every=0,
                     meta_mode="first_order")
    trainer = LRwATrainer(*bn_models(), cfg)
    trainer.train(2, progress=False)
    (out / f"started-{rank}").touch()
    trainer.train(100000 - 2, progress=False)
    return {"iteration": trainer.iteration}


def signal_rank_one(sig: int) -> Callable[[list[mp.Process], Path], None]:
    """Send ``sig`` to rank 1 once both ranks are training."""
    def send(procs: list[mp.Process], out: Path) -> None:
        deadline = time.monotonic() + 45
        while not all((out / f"started-{r}").exists() for r in range(len(procs))):
            assert time.monotonic() < deadline, "the ranks never started training"
            time.sleep(0.05)
        os.kill(procs[1].pid, sig)
    return send


def kill_rank_one(procs: list[mp.Process], out: Path) -> None:
    signal_rank_one(signal.SIGKILL)(procs, out)


def train_teacher_two_epochs(rank: int, world: int, out: Path) -> dict[str, Any]:
    from lrwa_fast.apps.teacher import TeacherConfig, cifar_training, train_teacher
    from lrwa_fast.data import load_cifar

    cfg = TeacherConfig(arch="cnn_small", epochs=2, batch_size=8, eval_batch_size=16, device="cpu")
    report = train_teacher(cfg, out / "data", out / "teacher", progress=False)
    run = cifar_training(cfg, load_cifar(cfg.dataset, out / "data"))  # the same two epochs again: the ranks' weights
    for _ in range(2):
        run.train_epoch()
    return {"report": report, "model": run.model.state_dict()}


class PoisonOnRankOne:
    """KD, except that rank 1's gradients are NaN in iteration 1 (a non-finite value on one rank only)."""

    def __call__(self, ctx: Any, x: torch.Tensor, t: torch.Tensor) -> Any:
        from lrwa_fast import kd_gradients

        result = kd_gradients(ctx, x, t)
        if dist.get_rank() == 1 and ctx.iteration == 1:
            result.grads[0] = result.grads[0] * float("nan")
        return result

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def skip_on_one_rank(rank: int, world: int, out: Path) -> dict[str, Any]:
    trainer = DFADTrainer(*bn_models(), DFADConfig(**SMALL, nonfinite="skip"), update=PoisonOnRankOne())
    trainer.train(3, progress=False)
    return {"skipped": trainer.runtime.guard.skipped, **training_state(trainer)}
