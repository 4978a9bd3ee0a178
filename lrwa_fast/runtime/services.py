"""The runtime every part of a trainer runs under, built once and handed to the parts that need it: the
device, the data-parallel ranks, the precision (autocast, and whether losses are scaled), the non-finite
guard, the metric accumulator and the fused-kernel backend."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from ..choices import KERNEL_BACKENDS, NONFINITE_POLICIES, PRECISIONS
from ..config import default_of
from ..rules import check, one_of, positive
from .distributed import Ranks, resolve_device
from .guard import NonFiniteGuard
from .metrics import MetricAccumulator
from .precision import autocast


@dataclass(frozen=True, kw_only=True)
class RuntimeSettings:
    """What the runtime is built from (the config's ``device``, ``backend``, ``precision``, ``nonfinite`` and
    ``dist_timeout``)."""

    device: str = default_of("device")  # "auto": this process's GPU when there is one, else the CPU
    backend: str = default_of("backend")  # fused kernels: "auto" ($LRWA_FAST_BACKEND, else by device) | ...
    precision: str = default_of("precision")  # "fp32" | "bf16" | "fp16" (bf16 plus loss scaling)
    nonfinite: str = default_of("nonfinite")  # a non-finite loss or gradient: "raise" | "skip"
    dist_timeout: float = default_of("dist_timeout")  # seconds a collective waits (the CLI's process group)

    def __post_init__(self) -> None:
        check(self, [*one_of(self, backend=KERNEL_BACKENDS, precision=PRECISIONS, nonfinite=NONFINITE_POLICIES),
                     *positive(self, "dist_timeout")])


class Runtime:
    """The services of :class:`RuntimeSettings` on this process: ``device``, ``ranks`` (the default process
    group when one is initialised), ``guard``, ``metrics``, ``backend`` and the precision."""

    def __init__(self, settings: RuntimeSettings | None = None, *, ranks: Ranks | None = None) -> None:
        self.settings = settings if settings is not None else RuntimeSettings()
        self.ranks = ranks if ranks is not None else Ranks.current()
        self.device = resolve_device(self.settings.device)
        self.backend, self.precision = self.settings.backend, self.settings.precision
        self.guard = NonFiniteGuard(self.settings.nonfinite, defer=self.device.type == "cuda")
        self.metrics = MetricAccumulator(self.device)

    def autocast(self) -> AbstractContextManager[Any]:
        """The autocast context of the precision on the device (disabled for fp32)."""
        return autocast(self.precision, self.device)
