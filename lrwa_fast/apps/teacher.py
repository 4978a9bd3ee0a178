"""``lrwa-fast teacher``: train a CIFAR teacher with a standard recipe, on the device end to end.

The default recipe is the one the DFKD peers train their teachers with (DFAD, VainF/Data-Free-Adversarial-
Distillation: SGD lr 0.1, momentum 0.9, weight decay 5e-4, 200 epochs, batch 128, random 32×32 crop with
padding 4 and horizontal flip), with a cosine schedule (stepped per batch) in place of DFAD's ×0.1 every 80
epochs. ``teacher.pt`` holds the weights with the architecture, dataset and the normalisation the teacher
was trained with, so distillation evaluates with the same statistics.

Under torchrun the training is data-parallel: ``batch_size`` is global, each rank computes the loss
on its rows of every batch, gradients are averaged in one all-reduce, BatchNorm statistics are
local and averaged before each evaluation and checkpoint; rank 0 evaluates and writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..choices import SCHEDULES
from ..config import OptimizerConfig, from_dict, parse_override, to_dict
from ..data import CifarData, DeviceLoader, Normalize, image_set, load_images
from ..models import build_model
from ..optim import build_optimizer
from ..rules import SettingsError, in_interval, non_negative, one_of, positive
from ..runtime import checkpoint as ckpt
from ..runtime.distributed import Ranks, resolve_device
from ..runtime.metrics import accuracy
from ..runtime.precision import autocast
from ..training import loop
from .reports import environment, write_report

TEACHER_FILE = "teacher.pt"
RECIPE_SOURCE = ("DFAD's teacher recipe (VainF/Data-Free-Adversarial-Distillation): SGD 0.1, momentum 0.9, wd 5e-4, "
                 "200 epochs, batch 128, crop with padding 4 + horizontal flip (none on SVHN, as the DataFree code "
                 "bases train theirs); cosine schedule instead of its x0.1 every 80 epochs")
TEACHER_PRECISIONS = ("fp32", "bf16")  # fp16 would need loss scaling here


@dataclass
class TeacherConfig:
    """How a teacher is trained; the defaults are the standard recipe (module docstring)."""

    dataset: str = "cifar10"  # "cifar10" | "cifar100" | "svhn" | "tiny_imagenet" (lrwa_fast.data.IMAGE_SETS)
    arch: str = "resnet34"  # any name of lrwa_fast.models.MODELS
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "cosine" (to 0 over all batches) | "constant"
    crop_padding: int = 4  # random crop from the zero-padded image; 0 = off
    flip: bool = True  # random horizontal flip
    precision: str = "fp32"  # "fp32" | "bf16" (autocast; weights stay fp32)
    eval_batch_size: int = 1000
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    keep_checkpoints: int = 2  # per-epoch checkpoints kept in DIR/checkpoints

    # Fields that may change when resuming: they do not change what is computed.
    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"device", "keep_checkpoints", "eval_batch_size"})


def validate_teacher(cfg: TeacherConfig) -> None:
    """Raise ``ValueError`` naming every out-of-range or unknown setting."""
    problems = [*positive(cfg, "epochs", "batch_size", "eval_batch_size", "keep_checkpoints"),
                *non_negative(cfg, "lr", "weight_decay", "crop_padding"),
                *in_interval(cfg, "momentum", 0, 1, closed=False),
                *one_of(cfg, schedule=SCHEDULES, precision=TEACHER_PRECISIONS)]
    if problems:
        raise SettingsError("teacher configuration", problems)
    image_set(cfg.dataset)


@dataclass(frozen=True)
class EpochRecipe:
    """How a teacher's epoch goes, where recipes differ: when the schedule steps, the loss's reduction, the
    precision of the forwards, how many checkpoints are kept."""

    # True: the schedule steps every batch (CIFAR's cosine); False: every epoch (the embedded teachers')
    schedule_per_batch: bool
    # True: the batch's mean loss (the embedded teachers', one process); False: each rank's sum over its
    # rows, scaled so that the ranks' mean is the batch's mean (data-parallel)
    batch_mean_loss: bool = False
    precision: str = "fp32"  # of the forwards (autocast); "bf16" keeps the weights in fp32
    keep: int = 1  # checkpoints kept


class Batches(Protocol):
    """A teacher's batches: ``(x, y)`` on the model's device, one epoch per iteration, drawn from ``rng``
    (checkpointed with the training)."""

    rng: torch.Generator

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]: ...

    def __len__(self) -> int: ...


class TeacherTraining:
    """The one teacher trainer, for CIFAR (:func:`cifar_training`) and the embedded benchmarks alike: a
    :class:`~lrwa_fast.training.loop.Job` whose step is one epoch of cross-entropy on the recipe's
    ``batches`` (an iterable of ``(x, y)`` with its random stream ``rng``), with its ``optimizer`` and
    ``scheduler``. Under torchrun each rank computes the loss on its rows of every batch, the gradients are
    averaged in one all-reduce and the BatchNorm statistics after each epoch; rank 0 writes the checkpoints.
    ``test`` (optional) scores the model after an epoch (:meth:`evaluate`); ``identity`` is written in every
    checkpoint, and its ``config`` must match on resume (``resumable`` keys aside)."""

    def __init__(self, model: nn.Module, batches: Batches, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler,
                 recipe: EpochRecipe, *, ranks: Ranks, test: Callable[[nn.Module], float] | None = None,
                 identity: dict[str, Any] | None = None, resumable: frozenset[str] = frozenset()) -> None:
        self.model, self.batches, self.optimizer, self.scheduler = model, batches, optimizer, scheduler
        self.recipe, self.ranks, self.test = recipe, ranks, test
        self.identity, self.resumable = identity or {}, resumable
        self.device = next(model.parameters()).device
        self.epoch, self.history = 0, []

    @property
    def iteration(self) -> int:
        """The loop's step count: epochs done."""
        return self.epoch

    def step(self) -> dict[str, float]:
        """One epoch; recorded in :attr:`history` (its test accuracy by :meth:`evaluate`, on rank 0)."""
        start = time.perf_counter()
        loss = self.train_epoch()
        self.epoch += 1
        self.history.append({"epoch": self.epoch, "loss": loss, "test_accuracy": None,
                             "seconds": time.perf_counter() - start})
        return {"loss": loss}

    def evaluate(self) -> dict[str, float]:
        """The test score after the epoch just trained, recorded in its history entry."""
        if self.test is None:
            raise ValueError("this teacher training was given no test to evaluate with")
        self.model.eval()
        self.history[-1]["test_accuracy"] = self.test(self.model)
        return {"test_accuracy": self.history[-1]["test_accuracy"]}

    def write_checkpoint(self, folder: str | Path) -> Path:
        """``folder/ckpt-<epoch>.pt`` (rank 0 writes; every rank returns its path), the newest kept."""
        return self.ranks.from_main(lambda: ckpt.save_rotating(self.state_dict(), folder, self.epoch,
                                                               self.recipe.keep))

    def train_epoch(self) -> float:
        """One pass over the batches; returns the mean loss."""
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        total = torch.zeros((), device=self.device)
        for x, y in self.batches:
            rows = self.ranks.rows(len(y))
            with autocast(self.recipe.precision, self.device):
                logits = self.model(x[rows])
            loss = self._loss(logits.float(), y[rows], len(y))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for p, g in zip(params, self.ranks.average([p.grad for p in params])):
                p.grad = g
            self.optimizer.step()
            if self.recipe.schedule_per_batch:
                self.scheduler.step()
            total += loss.detach()
        if not self.recipe.schedule_per_batch:
            self.scheduler.step()
        self.ranks.average_buffers_([self.model])
        return float(self.ranks.average([total])[0]) / len(self.batches)

    def _loss(self, logits: Tensor, y: Tensor, batch: int) -> Tensor:
        if self.recipe.batch_mean_loss:
            return F.cross_entropy(logits, y)
        # Σ over my rows / rows in the batch × W: the mean over the ranks is the batch's mean loss
        return F.cross_entropy(logits, y, reduction="sum") * (self.ranks.world_size / batch)

    def state_dict(self) -> dict[str, Any]:
        return {**self.identity, "epoch": self.epoch, "history": self.history, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "loader_rng": self.batches.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` after checking it was made with the same recipe (``CheckpointError``
        listing what differs, before anything changes)."""
        if "config" in self.identity:
            diff = ckpt.config_diff(state["config"], self.identity["config"], ignore=self.resumable)
            if diff:
                raise ckpt.CheckpointError("; ".join(diff))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.batches.rng.set_state(state["loader_rng"] if "loader_rng" in state else state["rng"])  # "rng": 0.4's
        self.epoch, self.history = int(state["epoch"]), list(state.get("history", []))  # embedded checkpoints


def cifar_training(cfg: TeacherConfig, data: CifarData) -> TeacherTraining:
    """The CIFAR recipe of ``cfg`` on ``data``: SGD with its schedule stepped per batch, augmented normalised
    batches on the device, one test-split evaluation per epoch."""
    device = resolve_device(cfg.device)
    normalize = Normalize(data.spec.mean, data.spec.std)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, data.spec.num_classes).to(device)
    loader = DeviceLoader(data.x_train, data.y_train, cfg.batch_size, normalize, device=device,
                          padding=cfg.crop_padding, flip=cfg.flip, seed=cfg.seed)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    recipe = OptimizerConfig("sgd", cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                             schedule=cfg.schedule)
    optimizer, scheduler = build_optimizer(model.parameters(), recipe, cfg.epochs * len(loader))
    return TeacherTraining(model, loader, optimizer, scheduler,
                           EpochRecipe(schedule_per_batch=True, precision=cfg.precision, keep=cfg.keep_checkpoints),
                           ranks=Ranks.current(),
                           test=lambda m: accuracy(m, x_test, y_test, cfg.eval_batch_size, normalize),
                           identity={"format": "lrwa_fast teacher checkpoint 1", "config": to_dict(cfg)},
                           resumable=TeacherConfig.RESUMABLE)


def train_teacher(cfg: TeacherConfig, data_path: str | Path, out: str | Path, *, progress: bool = True,
                  resume: bool = False) -> dict[str, Any]:
    """Train (or, with ``resume``, continue from ``out/checkpoints``); write ``teacher.pt`` and ``report.json``.

    Checkpoints are written after every epoch; SIGINT/SIGTERM stop after the current epoch's checkpoint
    (:class:`~lrwa_fast.TrainingInterrupted`). Returns the report.
    """
    validate_teacher(cfg)
    out = Path(out)
    data = load_images(cfg.dataset, data_path)
    run = cifar_training(cfg, data)
    main = run.ranks.is_main
    folder = out / "checkpoints"
    latest = ckpt.latest_checkpoint(folder) if resume else None
    if latest is not None:
        try:
            run.load_state_dict(ckpt.load_file(latest, "a teacher checkpoint"))
        except ckpt.CheckpointError as err:
            raise ckpt.CheckpointError(f"cannot resume from {str(latest)!r}: {err}") from None
    start, first_epoch = time.perf_counter(), run.epoch
    loop.run(run, cfg.epochs - run.epoch, evaluate=run.evaluate, checkpoint_dir=folder, checkpoint_every=1,
             progress=progress, name=f"teacher {cfg.arch}", unit="epoch", resume_hint="--resume")
    wall = time.perf_counter() - start
    if not main:
        return {}
    return _finish(cfg, data, run, out, wall, (run.epoch - first_epoch) * len(data.y_train), latest)


def _finish(cfg: TeacherConfig, data: CifarData, run: TeacherTraining, out: Path, wall: float, images: int,
            resumed_from: Path | None) -> dict[str, Any]:
    """Write ``teacher.pt`` (weights + what distillation needs) and ``report.json``; return the report."""
    spec = data.spec
    final = run.history[-1]["test_accuracy"]
    save_teacher(out / TEACHER_FILE, run.model, cfg.arch, cfg.dataset, test_accuracy=final, recipe=to_dict(cfg))
    eval_note = "one test-split evaluation per epoch included"
    report = {"kind": "teacher", "arch": cfg.arch, "dataset": cfg.dataset, "test_accuracy": final,
              "best_test_accuracy": max(e["test_accuracy"] for e in run.history), "epochs": run.history,
              "recipe": to_dict(cfg), "recipe_source": RECIPE_SOURCE,
              "normalisation": {"mean": list(spec.mean), "std": list(spec.std)},
              "train_images": len(data.y_train), "test_images": len(data.y_test),
              "wall_time_s": wall, "images_per_second": images / wall if wall > 0 else 0.0,
              "images_per_second_note": eval_note, "resumed_from": str(resumed_from) if resumed_from else None,
              **environment()}
    write_report(out, report)
    return report


def save_teacher(path: str | Path, model: nn.Module, arch: str, dataset: str, *, test_accuracy: float | None = None,
                 recipe: dict[str, Any] | None = None) -> Path:
    """Write a ``teacher.pt``: the weights, architecture, dataset and its normalisation (what ``distill`` reads)."""
    spec = image_set(dataset)
    return ckpt.atomic_save({"format": "lrwa_fast teacher 1", "model": model.state_dict(), "arch": arch,
                             "dataset": dataset, "num_classes": spec.num_classes, "in_channels": 3,
                             "mean": list(spec.mean), "std": list(spec.std), "test_accuracy": test_accuracy,
                             "recipe": recipe}, path)


# Where a dataset's standard recipe departs from the defaults, as the DataFree code bases train their teachers
# (zju-vipa/Fast-Datafree registry.py get_dataset): SVHN's digits are neither cropped nor mirrored; Tiny-ImageNet's
# 64x64 images are cropped with padding 4 and mirrored, as CIFAR's.
DATASET_RECIPES: dict[str, dict[str, Any]] = {"svhn": {"crop_padding": 0, "flip": False}}


def load_teacher_config(overrides: list[str], **given: Any) -> TeacherConfig:
    """Defaults, then the dataset's recipe (:data:`DATASET_RECIPES`), then ``key=value`` overrides, then the
    explicitly given options that are not ``None``."""
    explicit = {**dict(parse_override(item) for item in overrides),
                **{k: v for k, v in given.items() if v is not None}}
    return from_dict(TeacherConfig, {**DATASET_RECIPES.get(explicit.get("dataset", TeacherConfig.dataset), {}),
                                     **explicit})

