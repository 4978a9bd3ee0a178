"""``lrwa-fast check-teacher``: before distilling, a teacher file's test accuracy on the user's data, beside the
accuracy its code base publishes for it, with what was recognised (layout, architecture, normalisation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import Normalize, load_images
from ..data.images import image_set
from ..models import TeacherFileError, load_teacher
from ..models.teacher_file import ArchitectureMismatch
from ..runtime.distributed import resolve_device
from ..runtime.metrics import accuracy
from .distill import check_trained_on, teacher_normalisation, teacher_summary


def check_teacher(path: str | Path, dataset: str, data: str | Path, *, arch: str | None = None,
                  mean: tuple[float, float, float] | None = None, std: tuple[float, float, float] | None = None,
                  allow_pickle: bool = False, device: str = "auto", batch: int = 500) -> dict[str, Any]:
    """Load the teacher in ``path`` (any supported layout), score it on ``dataset``'s test split read from
    ``data`` with the normalisation it was trained with (:func:`~lrwa_fast.apps.distill.teacher_normalisation`),
    and return what a report needs; writes nothing."""
    spec = image_set(dataset)
    try:
        teacher = load_teacher(path, arch, allow_pickle=allow_pickle)
    except ArchitectureMismatch as err:
        raise TeacherFileError(f"{err}; leave --arch out, or give --arch {err.found}") from None
    if (teacher.num_classes, teacher.in_channels) != (spec.num_classes, 3):
        raise ValueError(f"teacher {str(path)!r} is a {teacher.num_classes}-class {teacher.arch} of "
                         f"{teacher.in_channels} input channels; {dataset} has {spec.num_classes} classes of RGB "
                         f"images")
    check_trained_on(teacher, dataset)
    normalisation = teacher_normalisation(teacher, dataset, mean, std)
    test = load_images(dataset, data, train=False)
    on = resolve_device(device)
    measured = accuracy(teacher.model.to(on), test.x_test, test.y_test, batch,
                        transform=Normalize(normalisation["mean"], normalisation["std"]))
    return {"dataset": dataset, "test_images": len(test.y_test), "test_accuracy": measured,
            "teacher": teacher_summary(teacher, dataset), "normalisation": normalisation, "device": str(on)}


def format_check(report: dict[str, Any]) -> str:
    """The check as a few lines: what the file is, how it is normalised, its accuracy against the published one."""
    teacher, norm = report["teacher"], report["normalisation"]
    lines = [f"{teacher['checkpoint']}: {teacher['arch']}, {teacher['num_classes']} classes; layout "
             f"{teacher['layout']} ({teacher['wrapper']} wrapper, {teacher['names']} names): {teacher['code_bases']}",
             f"normalisation: mean {norm['mean']} std {norm['std']} ({norm['from']})",
             f"test accuracy on {report['dataset']} ({report['test_images']} images): "
             f"{100 * report['test_accuracy']:.2f}%"]
    published = teacher["published_accuracy"]
    if published is not None:
        lines.append(f"published: {published:.2f}% ({teacher['published_source']}); ours "
                     f"{100 * report['test_accuracy'] - published:+.2f} points")
    else:
        lines.append("published: no accuracy is known for this file's code base and architecture on "
                     f"{report['dataset']}")
    return "\n".join(lines)
