"""Variational auto-encoders for generative replay: the protocol a VAE follows, a convolutional VAE
for images ``(C, H, W)``, an MLP VAE for vectors ``(D,)``, and the VAE's training loss.

A VAE here is an ``nn.Module`` with three methods (:class:`VAE`): ``encode(x) -> (mu, log_var)``
(the Gaussian posterior), ``decode(z) -> x`` and ``sample(n, rng) -> z`` (``n`` latent codes
from the prior). The memory does the reparameterisation itself, with its own random stream, so a
VAE needs no randomness of its own.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import LRwAConfig


@runtime_checkable
class VAE(Protocol):
    """What the generative memory calls on its VAE (which must also be an ``nn.Module``)."""

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def decode(self, z: Tensor) -> Tensor: ...

    def sample(self, n: int, rng: torch.Generator) -> Tensor: ...


class GaussianPrior(nn.Module):
    """The standard normal prior over ``latent_dim`` codes and the Gaussian encoder head, shared by the
    built-in VAEs (each defines ``encoder``, ``to_mu`` and ``to_log_var``)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of the codes of ``x``."""
        h = self.encoder(x)
        return self.to_mu(h), self.to_log_var(h)

    def sample(self, n: int, rng: torch.Generator) -> Tensor:
        """``n`` codes ``z ~ N(0, I)`` drawn with ``rng``, on the module's device."""
        device = next(self.parameters()).device
        return torch.randn(n, self.latent_dim, device=device, generator=rng)


class ConvVAE(GaussianPrior):
    """Images ``(C, H, W)`` of any size: a strided conv encoder (to ⌈H/8⌉×⌈W/8⌉) and a decoder built like the
    library's :class:`~lrwa_fast.models.Generator` (linear projection, two upsamplings, 3×3 convs),
    upsampling to exactly ``(H, W)``; the output layer is linear, so it fits any pixel range."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, width: int = LRwAConfig.vae_width) -> None:
        super().__init__(latent_dim)
        channels, height, breadth = shape
        self.sizes = [(math.ceil(height / 2**k), math.ceil(breadth / 2**k)) for k in range(4)]
        self.encoder = nn.Sequential(
            _conv_block(channels, width, 1), _conv_block(width, 2 * width, 2), _conv_block(2 * width, 2 * width, 2),
            _conv_block(2 * width, 2 * width, 2), nn.Flatten())
        flat = 2 * width * self.sizes[3][0] * self.sizes[3][1]
        self.to_mu, self.to_log_var = nn.Linear(flat, latent_dim), nn.Linear(flat, latent_dim)
        self.project = nn.Sequential(nn.Linear(latent_dim, 2 * width * self.sizes[2][0] * self.sizes[2][1]),
                                     nn.Unflatten(1, (2 * width, *self.sizes[2])), nn.BatchNorm2d(2 * width))
        self.up1 = nn.Sequential(nn.Upsample(size=self.sizes[1]), _conv_block(2 * width, 2 * width, 1))
        self.up2 = nn.Sequential(nn.Upsample(size=self.sizes[0]), _conv_block(2 * width, width, 1),
                                 nn.Conv2d(width, channels, 3, padding=1))

    def decode(self, z: Tensor) -> Tensor:
        return self.up2(self.up1(self.project(z)))


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    """3×3 conv → BatchNorm → LeakyReLU(0.2); stride 2 gives ⌈size/2⌉."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.2))


class MLPVAE(GaussianPrior):
    """Vectors ``(D,)``: two hidden layers each way, linear output."""

    def __init__(self, dim: int, latent_dim: int, hidden: int = 4 * LRwAConfig.vae_width) -> None:
        super().__init__(latent_dim)
        self.encoder = nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                     nn.LeakyReLU(0.2))
        self.to_mu, self.to_log_var = nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                     nn.LeakyReLU(0.2), nn.Linear(hidden, dim))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)


def default_vae(shape: tuple[int, ...], latent_dim: int, width: int) -> nn.Module:
    """The built-in VAE for samples of ``shape``: convolutional for ``(C, H, W)``, MLP for ``(D,)``."""
    if len(shape) == 3:
        return ConvVAE((shape[0], shape[1], shape[2]), latent_dim, width)
    if len(shape) == 1:
        return MLPVAE(shape[0], latent_dim, 4 * width)
    raise ValueError(f"memory_kind='generative' has no built-in VAE for samples of shape {shape}: it has a "
                     "convolutional VAE for images (C, H, W) and an MLP VAE for vectors (D,); pass your own "
                     "(vae=..., a module with encode, decode and sample)")


def check_vae(vae: object, shape: tuple[int, ...], rng: torch.Generator) -> None:
    """Refuse a VAE that does not follow the protocol or whose decoded samples are not of ``shape``."""
    if not isinstance(vae, nn.Module) or not isinstance(vae, VAE):
        raise ValueError(f"vae must be an nn.Module with encode(x) -> (mu, log_var), decode(z) and "
                         f"sample(n, rng), got {type(vae).__name__}")
    state = rng.get_state()
    try:
        with torch.no_grad():
            decoded = vae.eval().decode(vae.sample(2, rng))
    except Exception as err:
        raise ValueError(f"vae: decode(sample(2, rng)) failed: {type(err).__name__}: {err}") from err
    finally:
        rng.set_state(state)
    if not isinstance(decoded, Tensor) or tuple(decoded.shape) != (2, *shape):
        got = tuple(decoded.shape) if isinstance(decoded, Tensor) else type(decoded).__name__
        raise ValueError(f"vae: decoded samples must have the generator's sample shape (batch, "
                         f"{', '.join(map(str, shape))}), got {got}")


def reparameterise(mu: Tensor, log_var: Tensor, rng: torch.Generator) -> Tensor:
    """``z = mu + exp(log_var / 2) · eps``, eps ~ N(0, I) drawn with ``rng``."""
    eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=rng)
    return mu + torch.exp(0.5 * log_var) * eps


def kl_divergence(mu: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mu, exp(log_var)) ‖ N(0, I)), summed over latent dimensions, mean over the batch."""
    per_row = -0.5 * (1 + log_var - mu.square() - log_var.exp()).flatten(1).sum(1)
    return per_row.mean()


def vae_loss(x: Tensor, recon: Tensor, mu: Tensor, log_var: Tensor, t: Tensor, t_recon: Tensor, *,
             kl_weight: float, teacher_weight: float) -> Tensor:
    """The authors' VAE objective: L1(recon, x) + teacher_weight · L1(T(recon), T(x)) + kl_weight · KL,
    each L1 a mean over elements (the teacher term keeps what the teacher sees in the samples)."""
    loss = F.l1_loss(recon, x) + kl_weight * kl_divergence(mu, log_var)
    return loss + teacher_weight * F.l1_loss(t_recon, t) if teacher_weight else loss
