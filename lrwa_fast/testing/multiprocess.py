"""W local gloo processes for tests and benchmarks: run a function on each rank, collect what each returned.

Each process sets torchrun's variables, initialises the default process group with
:func:`lrwa_fast.runtime.distributed.init_from_env`, runs the function with one thread, and writes
its result (or its error) to a file; the caller reads the files after a deadline, killing any
process still running.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..runtime.distributed import init_from_env


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
