"""A labelled train/test split held as tensors: what the embedded benchmarks evaluate on and train their
teachers with."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor


@dataclass
class LabelledSplit:
    """Inputs ``(N, *sample_shape)`` and integer labels ``(N,)`` of a training and a test split."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor

    @classmethod
    def standardised(cls, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor) -> LabelledSplit:
        """Both splits shifted and scaled by the training inputs' mean and standard deviation (one each)."""
        mean, std = x_train.mean(), x_train.std()
        return cls((x_train - mean) / std, y_train, (x_test - mean) / std, y_test)

    def tensors(self) -> dict[str, Tensor]:
        """The four tensors by field name (what a cache file holds)."""
        return asdict(self)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])
