"""Metric accumulation without host-device synchronisation, and accuracy-curve statistics."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


class MetricAccumulator:
    """Sums 0-d tensors on their device; :meth:`read` returns the means with a single sync."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, values: dict[str, Tensor]) -> None:
        for key, value in values.items():
            value = value.detach().float()
            self._sums[key] = self._sums[key] + value if key in self._sums else value
            self._counts[key] = self._counts.get(key, 0) + 1

    def state_dict(self) -> dict[str, dict]:
        return {"sums": {k: v.cpu() for k, v in self._sums.items()}, "counts": dict(self._counts)}

    def load_state_dict(self, state: dict[str, dict], device: torch.device | None = None) -> None:
        """Restore :meth:`state_dict` onto ``device`` (default: the accumulator's own)."""
        where = device if device is not None else self.device
        self._sums = {k: v.to(where) for k, v in state["sums"].items()}
        self._counts = dict(state["counts"])

    def read(self) -> dict[str, float]:
        """Means since the last read (then reset)."""
        if not self._sums:
            return {}
        keys = list(self._sums)
        means = torch.stack([self._sums[k] / self._counts[k] for k in keys]).tolist()
        self._sums, self._counts = {}, {}
        return dict(zip(keys, means))


def curve_statistics(values: Sequence[float], *, from_fraction: float = 0.0) -> dict[str, float]:
    """Final, best, mean μ, variance σ² and largest drop between consecutive values of a curve.

    μ and σ² (population variance, as the paper's σ²[S_Acc]) and the largest drop use the values
    from ``from_fraction`` of the curve on (0 = all); final and best use the whole curve.
    """
    if not values:
        raise ValueError("no values to summarise")
    tail = list(values[min(len(values) - 1, math.floor(from_fraction * len(values))):])
    mean = sum(tail) / len(tail)
    drops = [a - b for a, b in itertools.pairwise(tail)]
    return {
        "final": float(values[-1]),
        "best": float(max(values)),
        "mean": float(mean),
        "variance": float(sum((v - mean) ** 2 for v in tail) / len(tail)),
        "max_drop": float(max([0.0, *drops])),
    }


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 512,
             transform: Callable[[Tensor], Tensor] | None = None) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``, in batches on the model's device (no gradients).

    ``transform`` (e.g. normalising uint8 images) is applied to each batch on the device; the count of
    correct predictions stays there until the end (one host sync).
    """
    device = next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.no_grad():
        for i in range(0, len(y), batch):
            inputs = x[i: i + batch].to(device, non_blocking=True)
            inputs = transform(inputs) if transform is not None else inputs
            correct += (model(inputs).argmax(dim=1) == y[i: i + batch].to(device)).sum()
    return int(correct) / len(y)


def accuracy_evaluator(x: Tensor, y: Tensor, batch: int = 512, transform: Callable[[Tensor], Tensor] | None = None
                       ) -> Callable[[nn.Module], dict[str, float]]:
    """An ``evaluate`` callback for :meth:`~lrwa_fast.Trainer.train`: ``{"accuracy": ...}``
    of the student on ``(x, y)`` (``transform`` as in :func:`accuracy`)."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {"accuracy": accuracy(model, x, y, batch, transform)}

    return evaluate
