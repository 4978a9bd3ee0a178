"""Median times of the replay memory's operations per backend, as a markdown table.

    python benchmarks/replay_table.py [--smoke] [--json OUT] [--threads N] [--repeats R]

Times the backend operations themselves on one shared, filled storage (float32, samples 3×32×32,
100-class logits): ``sample`` = draw n slots + gather samples and logits into new float32 tensors,
with and without replacement; ``insert`` = one batch under ``fifo`` and ``reservoir`` at
``seen = capacity``. ``ReplayBuffer`` adds the same few microseconds of argument checks to every
backend. On the CPU the extension (``cpp``) is compared with the PyTorch backend; with CUDA also
the ``cuda`` backend, with its bandwidth (bytes read + written) as % of a measured device-to-device
copy. Both backends are timed in the same run, alternating, and each figure is a median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from lrwa_fast.replay.buffer import _ext, cpp_backend, torch_backend
from lrwa_fast.replay.buffer.storage import TensorStorage

SHAPE = (3, 32, 32)
CLASSES = 100
SIZES = (64, 256)
TARGET_S = 2e-3  # each timed block runs the operation for about this long


def filled_storage(capacity: int, device: torch.device) -> TensorStorage:
    """Storage with every page written (untouched zero pages would make reads unrealistically cheap)."""
    storage = TensorStorage.allocate(capacity, SHAPE, CLASSES, device, torch.float32)
    storage.x.uniform_()
    storage.logits.uniform_()
    storage.inserted_at.zero_()
    return storage


def operations(storage: TensorStorage, device: torch.device) -> dict[str, Callable[[ModuleType], Any]]:
    """Name → function running that operation with a given backend module."""
    capacity = storage.x.shape[0]
    ops: dict[str, Callable[[ModuleType], Any]] = {}
    for n in SIZES:
        for replace in (True, False):
            kw = dict(fill=capacity, replace=replace, seed=1, counter=7)
            ops[f"sample {n} {'with' if replace else 'without'} repl."] = (  # outputs allocated per call
                lambda mod, n=n, kw=kw: mod.sample(storage, *storage.empty_sample(n, torch.float32), **kw))
    for b in SIZES:
        x, logits = torch.rand(b, *SHAPE, device=device), torch.rand(b, CLASSES, device=device)
        for policy in ("fifo", "reservoir"):
            kw = dict(policy=policy, seen=capacity, seed=1, step=0)
            ops[f"insert {b} {policy}"] = (
                lambda mod, x=x, logits=logits, kw=kw: mod.insert(storage, x, logits, **kw))
    return ops


def block_time(fn: Callable[[], Any], inner: int, sync: Callable[[], None]) -> float:
    """Seconds per call over ``inner`` back-to-back calls."""
    sync()
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    sync()
    return (time.perf_counter() - start) / inner


def compare(fns: dict[str, Callable[[], Any]], repeats: int, sync: Callable[[], None]) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating order within one run."""
    inner = {}
    for name, fn in fns.items():
        block_time(fn, 1, sync)  # warm-up
        inner[name] = max(1, min(200, int(TARGET_S / max(block_time(fn, 1, sync), 1e-7))))
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].append(block_time(fns[name], inner[name], sync))
    return {name: statistics.median(ts) for name, ts in times.items()}


def copy_bandwidth(device: torch.device, repeats: int) -> float:
    """Bytes per second (read + written) of a 256 MiB device-to-device copy."""
    src = torch.rand(64 * 2**20, device=device)
    dst = torch.empty_like(src)
    seconds = compare({"copy": lambda: dst.copy_(src)}, repeats, torch.cuda.synchronize)["copy"]
    return 2 * src.numel() * src.element_size() / seconds


def moved_bytes(op: str) -> int:
    """Bytes read + written by an operation on float32 rows (indices and stamps ignored)."""
    rows = int(op.split()[1])
    return 2 * rows * 4 * (torch.Size(SHAPE).numel() + CLASSES)


def measure(device: torch.device, capacities: tuple[int, ...], repeats: int) -> list[dict[str, Any]]:
    """One row per (capacity, operation) with the median ms of every backend available on ``device``."""
    native = "cuda" if device.type == "cuda" else "cpp"
    backends = {"torch": torch_backend, native: cpp_backend}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    for capacity in capacities:
        storage = filled_storage(capacity, device)
        for op, run in operations(storage, device).items():
            medians = compare({name: (lambda run=run, mod=mod: run(mod)) for name, mod in backends.items()},
                              repeats, sync)
            row = {"device": device.type, "op": op, "capacity": capacity,
                   **{f"{name}_ms": 1e3 * s for name, s in medians.items()},
                   "speedup": medians["torch"] / medians[native]}
            if device.type == "cuda":
                row["gbps"] = moved_bytes(op) / medians[native] / 1e9
            rows.append(row)
        del storage
    return rows


def markdown(rows: list[dict[str, Any]], copy_gbps: float | None) -> str:
    """The rows as a markdown table (bandwidth columns on CUDA)."""
    native = "cuda" if rows[0]["device"] == "cuda" else "cpp"
    head = f"| device | operation | capacity | torch ms | {native} ms | speed-up |"
    rule = "|---|---|---:|---:|---:|---:|"
    if copy_gbps:
        head += f" {native} GB/s | % of copy ({copy_gbps:.0f} GB/s) |"
        rule += "---:|---:|"
    lines = [head, rule]
    for r in rows:
        line = (f"| {r['device']} | {r['op']} | {r['capacity']:,} | {r['torch_ms']:.3f} | "
                f"{r[f'{native}_ms']:.3f} | {r['speedup']:.1f}× |")
        if copy_gbps:
            line += f" {r['gbps']:.0f} | {100 * r['gbps'] / copy_gbps:.0f}% |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, measure on the CPU (and CUDA when the kernels are built), print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny capacities and few repeats (CI check)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, help="timed blocks per figure (default 15, smoke 3)")
    args = parser.parse_args(argv)
    if _ext.module() is None:
        raise SystemExit(f"the extension is unavailable ({_ext.reason()}); nothing to compare")
    if args.threads:
        torch.set_num_threads(args.threads)
    capacities = (1_000,) if args.smoke else (10_000, 100_000)
    repeats = args.repeats or (3 if args.smoke else 15)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, repeats {repeats}\n")
    result: dict[str, Any] = {"threads": torch.get_num_threads(), "repeats": repeats, "tables": {}}
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and _ext.has_cuda():
        devices.append(torch.device("cuda"))
    for device in devices:
        copy_gbps = copy_bandwidth(device, repeats) / 1e9 if device.type == "cuda" else None
        rows = measure(device, capacities, repeats)
        print(markdown(rows, copy_gbps), end="\n\n")
        result["tables"][device.type] = {"rows": rows, "copy_gbps": copy_gbps}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
