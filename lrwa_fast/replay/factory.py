"""The one memory factory: the memory part a config describes (``memory_kind``), sharded for this rank."""

from __future__ import annotations

import torch
from torch import nn

from ..config import DFADConfig, LRwAConfig
from ..runtime.distributed import Ranks
from ..runtime.guard import NonFiniteGuard
from ..runtime.metrics import MetricAccumulator
from .base import Memory
from .buffer import ReplayBuffer
from .buffer_memory import InsertSchedule, ReplayMemory
from .generative_memory import GenerativeMemory, GenerativeSettings
from .vae import default_vae


def build_memory(cfg: DFADConfig, *, teacher: nn.Module, sample_shape: tuple[int, ...], num_classes: int,
                 device: torch.device, ranks: Ranks, guard: NonFiniteGuard, metrics: MetricAccumulator,
                 vae: nn.Module | None = None) -> Memory | None:
    """The memory of ``cfg.memory_kind``: a buffer of pseudo-samples, or a VAE learning them (``vae``: your
    own, else the built-in one for the sample shape); ``None`` for a config without a memory (DFAD).

    Sizes in the config are global: this rank's memory holds 1/W of the capacity, draws 1/W of the
    memory batch and has a random stream of its own (:func:`rank_seed`).
    """
    if not isinstance(cfg, LRwAConfig):
        if vae is not None:
            raise ValueError(f"vae is used only with memory_kind='generative', got a {type(cfg).__name__}, "
                             "which has no memory")
        return None
    seed, batch = rank_seed(cfg.seed, ranks.rank), ranks.local_size(cfg.memory_batch_size, "memory_batch_size")
    if cfg.memory_kind == "generative":  # data-parallel: each rank trains and samples its own VAE
        fresh = ranks.local_size(cfg.vae_fresh_size, "vae_fresh_size")
        weights = cfg.generator_weights
        settings = GenerativeSettings(batch, cfg.vae_steps, fresh, cfg.vae_kl_weight, cfg.vae_teacher_weight,
                                      cfg.vae_refine_steps, cfg.vae_refine_lr, weights.one_hot, weights.balance,
                                      cfg.memory_start)
        vae = vae if vae is not None else default_vae(tuple(sample_shape), cfg.vae_latent_dim or cfg.latent_dim,
                                                      cfg.vae_width)
        return GenerativeMemory(vae, teacher, sample_shape, settings, optimizer=cfg.vae_optimizer,
                                horizon=cfg.iterations, guard=guard, metrics=metrics, seed=seed, device=device)
    if vae is not None:
        raise ValueError("vae is used only with memory_kind='generative', got memory_kind='buffer'")
    buffer = ReplayBuffer(ranks.local_size(cfg.memory_capacity, "memory_capacity"), sample_shape, num_classes,
                          policy=cfg.memory_policy, device=device, dtype=getattr(torch, cfg.memory_dtype), seed=seed,
                          backend=None if cfg.memory_backend == "auto" else cfg.memory_backend)
    schedule = InsertSchedule(ranks.local_size(cfg.memory_insert_size, "memory_insert_size"), cfg.memory_insert_every,
                              cfg.memory_start)
    return ReplayMemory(buffer, batch, schedule)


def rank_seed(seed: int, rank: int) -> int:
    """The memory seed of ``rank``: ``seed`` itself on rank 0, a distinct key (below 2^62) on the others."""
    return seed if rank == 0 else (seed + rank * 0x9E3779B97F4A7C15) % 2**62
