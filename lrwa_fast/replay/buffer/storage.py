"""Device-resident storage of the replay memory: samples, teacher logits and insertion steps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TensorStorage:
    """Pre-allocated slots: ``x[slot]``, ``logits[slot]`` and ``inserted_at[slot]`` (-1 when empty)."""

    x: Tensor
    logits: Tensor
    inserted_at: Tensor

    @classmethod
    def allocate(cls, capacity: int, sample_shape: tuple[int, ...], num_classes: int,
                 device: torch.device, dtype: torch.dtype) -> TensorStorage:
        """Zeroed slots on ``device`` in ``dtype``, every ``inserted_at`` -1."""
        return cls(
            x=torch.zeros((capacity, *sample_shape), device=device, dtype=dtype),
            logits=torch.zeros((capacity, num_classes), device=device, dtype=dtype),
            inserted_at=torch.full((capacity,), -1, device=device, dtype=torch.int64),
        )

    def empty_sample(self, n: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Uninitialised ``(x, logits)`` outputs for a draw of ``n`` items in ``dtype``."""
        return (self.x.new_empty((n, *self.x.shape[1:]), dtype=dtype),  # on the storage's device
                self.logits.new_empty((n, self.logits.shape[1]), dtype=dtype))

    def tensors(self) -> dict[str, Tensor]:
        """The stored tensors by their state-dict names."""
        return {"x": self.x, "logits": self.logits, "inserted_at": self.inserted_at}
