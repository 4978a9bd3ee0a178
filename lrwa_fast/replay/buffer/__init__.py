"""The buffer engine under the buffer memory: :class:`ReplayBuffer` composes a storage, a writer
(fifo or reservoir: which slot an item takes), a uniform sampler (which slots a draw reads) and a
backend doing the work (:class:`ReplayBackend`: the PyTorch reference, or the C++/CUDA extension)."""

from .base import ReplayBackend
from .replay_buffer import ReplayBuffer
from .samplers import UniformSampler
from .writers import FIFOWriter, ReservoirWriter, Writer

__all__ = ["FIFOWriter", "ReplayBackend", "ReplayBuffer", "ReservoirWriter", "UniformSampler", "Writer"]
