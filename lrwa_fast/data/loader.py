"""Device-resident image batches: uint8 images stay on the device; shuffling, random crop with
padding, horizontal flips and normalisation run there too, so no host copy or worker is needed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor


class Normalize:
    """uint8 images ``(N, C, H, W)`` → float ``(x / 255 − mean) / std`` on the images' device."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self._on: dict[torch.device, tuple[Tensor, Tensor]] = {}  # (mean, std) per device, copied there once

    def __call__(self, images: Tensor) -> Tensor:
        if images.device not in self._on:
            shape = (1, len(self.mean), 1, 1)
            self._on[images.device] = (torch.tensor(self.mean, device=images.device).view(shape),
                                       torch.tensor(self.std, device=images.device).view(shape))
        mean, std = self._on[images.device]
        return (images.float() / 255 - mean) / std


def random_crop_flip(images: Tensor, padding: int, flip: bool, rng: torch.Generator) -> Tensor:
    """Each image cropped at a random offset from its zero-padded copy and mirrored with probability ½.

    One gather for the whole batch; ``rng`` lives on the images' device.
    """
    n, _, h, w = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (padding,) * 4) if padding else images
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=device, generator=rng)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=device, generator=rng)
    rows = dy + torch.arange(h, device=device)
    cols = dx + torch.arange(w, device=device)
    if flip:
        mirrored = torch.rand(n, 1, device=device, generator=rng) < 0.5
        cols = torch.where(mirrored, cols.flip(1), cols)
    batch = torch.arange(n, device=device).view(n, 1, 1, 1)
    channels = torch.arange(images.shape[1], device=device).view(1, -1, 1, 1)
    return padded[batch, channels, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


class DeviceLoader:
    """Shuffled, augmented, normalised batches of labelled uint8 images kept on ``device``."""

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, normalize: Normalize, *,
                 device: torch.device, padding: int = 4, flip: bool = True, seed: int = 0) -> None:
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"need as many labels as images (and at least one), got {len(images)} and "
                             f"{len(labels)}")
        self.images, self.labels = images.to(device), labels.to(device)
        self.batch_size, self.normalize, self.padding, self.flip = batch_size, normalize, padding, flip
        self.rng = torch.Generator(device=device).manual_seed(seed)

    def __len__(self) -> int:
        """Batches per epoch (the last one may be smaller)."""
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(len(self.labels), device=self.images.device, generator=self.rng)
        for start in range(0, len(order), self.batch_size):
            idx = order[start: start + self.batch_size]
            x = random_crop_flip(self.images[idx], self.padding, self.flip, self.rng)
            yield self.normalize(x), self.labels[idx]
