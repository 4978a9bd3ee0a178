"""DCGAN-style generator used by the LRwA authors (and DFAD), with configurable sizes."""

from __future__ import annotations

from torch import Tensor, nn


def upsampling_body(ngf: int, channels: int, conv: type[nn.Module], norm: type[nn.Module]) -> nn.Sequential:
    """BN → up×2 → conv3 → BN → LeakyReLU → up×2 → conv3 → BN → LeakyReLU → conv3 → Tanh → BN(affine=False),
    from ``2·ngf`` channels to ``channels``, with ``conv``/``norm`` of the data's dimension (2-D or 1-D)."""
    return nn.Sequential(
        norm(2 * ngf),
        nn.Upsample(scale_factor=2),
        conv(2 * ngf, 2 * ngf, 3, padding=1, bias=False),
        norm(2 * ngf),
        nn.LeakyReLU(0.2),
        nn.Upsample(scale_factor=2),
        conv(2 * ngf, ngf, 3, padding=1, bias=False),
        norm(ngf),
        nn.LeakyReLU(0.2),
        conv(ngf, channels, 3, padding=1),
        nn.Tanh(),
        norm(channels, affine=False),
    )


class Generator(nn.Module):
    """``z`` of shape ``(batch, latent_dim)`` → images ``(batch, channels, img_size, img_size)``.

    Linear → BN → up×2 → conv3×3 → BN → LeakyReLU → up×2 → conv3×3 → BN → LeakyReLU → conv3×3 →
    Tanh → BN(affine=False); the last BN standardises each channel like normalised real data.
    """

    def __init__(self, latent_dim: int = 1000, channels: int = 3, img_size: int = 32, ngf: int = 64) -> None:
        super().__init__()
        if img_size % 4 != 0 or img_size < 4:
            raise ValueError(f"img_size must be a positive multiple of 4, got {img_size}")
        self.latent_dim, self.channels, self.img_size = latent_dim, channels, img_size
        self.init_size = img_size // 4
        self.project = nn.Linear(latent_dim, 2 * ngf * self.init_size**2)
        self.body = upsampling_body(ngf, channels, nn.Conv2d, nn.BatchNorm2d)

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z.flatten(1))
        return self.body(h.view(z.shape[0], -1, self.init_size, self.init_size))
