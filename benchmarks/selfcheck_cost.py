"""What the fast paths' self-checks cost: each check (run once per process, device and dtype, the first time an
``auto`` backend would use the path) against one LRwA iteration of a bench case on the same device.

    PYTHONPATH=. python benchmarks/selfcheck_cost.py [--case cnn] [--device auto] [--repeats 5]

Each check is timed ``--repeats`` times afresh (medians; on a GPU the first run also compiles the kernel, which
the first real call would do anyway: reported apart). Triton's checks run only on a CUDA device (on the CPU they
would run in the interpreter, which says nothing of the cost); the ``cpp`` replay check on the CPU.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from lrwa_fast.bench.cases import CASES
from lrwa_fast.bench.profiling import ProfilePlan, build_trainer, time_block
from lrwa_fast.ops import dispatch
from lrwa_fast.ops.kernel_checks import CHECKS
from lrwa_fast.replay.buffer import backends, cpp_backend
from lrwa_fast.replay.buffer.backend_check import replay_check
from lrwa_fast.runtime.distributed import resolve_device
from lrwa_fast.runtime.selfcheck import run_check

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def probes_here(device: torch.device) -> dict[str, object]:
    """The checks this device runs: the Triton kernels' on CUDA, the compiled replay backend's."""
    found = {}
    if device.type == "cuda" and dispatch.triton_available():
        found.update(CHECKS)
    extension = backends.extension_status()
    if extension["status"] == "loaded" and (device.type == "cpu" or extension["cuda"]):
        found[f"replay_{'cpp' if device.type == 'cpu' else 'cuda'}"] = replay_check(cpp_backend)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="cnn", choices=sorted(CASES))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = resolve_device(args.device)
    trainer = build_trainer("LRwA exact", CASES[args.case], device, ProfilePlan())
    iteration_ms = statistics.median(time_block(trainer, device, 3, 1)["total_ms"] for _ in range(args.repeats))
    print(f"one LRwA (exact) iteration of case {args.case} on {device}: {iteration_ms:.1f} ms (median of "
          f"{args.repeats} blocks of 3)\n")
    print("| check | dtype | first run ms | median ms | × one iteration | verdict |\n|---|---|---|---|---|---|")
    total = 0.0
    for path, check in probes_here(device).items():
        for dtype in DTYPES:
            runs = [run_check(path, device, dtype, check) for _ in range(args.repeats + 1)]
            median = 1e3 * statistics.median(r.seconds for r in runs[1:])
            total += median
            print(f"| {path} | {str(dtype).removeprefix('torch.')} | {1e3 * runs[0].seconds:.1f} | {median:.2f} | "
                  f"{median / iteration_ms:.3f} | {'pass' if all(r.passed for r in runs) else runs[0].detail} |")
    print(f"\nevery check once (a process using all of them): {total:.1f} ms = {total / iteration_ms:.2f} "
          "iterations, once per process")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
