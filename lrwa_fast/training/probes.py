"""Forgetting measured directly: fixed batches of pseudo-samples kept from earlier in the run (probes),
and at each evaluation the student's agreement with the teacher's labels on each one.

Average forgetting (Chaudhry et al., ECCV 2018): at evaluation k, for each probe j evaluated before,
``f_kj = max_{l<k} a_lj − a_kj``; the mean over those probes (:func:`forgetting_at`). Forgetting is computed
here only: the trainer records :meth:`ForgettingProbes.scores` with each evaluation, and reports and studies read
:func:`forgetting_report`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..config import default_of
from ..rules import check, non_negative, positive


@dataclass(frozen=True, kw_only=True)
class ProbeSettings:
    """The forgetting probes (the config's ``probe_every`` and ``probe_size``)."""

    every: int = default_of("probe_every")  # iterations between probes kept; 0: the trainer keeps none
    size: int = default_of("probe_size")  # samples per probe

    def __post_init__(self) -> None:
        check(self, [*non_negative(self, "every"), *positive(self, "size")])


class ForgettingProbes:
    """Every ``every`` iterations (from iteration 0) keeps the first ``size`` samples of the iteration's last
    fresh batch with the teacher's labels (its argmax), unless a step of that iteration was skipped
    (:class:`ProbeSettings`)."""

    def __init__(self, settings: ProbeSettings, device: torch.device) -> None:
        if settings.every < 1:
            raise ValueError(f"forgetting probes need every >= 1 (0 keeps none), got {settings.every}")
        self.every, self.size, self.device = settings.every, settings.size, device
        self.seconds = 0.0  # spent measuring agreement: the probes' cost, kept across a resume
        self.x: list[Tensor] = []
        self.labels: list[Tensor] = []
        self.iterations: list[int] = []
        self._last: tuple[Tensor, Tensor] | None = None

    def observe(self, x: Tensor, t: Tensor) -> None:
        """Remember a fresh batch: the iteration's last one is the candidate probe."""
        self._last = (x, t)

    def end_of_iteration(self, iteration: int, *, clean: bool) -> None:
        """Keep a probe when one is due."""
        if iteration % self.every == 0 and clean and self._last is not None:
            x, t = self._last
            self.x.append(x[: self.size].detach().float().clone())
            self.labels.append(t[: self.size].argmax(dim=1))
            self.iterations.append(iteration)
        self._last = None

    @torch.no_grad()
    def agreement(self, student: nn.Module) -> list[float]:
        """The student's top-1 agreement with the teacher on each probe, oldest first (one host sync)."""
        if not self.x:
            return []
        start = time.perf_counter()
        hits = [(student(x).argmax(dim=1) == y).float().mean() for x, y in zip(self.x, self.labels)]
        agreement = torch.stack(hits).tolist()
        self.seconds += time.perf_counter() - start
        return agreement

    def scores(self, student: nn.Module, evaluations: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The student's agreement with each probe and its average forgetting given the earlier
        ``evaluations`` (the records these scores were added to)."""
        agreement = self.agreement(student)
        earlier = [e["probe_agreement"] for e in evaluations if "probe_agreement" in e]
        return {"probe_agreement": agreement, "forgetting": forgetting_at(earlier, agreement)}

    def state_dict(self) -> dict[str, Any]:
        return {"x": [x.cpu() for x in self.x], "labels": [y.cpu() for y in self.labels],
                "iterations": list(self.iterations), "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x = [x.to(self.device) for x in state["x"]]
        self.labels = [y.to(self.device) for y in state["labels"]]
        self.iterations = [int(i) for i in state["iterations"]]
        self.seconds = float(state["seconds"])


def forgetting_at(history: Sequence[Sequence[float]], current: Sequence[float]) -> float | None:
    """Average forgetting of ``current`` agreements given earlier evaluations' (Chaudhry et al., 2018): the
    mean over the probes evaluated before of best-so-far minus current agreement; ``None`` before any."""
    earlier = [max(row[j] for row in history if j < len(row)) - a for j, a in enumerate(current)
               if any(j < len(row) for row in history)]
    return sum(earlier) / len(earlier) if earlier else None


def forgetting_report(evaluations: list[dict[str, Any]], probes: ForgettingProbes | None) -> dict[str, Any]:
    """What the forgetting probes measured: the average forgetting at each evaluation (``None`` before a probe
    had been evaluated twice) and at the last, the agreement with each probe, and the probes' cost."""
    if probes is None:
        return {"forgetting": [], "average_forgetting": None, "forgetting_probes": "off (config probe_every=0)"}
    curve = [e.get("forgetting") for e in evaluations]
    return {"forgetting": curve, "average_forgetting": curve[-1] if curve else None,
            "probe_agreement": [e.get("probe_agreement", []) for e in evaluations],
            "forgetting_probes": {"every": probes.every, "size": probes.size, "iterations": probes.iterations,
                                  "seconds": probes.seconds}}
