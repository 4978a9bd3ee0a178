"""Data parallelism on ``torch.distributed``: the process group a trainer runs in, and the few
collectives it needs, each over one flattened buffer.

A trainer built while a process group is initialised trains data-parallel (no DDP wrapper: DDP
does not work with ``torch.autograd.grad`` nor double backward). Batch sizes stay global and each
of the W ranks takes 1/W; gradients are averaged with one all-reduce (SUM, then divide: ``AVG`` is
NCCL-only) so every rank takes the same step. With one process every method here is a no-op.

The CLI initialises the group from torchrun's environment (:func:`init_from_env`): NCCL for CUDA
tensors, one GPU per process (``LOCAL_RANK``), gloo for CPU tensors; and destroys it on its way out
(:func:`process_group_from_env`). No object here keeps the default group (see :class:`Ranks`).
:data:`LAUNCHER` tells whether torchrun, this process's parent, has exited.
"""

from __future__ import annotations

import atexit
import datetime
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol

# Imported here, before any group exists: its functions take the default group as a default argument,
# evaluated at import, and torch._dynamo imports it lazily (e.g. with the first optimiser); imported
# once a group exists, it would keep that group alive until the interpreter ends.
import torch.distributed.nn.functional
from torch import Tensor, nn

from ..config import DFADConfig

DEFAULT_TIMEOUT_S: float = DFADConfig.dist_timeout  # the config's default, written there


class PeerFailure(RuntimeError):
    """A collective with the other ranks failed: a peer process died, hung past the timeout, or is
    unreachable. Raised on every surviving rank instead of hanging."""


def init_from_env(timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Initialise the default process group from torchrun's variables (``WORLD_SIZE`` > 1); ``True``
    when this process now runs in a group of several. Binds the process to GPU ``LOCAL_RANK`` on CUDA."""
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not timeout_s > 0:
        raise ValueError(f"the distributed timeout must be > 0 seconds, got {timeout_s}")
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"  # a run on device="cpu" still works on a GPU machine
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


@contextmanager
def process_group_from_env(timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[Ranks]:
    """:func:`init_from_env` for the block, yielding the ranks; a group this call initialised is destroyed
    on every way out (return, interruption, a dead peer, an error), one it found is left alone."""
    created = not dist.is_initialized() and init_from_env(timeout_s)
    try:
        yield Ranks.current()
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


class Launcher:
    """The torchrun agent that started this process, watched through this process's parent: an agent
    killed with SIGKILL (an out-of-memory killer, say) does not stop its workers, they live on orphaned."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.remember()

    def remember(self) -> None:
        """Take the parent for the launcher when torchrun's variables are set (at import, in a forked child)."""
        self.pid = os.getppid() if "TORCHELASTIC_RUN_ID" in os.environ else None

    def gone(self) -> bool:
        """Whether the launcher has exited (one system call); always ``False`` outside torchrun."""
        return self.pid is not None and os.getppid() != self.pid


LAUNCHER = Launcher()
os.register_at_fork(after_in_child=LAUNCHER.remember)


def _destroy_at_exit() -> None:
    """Destroy the default group if the script left it initialised, while the interpreter is still whole:
    Gloo's threads torn down during finalization abort the process (SIGABRT after a finished run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


atexit.register(_destroy_at_exit)


def local_device() -> torch.device:
    """The device ``device="auto"`` means in this process: its own GPU under torchrun, else cuda or cpu."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → :func:`local_device`; anything else as ``torch.device``, refused when it names CUDA and
    CUDA is not available."""
    if name == "auto":
        return local_device()
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


class Ranks:
    """The ranks of ``group``; ``None`` is this process alone (see :meth:`current`).

    No instance holds the default group: its size and this process's rank are kept as numbers and
    the collectives look the group up when they run, so nothing keeps it alive past
    ``destroy_process_group()`` or into interpreter exit (Gloo then aborts the process as it ends).
    Only a subgroup given here is held, for as long as the instance lives.
    """

    def __init__(self, group: dist.ProcessGroup | None = None) -> None:
        self.world_size = dist.get_world_size(group) if group is not None else 1
        self.rank = dist.get_rank(group) if group is not None else 0
        self._default = group is not None and group is dist.group.WORLD
        self._subgroup = None if self._default else group  # None: the default group (or none at all)

    @classmethod
    def current(cls) -> Ranks:
        """The default process group when one is initialised, else this process alone."""
        return cls(dist.group.WORLD if dist.is_available() and dist.is_initialized() else None)

    @property
    def group(self) -> dist.ProcessGroup | None:
        """The process group, looked up now for the default one; ``None`` for this process alone."""
        return dist.group.WORLD if self._default else self._subgroup

    @property
    def enabled(self) -> bool:
        """Whether there are other ranks to talk to."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: evaluates, shows progress, writes files."""
        return self.rank == 0

    def local_size(self, global_size: int, name: str) -> int:
        """This rank's share of a global count; ``ValueError`` naming ``name`` when W does not divide it."""
        if global_size % self.world_size:
            raise ValueError(f"{name}={global_size} is global and must be divisible by the number of "
                             f"processes ({self.world_size})")
        return global_size // self.world_size

    def local_slice(self, tensor: Tensor) -> Tensor:
        """This rank's contiguous share of a global batch (rows ``rank·n`` to ``(rank+1)·n``)."""
        n = self.local_size(tensor.shape[0], "the batch")
        return tensor[self.rank * n:(self.rank + 1) * n]

    def rows(self, count: int) -> slice:
        """This rank's contiguous rows of ``count`` that need not divide evenly (shares differ by at most
        one, e.g. an epoch's last batch)."""
        bounds = [count * r // self.world_size for r in range(self.world_size + 1)]
        return slice(bounds[self.rank], bounds[self.rank + 1])

    def _root(self) -> int:
        """The global rank of this group's rank 0."""
        return 0 if self._subgroup is None else dist.get_global_rank(self._subgroup, 0)

    @contextmanager
    def collective(self, what: str) -> Iterator[None]:
        """Turn a failed collective into :class:`PeerFailure` naming this rank and ``what``."""
        try:
            yield
        except PeerFailure:
            raise
        except RuntimeError as err:
            if not self.enabled:
                raise
            traceback.clear_frames(err.__traceback__)  # torch's frames hold the group: keep none alive
            orphan = "; this process's launcher (torchrun) has exited too" if LAUNCHER.gone() else ""
            raise PeerFailure(f"rank {self.rank} of {self.world_size}: {what} with the other ranks failed; a "
                              f"peer process has probably died or hung past the process group's timeout "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:300]}){orphan}") from err

    def average(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """The mean over ranks of each tensor, with one all-reduce of their flattened concatenation."""
        if not self.enabled or not tensors:
            return list(tensors)
        flat = _flatten([t.detach() for t in tensors])
        with self.collective("averaging gradients"):
            dist.all_reduce(flat, group=self._subgroup)
        return _unflatten(flat.div_(self.world_size), tensors)

    def average_both(self, first: Sequence[Tensor], second: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """:meth:`average` of two lists in the same all-reduce (e.g. gradients and logged values)."""
        reduced = self.average([*first, *second])
        return reduced[:len(first)], reduced[len(first):]

    def average_differentiable(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """:meth:`average` as a node of the autograd graph (its backward all-reduces the cotangents), so
        a double backward differentiates through the global mean."""
        if not self.enabled:
            return list(tensors)
        flat = _flatten(list(tensors))
        with self.collective("averaging the inner-step gradient"):
            total = funcol.wait_tensor(funcol.all_reduce(flat, "sum", self.group))
        return _unflatten(total / self.world_size, tensors)

    def average_buffers_(self, modules: Sequence[nn.Module]) -> None:
        """Average the floating-point buffers (BatchNorm running statistics) of ``modules`` in place."""
        buffers = [b for m in modules for b in m.buffers() if b.is_floating_point()]
        for buffer, mean in zip(buffers, self.average(buffers)):
            buffer.copy_(mean)

    def max(self, value: int) -> int:
        """The largest of the ranks' ``value`` (e.g. a signal number, 0 for none), the same on every rank."""
        if not self.enabled:
            return value
        device = local_device() if dist.get_backend(self._subgroup) == "nccl" else torch.device("cpu")
        flag = torch.tensor([value], dtype=torch.int64, device=device)
        with self.collective("agreeing on a stop request"):
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._subgroup)
        return int(flag.item())

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` (tensors moved to the CPU), as a list on rank 0 and ``None`` elsewhere."""
        if not self.enabled:
            return [obj]
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        with self.collective("gathering state for a checkpoint"):
            dist.gather_object(to_cpu(obj), gathered, dst=self._root(), group=self._subgroup)
        return gathered

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        with self.collective("receiving rank 0's result"):
            dist.broadcast_object_list(box, src=self._root(), group=self._subgroup)
        return box[0]

    def from_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run on rank 0 only (e.g. a file write), its result on every rank."""
        return self.broadcast(fn() if self.is_main else None)

    def barrier(self, what: str) -> None:
        """Wait for every rank."""
        if self.enabled:
            with self.collective(what):
                dist.barrier(group=self._subgroup)

    @contextmanager
    def main_first(self, what: str) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. to fill a cache), the other ranks after it."""
        if not self.is_main:
            self.barrier(what)
        yield
        if self.is_main:
            self.barrier(what)


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in its containers moved to the CPU."""
    if isinstance(obj, Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def _flatten(tensors: list[Tensor]) -> Tensor:
    """One contiguous buffer in the first tensor's dtype (gradients and logged values of an update)."""
    dtype = tensors[0].dtype
    return torch.cat([t.reshape(-1).to(dtype) for t in tensors])


def _unflatten(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    sizes = [t.numel() for t in like]
    return [chunk.view_as(t).to(t.dtype) for chunk, t in zip(torch.split(flat, sizes), like)]
