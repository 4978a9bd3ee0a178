"""Data parallelism on ``torch.distributed``: the process group a trainer runs in, and the few
collectives it needs, each over one flattened buffer.

A trainer built while a process group is initialised trains data-parallel (no DDP wrapper: DDP
does not work with ``torch.autograd.grad`` nor double backward). Batch sizes stay global and each
of the W ranks takes 1/W; gradients are averaged with one all-reduce (SUM, then divide: ``AVG`` is
NCCL-only) so every rank takes the same step. With one process every method here is a no-op.

The CLI initialises the group from torchrun's environment (:func:`init_from_env`): NCCL for CUDA
tensors, one GPU per process (``LOCAL_RANK``), gloo for CPU tensors.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
import torch.multiprocessing as mp
from torch import Tensor, nn

DEFAULT_TIMEOUT_S = 600.0


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


def local_device() -> torch.device:
    """The device ``device="auto"`` means in this process: its own GPU under torchrun, else cuda or cpu."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


class DataParallel:
    """The ranks of ``group``; ``None`` is this process alone (see :meth:`current`)."""

    def __init__(self, group: dist.ProcessGroup | None = None) -> None:
        self.group = group
        self.world_size = dist.get_world_size(group) if group is not None else 1
        self.rank = dist.get_rank(group) if group is not None else 0

    @classmethod
    def current(cls) -> DataParallel:
        """The default process group when one is initialised, else this process alone."""
        return cls(dist.group.WORLD if dist.is_available() and dist.is_initialized() else None)

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
            raise PeerFailure(f"rank {self.rank} of {self.world_size}: {what} with the other ranks failed; a "
                              f"peer process has probably died or hung past the process group's timeout "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:300]})") from err

    def average(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """The mean over ranks of each tensor, with one all-reduce of their flattened concatenation."""
        if not self.enabled or not tensors:
            return list(tensors)
        flat = _flatten([t.detach() for t in tensors])
        _count(flat)
        with self.collective("averaging gradients"):
            dist.all_reduce(flat, group=self.group)
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
        _count(flat)
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
        device = local_device() if dist.get_backend(self.group) == "nccl" else torch.device("cpu")
        flag = torch.tensor([value], dtype=torch.int64, device=device)
        _count(flag)
        with self.collective("agreeing on a stop request"):
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group)
        return int(flag.item())

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` (tensors moved to the CPU), as a list on rank 0 and ``None`` elsewhere."""
        if not self.enabled:
            return [obj]
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        with self.collective("gathering state for a checkpoint"):
            dist.gather_object(to_cpu(obj), gathered, dst=dist.get_global_rank(self.group, 0), group=self.group)
        return gathered

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        with self.collective("receiving rank 0's result"):
            dist.broadcast_object_list(box, src=dist.get_global_rank(self.group, 0), group=self.group)
        return box[0]

    def from_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run on rank 0 only (e.g. a file write), its result on every rank."""
        return self.broadcast(fn() if self.is_main else None)

    def barrier(self, what: str) -> None:
        """Wait for every rank."""
        if self.enabled:
            with self.collective(what):
                dist.barrier(group=self.group)

    @contextmanager
    def main_first(self, what: str) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. to fill a cache), the other ranks after it."""
        if not self.is_main:
            self.barrier(what)
        yield
        if self.is_main:
            self.barrier(what)


_TRAFFIC = {"bytes": 0}


def bytes_reduced() -> int:
    """Payload of every all-reduce this process has taken part in (for the scaling benchmark)."""
    return _TRAFFIC["bytes"]


def _count(tensor: Tensor) -> None:
    _TRAFFIC["bytes"] += tensor.numel() * tensor.element_size()


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


def rank_values(results: list[dict[str, Any] | None]) -> list[Any]:
    """The ranks' return values from :func:`run_local`'s results; ``RuntimeError`` with the first failed
    rank's traceback otherwise."""
    for r, res in enumerate(results):
        if res is None or "value" not in res:
            raise RuntimeError(f"rank {r} failed: {res and res.get('traceback')}")
    return [res["value"] for res in results]


def run_local(fn: Callable[..., Any], out: Path, world: int = 2, timeout: float = 60.0,
              on_start: Callable[[list[Any], Path], None] | None = None, **kwargs: Any) -> list[dict[str, Any] | None]:
    """Run ``fn(rank, world, out, **kwargs)`` on ``world`` local gloo processes (tests, benchmarks).

    Returns each rank's ``{"value": result}`` or ``{"error": name, "message": ..., "traceback": ...}``
    (``None`` for a rank that wrote nothing, e.g. one killed); results travel as files in ``out``.
    ``on_start(processes, out)`` runs once they are started. Processes still running after
    ``timeout`` seconds are killed and ``TimeoutError`` is raised. ``timeout_s`` in ``kwargs`` is the
    process group's timeout (default 30 s).
    """
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_run_rank, args=(fn, r, world, port, str(out), dict(kwargs))) for r in range(world)]
    for p in procs:
        p.start()
    try:
        if on_start is not None:
            on_start(procs, out)
        deadline = time.monotonic() + timeout
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        hung = [r for r, p in enumerate(procs) if p.is_alive()]
        if hung:
            raise TimeoutError(f"ranks {hung} still running after {timeout} s")
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    files = [Path(out) / f"result-{r}.pt" for r in range(world)]
    return [torch.load(f, weights_only=False) if f.exists() else None for f in files]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_rank(fn: Callable[..., Any], rank: int, world: int, port: int, out: str, kwargs: dict[str, Any]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result: dict[str, Any]
    try:
        init_from_env(timeout_s=kwargs.pop("timeout_s", 30.0))
        result = {"value": fn(rank, world, Path(out), **kwargs)}
    except BaseException as err:  # reported to the caller, which decides
        result = {"error": type(err).__name__, "message": str(err), "traceback": traceback.format_exc()}
    torch.save(result, Path(out) / f"result-{rank}.pt")
    if dist.is_initialized():
        dist.destroy_process_group()
