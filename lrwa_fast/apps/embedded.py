"""The embedded benchmarks (no download, no data to bring): scikit-learn's 8×8 digits and MNIST-1D.

Each names its data, its teacher's recipe (trained once, then cached), its student and generator, and
the settings every method shares on it (tuned on DFAD alone, then frozen; docs/results.md "Where retention
matters" says how). The teacher trains through the one loop (:mod:`lrwa_fast.training.loop`): progress,
and a SIGINT that stops after an epoch with a checkpoint the next call continues from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import GeneratorLossWeights, OptimizerConfig
from ..data import LabelledSplit, load_digits_split, load_mnist1d
from ..models import Generator, SignalGenerator, build_model
from ..runtime.checkpoint import atomic_save, latest_checkpoint, load_file
from ..runtime.distributed import Ranks
from ..runtime.metrics import accuracy
from ..training import loop
from .teacher import EpochRecipe, TeacherTraining


@dataclass
class TeacherRecipe:
    """How a benchmark's teacher is trained (all of it, with the benchmark's name, enters the cache key).

    The seed decides the initial weights too (until 0.2 the digits teacher's came from the global stream,
    so each fresh cache held another teacher)."""

    arch: str = "cnn"
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0  # the teacher's initial weights and its batches


@dataclass(frozen=True)
class Benchmark:
    """An embedded benchmark: data, models, teacher recipe and the shared settings of every method."""

    name: str
    student_arch: str
    teacher: TeacherRecipe
    iterations: int  # default run length
    eval_every: int  # default evaluation interval
    load: Callable[[Path | None], LabelledSplit]  # the split (cache folder, where generation is slow)
    generator: Callable[[int, int], nn.Module]  # (latent_dim, ngf) → generator of the data's sample shape
    shared: Callable[[int], dict[str, Any]]  # run length → trainer settings every method shares
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None  # the teacher's batches
    generator_ngf: int = 32

    def student(self) -> nn.Module:
        """A fresh student (its initialisation follows the global seed)."""
        return build_model(self.student_arch, num_classes=10, in_channels=1)


def _shift_digits(x: Tensor, rng: torch.Generator) -> Tensor:
    """Random shifts of up to one pixel (zero padding in normalised units = the image minimum)."""
    padded = F.pad(x, (1, 1, 1, 1), value=float(x.min()))
    dx, dy = (int(v) for v in torch.randint(0, 3, (2,), generator=rng))
    return padded[:, :, dy: dy + 8, dx: dx + 8]


def _digits_shared(iterations: int) -> dict[str, Any]:
    """The digits demo's settings (KL for both methods, from the ablation in docs/results.md)."""
    return dict(batch_size=64, latent_dim=64, iterations=iterations, generator_steps=1, student_steps=5,
                loss="kl", adversarial_loss="kl", generator_weights=GeneratorLossWeights(adversarial=1.0),
                student_optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4),
                generator_optimizer=OptimizerConfig(name="adam", lr=1e-3, weight_decay=0.0), device="cpu",
                probe_every=max(1, iterations // 20), probe_size=64)


def _mnist1d_shared(iterations: int) -> dict[str, Any]:
    """MNIST-1D's settings, chosen on DFAD alone so that it visibly forgets (docs/results.md): KL for both, constant
    learning rates (a cosine schedule hides the oscillation at the end), a generator three times faster
    than the digits'."""
    return dict(batch_size=64, latent_dim=32, iterations=iterations, generator_steps=1, student_steps=5,
                loss="kl", adversarial_loss="kl", generator_weights=GeneratorLossWeights(adversarial=1.0),
                student_optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                                                  schedule="constant"),
                generator_optimizer=OptimizerConfig(name="adam", lr=3e-3, weight_decay=0.0, schedule="constant"),
                device="cpu", probe_every=max(1, iterations // 20), probe_size=64)


BENCHMARKS: dict[str, Benchmark] = {
    "digits": Benchmark("digits", "cnn_small", TeacherRecipe(), 600, 20, lambda cache: load_digits_split(),
                        lambda latent, ngf: Generator(latent, channels=1, img_size=8, ngf=ngf), _digits_shared,
                        augment=_shift_digits),
    "mnist1d": Benchmark("mnist1d", "cnn1d_small", TeacherRecipe(arch="cnn1d", epochs=20), 1000, 20, load_mnist1d,
                         lambda latent, ngf: SignalGenerator(latent, 40, ngf), _mnist1d_shared),
}


def benchmark(name: str) -> Benchmark:
    """The embedded benchmark called ``name`` (``ValueError`` naming the others)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]


class ShuffledBatches:
    """An embedded teacher's batches: the training split shuffled each epoch from one seeded stream ``rng``,
    augmented where the benchmark says, moved to ``device``."""

    def __init__(self, data: LabelledSplit, batch_size: int, seed: int, device: torch.device,
                 augment: Callable[[Tensor, torch.Generator], Tensor] | None) -> None:
        self.x, self.y, self.batch_size = data.x_train, data.y_train, batch_size
        self.device, self.augment = device, augment
        self.rng = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(len(self.y), generator=self.rng)
        for i in range(0, len(order), self.batch_size):
            idx = order[i: i + self.batch_size]
            x = self.x[idx] if self.augment is None else self.augment(self.x[idx], self.rng)
            yield x.to(self.device), self.y[idx].to(self.device)


def teacher_training(model: nn.Module, data: LabelledSplit, settings: TeacherRecipe, device: torch.device,
                     augment: Callable[[Tensor, torch.Generator], Tensor] | None) -> TeacherTraining:
    """A benchmark teacher's recipe for the one teacher trainer: Adam, a cosine schedule over the epochs, the
    batch-mean loss, one process (it fills a cache)."""
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs)
    return TeacherTraining(model, ShuffledBatches(data, settings.batch_size, settings.seed, device, augment),
                           optimizer, scheduler, EpochRecipe(schedule_per_batch=False, batch_mean_loss=True),
                           ranks=Ranks())


def teacher_path(bench: Benchmark, settings: TeacherRecipe, cache_dir: Path) -> Path:
    """Where the teacher of ``settings`` on ``bench`` is cached."""
    key_data = {"benchmark": bench.name, **dataclasses.asdict(settings)}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir / f"{bench.name}_teacher_{settings.arch}_{key}.pt"


def cached_teacher(bench: Benchmark, data: LabelledSplit, cache_dir: Path, device: torch.device, *,
                   settings: TeacherRecipe | None = None, progress: bool = False) -> tuple[nn.Module, float]:
    """The benchmark's teacher (``settings``: another recipe or seed) from ``cache_dir``, trained first when it
    is not there; returns it (eval mode) and its test accuracy. An interrupted training leaves a checkpoint
    beside the cache file and continues from it on the next call."""
    settings = settings if settings is not None else bench.teacher
    path = teacher_path(bench, settings, cache_dir)
    with torch.random.fork_rng(devices=[]):  # the recipe's seed decides, and the caller's stream is left alone
        torch.manual_seed(settings.seed)
        model = build_model(settings.arch, num_classes=10, in_channels=1)
    if path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        return model.to(device).eval(), float(state["test_accuracy"])
    run = teacher_training(model, data, settings, device, bench.augment)
    folder = path.with_name(path.stem + "-checkpoints")
    latest = latest_checkpoint(folder)
    if latest is not None:
        run.load_state_dict(load_file(latest, "a benchmark teacher checkpoint"))
    loop.run(run, settings.epochs - run.iteration, checkpoint_dir=folder, progress=progress,
             name=f"teacher {settings.arch}", unit="epoch", resume_hint="the same command")
    model.eval()
    acc = accuracy(model, data.x_test, data.y_test)
    atomic_save({"model": model.state_dict(), "test_accuracy": acc, "settings": dataclasses.asdict(settings)},
                path)
    shutil.rmtree(folder, ignore_errors=True)
    return model, acc
