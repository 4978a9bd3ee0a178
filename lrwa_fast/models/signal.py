"""1-D models for signals such as MNIST-1D's (40 samples): a strided CNN classifier and a generator."""

from __future__ import annotations

from torch import Tensor, nn

from .generator import upsampling_body


def _conv_block(cin: int, cout: int, kernel: int, stride: int) -> list[nn.Module]:
    return [nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm1d(cout),
            nn.ReLU(inplace=True)]


class SignalCNN(nn.Module):
    """Signals ``(batch, length)`` → logits: conv5 → conv3/2 → conv3/2 → linear over the flattened map
    (positions matter in MNIST-1D, so no global pooling); ``width`` scales the channels."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32, length: int = 40) -> None:
        super().__init__()
        if in_channels != 1:
            raise ValueError(f"SignalCNN takes single-channel signals (batch, length), got in_channels={in_channels}")
        self.length = length
        self.features = nn.Sequential(
            *_conv_block(1, width, 5, 1),
            *_conv_block(width, 2 * width, 3, 2),
            *_conv_block(2 * width, 2 * width, 3, 2),
            nn.Flatten(),
        )
        reduced = (length + 3) // 4  # two stride-2 convolutions with padding
        self.classifier = nn.Linear(2 * width * reduced, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x.reshape(x.shape[0], 1, self.length)))


class SignalGenerator(nn.Module):
    """``z`` of shape ``(batch, latent_dim)`` → signals ``(batch, length)``: linear → BN → up×2 → conv3 → BN →
    LeakyReLU → up×2 → conv3 → BN → LeakyReLU → conv3 → Tanh → BN(affine=False), the 1-D counterpart of
    :class:`~lrwa_fast.models.Generator` (the last BN standardises the signal like normalised data)."""

    def __init__(self, latent_dim: int = 64, length: int = 40, ngf: int = 32) -> None:
        super().__init__()
        if length % 4 != 0 or length < 4:
            raise ValueError(f"length must be a positive multiple of 4, got {length}")
        self.latent_dim, self.length, self.init_length = latent_dim, length, length // 4
        self.project = nn.Linear(latent_dim, 2 * ngf * self.init_length)
        self.body = upsampling_body(ngf, 1, nn.Conv1d, nn.BatchNorm1d)

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z.flatten(1)).view(z.shape[0], -1, self.init_length)
        return self.body(h).flatten(1)
