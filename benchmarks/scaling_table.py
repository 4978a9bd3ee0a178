"""Data-parallel cost on the CPU: bytes all-reduced per iteration, and 2 gloo processes against 1.

    python benchmarks/scaling_table.py [--cases cnn,wrn16_1,cnn32,resnet18] [--repeats 5] [--json OUT]

Bytes: one LRwA or DFAD iteration (1 generator step, 5 student steps, the bench case's models) on
2 local gloo processes, counted by ``lrwa_fast.testing.AllReduceTraffic`` (payload of every all-reduce:
gradients with the logged values, the exact mode's inner-step gradient, the finite-difference
direction, the BatchNorm buffers, the stop flag); batch sizes do not change it. Time: median
iteration time of the demo CNN at the case's global batch, 1 process (1 thread) against 2 processes
(1 thread each), after 2 warm-up iterations.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lrwa_fast import DFADConfig, LRwAConfig, LRwATrainer
from lrwa_fast.bench.cases import CASES, META_VARIANTS, case_config, case_models
from lrwa_fast.testing import AllReduceTraffic, rank_values, run_local
from lrwa_fast.training.trainer import DFADTrainer

METHODS: dict[str, dict[str, str]] = {"dfad": {}, **{name: META_VARIANTS[name] for name in
                                                     ("lrwa_first_order", "lrwa_exact", "lrwa_fd_central")}}


def build(case_name: str, method: str, batch: int, memory_batch: int) -> DFADTrainer:
    case = dataclasses.replace(CASES[case_name], batch=batch, memory_batch=memory_batch)
    models = case_models(case, torch.device("cpu"), 64)
    if method == "dfad":
        return DFADTrainer(*models, case_config(DFADConfig, case, torch.device("cpu")))
    return LRwATrainer(*models, case_config(LRwAConfig, case, torch.device("cpu"), **METHODS[method]))


def count_bytes(rank: int, world: int, out: Path, case_name: str) -> dict[str, Any]:
    """Bytes all-reduced in the second iteration (the memory is filled by the first) of each method."""
    result: dict[str, Any] = {}
    for method in METHODS:
        trainer = build(case_name, method, batch=2 * world, memory_batch=2 * world)
        trainer.train(1, progress=False)
        with AllReduceTraffic() as traffic:
            trainer.train(1, progress=False)
        result[method] = traffic.bytes
    student, generator = (sum(p.numel() for p in m.parameters()) for m in (trainer.student, trainer.generator))
    return {"bytes": result, "student_params": student, "generator_params": generator}


def time_iterations(rank: int, world: int, out: Path, case_name: str, method: str, repeats: int) -> list[float]:
    case = CASES[case_name]
    trainer = build(case_name, method, case.batch, case.memory_batch)
    trainer.train(2, progress=False)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.train(1, progress=False)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="cnn,wrn16_1,cnn32,resnet18")
    parser.add_argument("--time-cases", default="cnn", help="cases whose 1- vs 2-process time is measured")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"bytes": {}, "time": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            out = Path(tmp) / f"bytes-{name}"
            out.mkdir()
            counted = rank_values(run_local(count_bytes, out, world=2, timeout=600, case_name=name))[0]
            report["bytes"][name] = counted
            row = ", ".join(f"{m} {b / 2**20:.2f} MiB" for m, b in counted["bytes"].items())
            print(f"{name}: student {counted['student_params']:,} params, generator "
                  f"{counted['generator_params']:,}; per iteration: {row}", flush=True)
        for name in args.time_cases.split(","):
            for method in ("dfad", "lrwa_exact"):
                medians = {}
                for world in (1, 2):
                    out = Path(tmp) / f"time-{name}-{method}-{world}"
                    out.mkdir()
                    times = rank_values(run_local(time_iterations, out, world=world, timeout=600, case_name=name,
                                             method=method, repeats=args.repeats))[0]
                    medians[world] = statistics.median(times)
                report["time"][f"{name}/{method}"] = medians
                print(f"{name} {method} (global batch {CASES[name].batch}): 1 process {medians[1] * 1e3:.1f} ms, "
                      f"2 processes {medians[2] * 1e3:.1f} ms per iteration; speed-up "
                      f"{medians[1] / medians[2]:.2f}x", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
