"""Images per second of the CIFAR job: teacher training and LRwA / DFAD preset iterations.

Synthetic CIFAR-format data (random pixels) and a randomly initialised teacher, so it runs anywhere;
throughput does not depend on the pixels. Everything goes through the same code as the commands
(`train_teacher`, `resolve_preset` + `run_distill`), data loading and evaluation included: the
teacher's figure includes one test-split evaluation per epoch, the presets' figure excludes the
evaluation time, which is reported separately as a share of the wall time.

  python benchmarks/cifar_throughput.py                        # full size (a GPU)
  python benchmarks/cifar_throughput.py --small                # reduced size (CPU)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from lrwa_fast.apps.distill import run_distill
from lrwa_fast.apps.presets import resolve_preset
from lrwa_fast.apps.teacher import TeacherConfig, save_teacher, train_teacher
from lrwa_fast.data.images import image_set
from lrwa_fast.models import build_model
from lrwa_fast.testing.cifar_files import write_synthetic_cifar

FULL = {"teacher_batch": 128, "teacher_steps": 390, "batch": 512, "iterations": 3, "student_steps": 10,
        "test_images": 10000}
SMALL = {"teacher_batch": 32, "teacher_steps": 4, "batch": 32, "iterations": 2, "student_steps": 2,
         "test_images": 256}


def teacher_rate(root: Path, size: dict, precision: str, device: str) -> dict:
    """ResNet-34 teacher training for ``teacher_steps`` batches (one epoch: 390 at full size, as CIFAR's
    50,000 images) at ``precision``."""
    cfg = TeacherConfig(dataset="cifar10", arch="resnet34", epochs=1, batch_size=size["teacher_batch"],
                        precision=precision, device=device)
    report = train_teacher(cfg, root, root / f"teacher-{precision}", progress=False)
    return {"what": f"teacher resnet34 {precision}", "batch": cfg.batch_size, "images": report["train_images"],
            "images_per_second": report["images_per_second"], "wall_time_s": report["wall_time_s"]}


def random_teacher(root: Path, dataset: str) -> Path:
    """A randomly initialised (seed 0) ResNet-34 teacher for ``dataset``, saved in ``root``."""
    torch.manual_seed(0)
    return save_teacher(root / f"{dataset}-teacher.pt", build_model("resnet34", image_set(dataset).num_classes),
                        "resnet34", dataset)


def preset_rate(root: Path, name: str, teacher: Path, size: dict, device: str) -> dict:
    """A preset at full model size for a few iterations (batch and steps from ``size``)."""
    overrides = [f"trainer.batch_size={size['batch']}", f"trainer.iterations={size['iterations']}",
                 f"trainer.student_steps={size['student_steps']}", f"trainer.device={device}", "eval_every=1"]
    if not name.endswith("-dfad"):
        overrides.append("trainer.memory_start=0")  # retain from the second iteration on
    spec = resolve_preset(name, data=str(root), teacher=str(teacher), out=str(root / name), overrides=overrides)
    run_distill(spec, progress=False)
    report = json.loads((root / name / "report.json").read_text())
    return {"what": name, "batch": size["batch"], "iterations": size["iterations"],
            "student_steps": size["student_steps"], "images_per_second": report["images_per_second"],
            "eval_fraction": report["eval_fraction"], "wall_time_s": report["wall_time_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="reduced sizes for a CPU")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--presets", default="cifar10-resnet34-resnet18,cifar10-resnet34-resnet18-dfad,"
                                             "cifar100-resnet34-resnet18,cifar100-resnet34-resnet18-dfad")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    size = SMALL if args.small else FULL
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for dataset in ("cifar10", "cifar100"):
            write_synthetic_cifar(root, dataset, train=size["teacher_batch"] * size["teacher_steps"],
                                  test=size["test_images"])
        for precision in args.precisions.split(","):
            rows.append(teacher_rate(root, size, precision, args.device))
            print(json.dumps(rows[-1]), flush=True)
        teachers: dict[str, Path] = {}  # one per dataset, built before its first preset
        for name in args.presets.split(","):
            dataset = name.split("-")[0]
            if dataset not in teachers:
                teachers[dataset] = random_teacher(root, dataset)
            rows.append(preset_rate(root, name, teachers[dataset], size, args.device))
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"size": size, "torch": torch.__version__, "threads":
                                               torch.get_num_threads(), "time": time.strftime("%F %T"),
                                               "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
