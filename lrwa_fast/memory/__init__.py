"""Replay memory: a storage, a writer (fifo or reservoir) and a uniform sampler, composed by
:class:`ReplayBuffer`, with interchangeable backends doing the work (:class:`ReplayBackend`)."""

from .base import ReplayBackend
from .buffer import ReplayBuffer
from .samplers import UniformSampler
from .writers import POLICIES, FIFOWriter, ReservoirWriter, Writer

__all__ = ["POLICIES", "FIFOWriter", "ReplayBackend", "ReplayBuffer", "ReservoirWriter", "UniformSampler", "Writer"]
