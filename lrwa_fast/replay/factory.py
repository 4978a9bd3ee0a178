"""The one memory factory: the memory part its settings describe (a buffer or a generative memory), sharded
for this rank."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..runtime.services import Runtime
from .base import Memory
from .buffer import ReplayBuffer
from .buffer_memory import BufferMemory, BufferSettings, InsertSchedule
from .generative_memory import GenerativeMemory, GenerativeSettings
from .vae import default_vae

MemorySettings = BufferSettings | GenerativeSettings


def build_memory(settings: MemorySettings | None, runtime: Runtime, *, teacher: nn.Module,
                 sample_shape: tuple[int, ...], num_classes: int, vae: nn.Module | None = None) -> Memory | None:
    """The memory of ``settings``: a buffer of pseudo-samples, or a VAE learning them (``vae``: your own, else
    the built-in one for the sample shape); ``None`` without settings (DFAD).

    Sizes in the settings are global: this rank's memory holds 1/W of the capacity, draws 1/W of the
    memory batch and has a random stream of its own (:func:`rank_seed`); with whole-entry draws the ranks
    share one key, so together they draw one whole global insertion.
    """
    if not isinstance(settings, GenerativeSettings) and vae is not None:
        kind = "a buffer memory" if settings is not None else "no memory"
        raise ValueError(f"vae is used only with memory_kind='generative', got {kind}")
    if settings is None:
        return None
    ranks = runtime.ranks
    seed, batch = rank_seed(settings.seed, ranks.rank), ranks.local_size(settings.batch_size, "memory_batch_size")
    if isinstance(settings, GenerativeSettings):  # data-parallel: each rank trains and samples its own VAE
        local = dataclasses.replace(settings, batch_size=batch, seed=seed,
                                    fresh_size=ranks.local_size(settings.fresh_size, "vae_fresh_size"))
        vae = vae if vae is not None else default_vae(tuple(sample_shape), settings.latent_dim, settings.width)
        return GenerativeMemory(vae, teacher, sample_shape, local, runtime)
    insert = ranks.local_size(settings.insert_size, "memory_insert_size")
    entries = settings.draw == "entry"  # every rank draws the same entry (one key): its shard of one insertion
    buffer = ReplayBuffer(ranks.local_size(settings.capacity, "memory_capacity"), sample_shape, num_classes,
                          policy=settings.policy, device=runtime.device, dtype=getattr(torch, settings.dtype),
                          seed=settings.seed if entries else seed, backend=settings.backend, draw=settings.draw,
                          entry_size=insert if entries else None)
    return BufferMemory(buffer, batch, InsertSchedule(insert, settings.insert_every, settings.start))


def rank_seed(seed: int, rank: int) -> int:
    """The memory seed of ``rank``: ``seed`` itself on rank 0, a distinct key (below 2^62) on the others."""
    return seed if rank == 0 else (seed + rank * 0x9E3779B97F4A7C15) % 2**62
