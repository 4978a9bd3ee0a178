"""The runtime every part of a trainer runs under, built once and handed to the parts that need it: the
device, the data-parallel ranks, the precision (autocast, and whether losses are scaled), the non-finite
guard, the metric accumulator and the fused-kernel backend."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from ..choices import KERNEL_BACKENDS, NONFINITE_POLICIES, PRECISIONS
from .distributed import DEFAULT_TIMEOUT_S, Ranks, resolve_device
from .guard import NonFiniteGuard
from .metrics import MetricAccumulator
from .precision import autocast


@dataclass(frozen=True, kw_only=True)
class RuntimeSettings:
    """What the runtime is built from (the config's ``device``, ``backend``, ``precision``, ``nonfinite`` and
    ``dist_timeout``)."""

    device: str = "auto"  # "auto": this process's GPU when there is one, else the CPU
    backend: str = "auto"  # fused kernels: "auto" ($LRWA_FAST_BACKEND, else by device) | "torch" | "triton"
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16" (bf16 plus loss scaling)
    nonfinite: str = "raise"  # a non-finite loss or gradient: "raise" | "skip"
    dist_timeout: float = DEFAULT_TIMEOUT_S  # seconds a collective waits: the process group the CLI initialises

    def __post_init__(self) -> None:
        problems = [f"{name}={value!r} (expected one of {options})" for name, value, options in
                    (("backend", self.backend, KERNEL_BACKENDS), ("precision", self.precision, PRECISIONS),
                     ("nonfinite", self.nonfinite, NONFINITE_POLICIES)) if value not in options]
        if not self.dist_timeout > 0:
            problems.append(f"dist_timeout={self.dist_timeout!r} (must be > 0)")
        if problems:
            raise ValueError("invalid RuntimeSettings: " + "; ".join(problems))


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
