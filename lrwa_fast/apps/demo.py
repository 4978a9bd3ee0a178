"""The embedded demo: data-free distillation on scikit-learn's bundled handwritten digits.

A teacher CNN is trained on a fixed split of the 1,797 real 8×8 digit images (cached on disk),
then students are distilled from it without data, with LRwA and with DFAD, for the same
iterations and seeds, and evaluated on the real test split as they train.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DFADConfig, GeneratorLossWeights, LRwAConfig, OptimizerConfig, from_dict, to_dict
from ..models import Generator, build_model
from ..runtime.checkpoint import atomic_save, atomic_write_text, latest_checkpoint, load_file, save_rotating
from ..runtime.distributed import Ranks
from ..runtime.metrics import accuracy, accuracy_evaluator, curve_statistics
from ..training import Trainer, loop, trainer_class
from .reports import STAT_KEYS, STAT_SCALE, mean_std, plot_curves, summarize

TEACHER_ARCH, STUDENT_ARCH = "cnn", "cnn_small"
STATS_FROM = 0.5  # μ, σ² and largest drop over the second half of the evaluations


@dataclass
class DigitsData:
    """Normalised tensors of the fixed train/test split (images (N, 1, 8, 8), labels (N,))."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def load_digits_split(test_fraction: float = 0.25, seed: int = 0) -> DigitsData:
    """The fixed stratified split of scikit-learn's digits, standardised with train statistics."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(range(len(y)), test_size=test_fraction, random_state=seed,
                                           stratify=data.target)
    x_train, x_test = x[idx_train], x[idx_test]
    mean, std = x_train.mean(), x_train.std()
    return DigitsData((x_train - mean) / std, y[idx_train], (x_test - mean) / std, y[idx_test])


@dataclass
class TeacherSettings:
    """How the demo's teacher is trained (all of it enters the cache key)."""

    arch: str = TEACHER_ARCH
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0


class TeacherTraining:
    """The demo teacher's training, a :class:`~lrwa_fast.training.loop.Job` whose step is one epoch: Adam,
    a cosine schedule over the epochs, shuffled batches with random shifts from one seeded stream."""

    def __init__(self, model: nn.Module, data: DigitsData, settings: TeacherSettings, device: torch.device) -> None:
        self.model, self.data, self.settings, self.device = model, data, settings, device
        self.ranks = Ranks()  # one process fills the cache
        torch.manual_seed(settings.seed)
        model.to(device).train()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, settings.epochs)
        self.rng = torch.Generator().manual_seed(settings.seed)
        self.iteration = 0  # epochs done

    def step(self) -> dict[str, float]:
        """One epoch over the training split."""
        data, batch = self.data, self.settings.batch_size
        order = torch.randperm(len(data.y_train), generator=self.rng)
        for i in range(0, len(order), batch):
            idx = order[i: i + batch]
            x = _augment(data.x_train[idx], self.rng).to(self.device)
            loss = F.cross_entropy(self.model(x), data.y_train[idx].to(self.device))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        return {"loss": float(loss.detach())}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": self.rng.get_state(), "epoch": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.rng.set_state(state["rng"])
        self.iteration = int(state["epoch"])

    def write_checkpoint(self, folder: str | Path) -> Path:
        """``folder/ckpt-<epoch>.pt``, the only one kept."""
        return save_rotating(self.state_dict(), folder, self.iteration, keep=1)


def cached_teacher(data: DigitsData, settings: TeacherSettings, cache_dir: Path,
                   device: torch.device, progress: bool = False) -> tuple[nn.Module, float]:
    """The demo's teacher from ``cache_dir``, trained first when it is not there; returns it (eval mode) and
    its test accuracy. An interrupted training leaves a checkpoint beside the cache file and continues
    from it on the next call."""
    key = hashlib.sha256(json.dumps(dataclasses.asdict(settings), sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir / f"digits_teacher_{settings.arch}_{key}.pt"
    model = build_model(settings.arch, num_classes=10, in_channels=1)
    if path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        return model.to(device).eval(), float(state["test_accuracy"])
    run = TeacherTraining(model, data, settings, device)
    folder = path.with_name(path.stem + "-checkpoints")
    latest = latest_checkpoint(folder)
    if latest is not None:
        run.load_state_dict(load_file(latest, "a demo teacher checkpoint"))
    loop.run(run, settings.epochs - run.iteration, checkpoint_dir=folder, progress=progress,
             name=f"teacher {settings.arch}", unit="epoch", resume_hint="the same command")
    model.eval()
    acc = accuracy(model, data.x_test, data.y_test)
    atomic_save({"model": model.state_dict(), "test_accuracy": acc, "settings": dataclasses.asdict(settings)},
                path)
    shutil.rmtree(folder, ignore_errors=True)
    return model, acc


def _augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random shifts of up to one pixel (zero padding in normalised units = the image minimum)."""
    padded = F.pad(x, (1, 1, 1, 1), value=float(x.min()))
    dx, dy = (int(v) for v in torch.randint(0, 3, (2,), generator=gen))
    return padded[:, :, dy: dy + 8, dx: dx + 8]


def demo_lrwa_config() -> LRwAConfig:
    """The LRwA settings of the demo (chosen from the ablation, see README)."""
    return LRwAConfig(**_shared_settings(), memory_capacity=2048, memory_batch_size=32,
                      memory_insert_size=32, memory_insert_every=1, memory_start=0,
                      memory_policy="reservoir", inner_lr=0.05, meta_mode="exact", retain_weight=0.25,
                      bn_mode="acquire")


def demo_dfad_config() -> DFADConfig:
    """DFAD with the same shared settings as the LRwA run."""
    return DFADConfig(**_shared_settings())


def _shared_settings() -> dict[str, Any]:
    return dict(batch_size=64, latent_dim=64, iterations=600, generator_steps=1, student_steps=5,
                loss="kl", adversarial_loss="kl",
                generator_weights=GeneratorLossWeights(adversarial=1.0),
                student_optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4),
                generator_optimizer=OptimizerConfig(name="adam", lr=1e-3, weight_decay=0.0),
                device="cpu")


@dataclass
class DemoSettings:
    """Everything a demo run depends on; written into ``report.json``."""

    iterations: int = 600
    eval_every: int = 20
    seeds: int = 1
    methods: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "LRwA": {"method": "lrwa", **to_dict(demo_lrwa_config())},
        "DFAD": {"method": "dfad", **to_dict(demo_dfad_config())}})
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    generator_ngf: int = 32


def distill_once(method: str, method_cfg: dict[str, Any], teacher: nn.Module, data: DigitsData,
                 settings: DemoSettings, seed: int, progress: bool,
                 run_dir: Path | None = None) -> dict[str, Any]:
    """One data-free run of ``method`` with ``seed``; returns its accuracy curve and wall time.

    With ``run_dir`` the run checkpoints there every ``eval_every`` iterations and resumes from
    the newest checkpoint it finds.
    """
    overrides: dict[str, Any] = {"seed": seed, "iterations": settings.iterations}
    if run_dir is not None:
        overrides |= {"checkpoint_dir": str(run_dir), "checkpoint_every": settings.eval_every}
    trainer_cls, cfg = method_config({**method_cfg, **overrides})
    torch.manual_seed(seed)
    student = build_model(STUDENT_ARCH, num_classes=10, in_channels=1)
    generator = Generator(cfg.latent_dim, channels=1, img_size=8, ngf=settings.generator_ngf)
    latest = latest_checkpoint(run_dir) if run_dir is not None else None
    if latest is not None:
        trainer = trainer_cls.load(latest, teacher, student, generator, cfg)
    else:
        trainer = trainer_cls(teacher, student, generator, cfg)
    start = time.perf_counter()
    history = trainer.train(evaluate=accuracy_evaluator(data.x_test, data.y_test),
                            eval_every=settings.eval_every, progress=progress)
    wall = time.perf_counter() - start
    curve = [e["accuracy"] for e in history["evaluations"]]
    return {"method": method, "seed": seed, "iterations": [e["iteration"] for e in history["evaluations"]],
            "accuracy": curve, "wall_time_s": wall, "resumed_from": str(latest) if latest else None,
            "stats": curve_statistics(curve, from_fraction=STATS_FROM),
            "stats_all": curve_statistics(curve)}


def _run_job(job: tuple[str, int, DemoSettings, Path, Path, bool]) -> dict[str, Any]:
    """Run (or resume, or reload when finished) one method/seed; results are written atomically."""
    method, seed, settings, out_dir, cache_dir, progress = job
    name = f"{method}-seed{seed}".replace(" ", "_").replace(",", "").replace("/", "_")
    result_path = out_dir / "runs" / f"{name}.json"
    ranks = Ranks.current()
    if ranks.from_main(result_path.exists):  # rank 0 decides: it alone writes the results
        return json.loads(result_path.read_text(encoding="utf-8"))
    data = load_digits_split()
    teacher, _ = cached_teacher(data, settings.teacher, cache_dir, torch.device("cpu"))
    result = distill_once(method, settings.methods[method], teacher, data, settings, seed, progress,
                          run_dir=out_dir / "checkpoints" / name)
    if ranks.is_main:
        atomic_write_text(json.dumps(result), result_path)
    return result


def _run_job_single_thread(job: tuple[str, int, DemoSettings, Path, Path, bool]) -> dict[str, Any]:
    torch.set_num_threads(1)
    return _run_job(job)


def run_demo(settings: DemoSettings, out_dir: Path, cache_dir: Path, progress: bool = True,
             resume: bool = False, jobs: int = 1) -> dict[str, Any]:
    """Train (or load) the teacher, distil every method for every seed; write report and plot.

    Finished runs are kept in ``out_dir/runs`` and unfinished ones checkpoint in
    ``out_dir/checkpoints``; ``resume=True`` reuses both, otherwise they are cleared first.
    ``jobs > 1`` runs that many processes with one thread each. Under torchrun every run is
    data-parallel over the ranks and rank 0 alone writes files.
    """
    if min(settings.iterations, settings.eval_every, settings.seeds) < 1:
        raise ValueError(f"iterations, eval_every and seeds must be >= 1, got {settings.iterations}, "
                         f"{settings.eval_every} and {settings.seeds}")
    ranks = Ranks.current()
    if jobs > 1 and ranks.enabled:
        raise ValueError("--jobs > 1 runs separate processes and cannot be combined with torchrun")
    with ranks.main_first("training the demo's teacher"):
        if not resume and ranks.is_main:
            for folder in ("runs", "checkpoints"):
                shutil.rmtree(out_dir / folder, ignore_errors=True)
        data = load_digits_split()
        _, teacher_acc = cached_teacher(data, settings.teacher, cache_dir, torch.device("cpu"), progress)
    work = [(m, s, settings, out_dir, cache_dir, progress and jobs == 1)
            for s in range(settings.seeds) for m in settings.methods]
    if jobs > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(jobs) as pool:
            runs = pool.map(_run_job_single_thread, work, chunksize=1)
    else:
        runs = []
        for i, job in enumerate(work):
            if progress:
                print(f"[{i + 1}/{len(work)}] {job[0]}, seed {job[1]}", flush=True)
            runs.append(_run_job(job))
    report = {"settings": to_dict(settings), "teacher": {"arch": settings.teacher.arch,
                                                        "test_accuracy": teacher_acc},
              "student_arch": STUDENT_ARCH, "stats_from_fraction": STATS_FROM,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "jobs": jobs,
              "runs": runs, "summary": summarize(runs)}
    if not ranks.is_main:
        return report
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(report, indent=2), out_dir / "report.json")
    plot_curves(runs, out_dir / "accuracy.png")
    return report


def format_table(report: dict[str, Any], reference: str = "DFAD") -> str:
    """The comparison table: mean ± std over seeds; Δμ against ``reference`` when present."""
    teacher = report["teacher"]
    frac = report["stats_from_fraction"]
    summary = report["summary"]
    ref = summary.get(reference, {}).get("mean", {}).get("mean")
    lines = [f"Teacher ({teacher['arch']}) test accuracy: {100 * teacher['test_accuracy']:.2f}%",
             f"Student: {report['student_arch']}; μ, σ² and largest drop over evaluations from "
             f"{int(100 * frac)}% of the run on; mean ± std over seeds",
             "", "| method | seeds | final acc % | best acc % | μ[acc] % | σ²[acc] ×1e-4 | largest drop % | "
             f"Δμ vs {reference} | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for method, stats in summary.items():
        cells = [mean_std(stats[k], STAT_SCALE[k]) for k in STAT_KEYS] + [mean_std(stats["wall_time_s"])]
        delta = "" if ref is None else f"{100 * (stats['mean']['mean'] - ref):+.2f}"
        lines.append(f"| {method} | {stats['final']['n']} | " + " | ".join(cells[:5]) + f" | {delta} | "
                     f"{cells[5]} |")
    return "\n".join(lines)


def method_config(method_cfg: dict[str, Any]) -> tuple[type[Trainer], DFADConfig]:
    """The trainer class named by a demo method's ``method`` key and its typed config (the other keys)."""
    fields = dict(method_cfg)
    if "method" not in fields:
        raise ValueError(f"a demo method needs a 'method' key ('lrwa' or 'dfad'), got keys {sorted(fields)}")
    cls = trainer_class(fields.pop("method"))
    return cls, from_dict(cls.config_class, fields)


def apply_method_overrides(settings: DemoSettings, overrides: list[str]) -> None:
    """Apply ``METHOD.key[.sub]=value`` overrides to the methods' configs, validating the result."""
    from ..config import parse_override, set_nested, validate

    for item in overrides:
        key, value = parse_override(item)
        method, _, path = key.partition(".")
        if not path or method not in settings.methods:
            raise ValueError(f"override {item!r} must look like METHOD.key=value with METHOD in "
                             f"{sorted(settings.methods)}")
        set_nested(settings.methods[method], path.split("."), value)
    for cfg in settings.methods.values():
        validate(method_config(cfg)[1])
