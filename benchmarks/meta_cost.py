"""What an LRwA meta-step costs on the CPU against a DFAD student step (the core issue's target).

    python benchmarks/meta_cost.py [--repeats 30] [--compile] [--json OUT]

Demo CNN (cnn_small ← cnn, 8×8) and WRN-16-1 (← WRN-40-2, 32×32), acquisition batch 128, memory
batch 32, one process, variants timed round-robin; medians and their ratios. Targets:
first_order ≤ 1.15× and exact ≤ 1.8× a DFAD student step. ``--compile`` adds the DFAD and
first-order steps with ``compile_student=True`` (their ratio is to the compiled DFAD step).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lrwa_fast.bench import bench, format_results

TARGETS = {"lrwa_first_order": 1.15, "lrwa_exact": 1.8, "lrwa_first_order+compile": 1.15}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", default=None)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args(argv)
    results = bench(["cnn", "wrn16_1"], "cpu", repeats=args.repeats, warmup=3, iterations=False,
                    overrides={"batch": 128, "memory_batch": 32}, compiled=args.compile)
    print(format_results(results))
    for result in results:
        for name, target in TARGETS.items():
            if name not in result["variants"]:
                continue
            ratio = result["variants"][name]["vs_dfad_step"]
            verdict = "meets" if ratio <= target else "misses"
            print(f"{result['name']}: {name} = {ratio:.2f}× DFAD step ({verdict} the ≤ {target}× target)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
