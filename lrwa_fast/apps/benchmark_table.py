"""The benchmark table every recent DFKD paper reuses (CMI, Fast-Datafree): per CIFAR teacher → student pair, the
published teacher, student and data-free students' accuracies; and :class:`Preset`, a named setup with the source
of each setting (:mod:`.presets`, :mod:`.method_presets`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Published:
    """Top-1 accuracies (%) published for a teacher → student pair: the teacher and the student trained on the
    data, and the student each data-free method reaches (its final accuracy)."""

    teacher: float
    student: float
    methods: dict[str, float]
    source: str

    def describe(self) -> str:
        methods = ", ".join(f"{name} {value:.2f}" for name, value in self.methods.items())
        return (f"published: teacher {self.teacher:.2f}, student trained on the data {self.student:.2f}; "
                f"data-free students: {methods} ({self.source})")


@dataclass(frozen=True)
class Preset:
    """A named :class:`~lrwa_fast.apps.distill.DistillConfig` (as a dict), where each setting comes from, where
    it departs from its source, and the accuracies published for its teacher → student pair."""

    name: str
    description: str
    spec: dict[str, Any]
    sources: dict[str, str]
    notes: tuple[str, ...] = ()
    published: Published | None = None


_CMI = "zju-vipa/CMI README tables (9e79fa9)"
_FAST = "Fast-10: zju-vipa/Fast-Datafree README (0dcecbc)"
_METHODS = ("DAFL", "ZSKT", "DeepInv", "DFQ", "CMI", "Fast-10")


def _published(dataset: str, rows: dict[tuple[str, str], tuple[float, ...]]) -> dict[tuple[str, str, str], Published]:
    """The benchmark table of ``dataset``: per pair, teacher, student, then :data:`_METHODS`' students."""
    note = "" if dataset == "cifar10" else "; its CIFAR-100 cells for DAFL, ZSKT and DFQ differ from CMI's on the " \
                                          "VGG and WRN pairs: CMI's are given"
    return {(dataset, t, s): Published(v[0], v[1], dict(zip(_METHODS, v[2:])), f"{_CMI}; {_FAST}{note}")
            for (t, s), v in rows.items()}


PUBLISHED: dict[tuple[str, str, str], Published] = {
    **_published("cifar10", {
        ("resnet34", "resnet18"): (95.70, 95.20, 92.22, 93.32, 93.26, 94.61, 94.84, 94.05),
        ("vgg11", "resnet18"): (92.25, 95.20, 81.10, 89.46, 90.36, 90.84, 91.13, 90.53),
        ("wrn40_2", "wrn16_1"): (94.87, 91.12, 65.71, 83.74, 83.04, 86.14, 90.01, 89.29),
        ("wrn40_2", "wrn40_1"): (94.87, 93.94, 81.33, 86.07, 86.85, 91.69, 92.78, 92.51),
        ("wrn40_2", "wrn16_2"): (94.87, 93.95, 81.55, 89.66, 89.72, 92.01, 92.52, 92.45)}),
    **_published("cifar100", {
        ("resnet34", "resnet18"): (78.05, 77.10, 74.47, 67.74, 61.32, 77.01, 77.04, 74.34),
        ("vgg11", "resnet18"): (71.32, 77.01, 57.29, 34.72, 54.13, 68.32, 70.56, 67.44),
        ("wrn40_2", "wrn16_1"): (75.83, 65.31, 22.50, 30.15, 53.77, 54.77, 57.91, 54.02),
        ("wrn40_2", "wrn40_1"): (75.83, 72.19, 34.66, 29.73, 61.33, 62.92, 68.88, 63.91),
        ("wrn40_2", "wrn16_2"): (75.83, 73.56, 40.00, 28.44, 61.34, 59.01, 68.75, 65.12)}),
}
