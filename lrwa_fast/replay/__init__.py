"""Replay memories, the trainer's memory part: the protocol every memory follows (:mod:`.base`), the
buffer memory of stored pseudo-samples (:mod:`.buffer_memory`, over the buffer engine in
:mod:`.buffer`), the generative memory (:mod:`.generative_memory`, a VAE from :mod:`.vae` learning
the samples), and the one factory choosing between them by ``memory_kind`` (:mod:`.factory`)."""

from .base import Memory, is_memory
from .buffer import ReplayBuffer
from .buffer_memory import BufferMemory, BufferSettings, InsertSchedule
from .factory import MemorySettings, build_memory
from .generative_memory import GenerativeMemory, GenerativeSettings

__all__ = ["BufferMemory", "BufferSettings", "GenerativeMemory", "GenerativeSettings", "InsertSchedule", "Memory",
           "MemorySettings", "ReplayBuffer", "build_memory", "is_memory"]
