"""What an LRwA meta-step costs on the CPU against a DFAD student step and against the exact mode.

    python benchmarks/meta_cost.py [--repeats 30] [--cases cnn,wrn16_1,cnn32] [--loss l1|kl] [--compile]
                                   [--device cpu|cuda] [--json OUT]

Demo CNN (cnn_small ← cnn, 8×8), WRN-16-1 (← WRN-40-2, 32×32) and a 4-layer BatchNorm CNN of width
32 (cnn ← cnn_large, 32×32), acquisition batch 128, memory batch 32, one process, variants timed
round-robin; medians and their ratios, and each meta variant's relative gradient error to the exact
mode on one batch; then each meta-gradient alone on one fixed batch (against a plain KD gradient
and the exact mode). Targets: first_order ≤ 1.15× a DFAD step; finite differences ≥ 1.5× (central)
and ≥ 2× (one-sided) faster than exact, judged per student step and per meta-gradient.
``--compile`` adds the DFAD, first-order and finite-difference steps and gradients with
``compile_student=True`` (their ratio is to the compiled DFAD step or KD gradient; to exact, it is to
the eager exact mode, the only one: a compiled graph has no double backward).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lrwa_fast.bench.cases import COMPILED
from lrwa_fast.bench.steps import bench, format_results

AT_MOST_X_DFAD = {"lrwa_first_order": 1.15, "lrwa_first_order+compile": 1.15}
_FASTER_THAN_EXACT = {"lrwa_fd_central": 1.5, "lrwa_fd_one_sided": 2.0}
# the compiled variants have the eager ones' targets (against the eager exact mode)
AT_LEAST_X_FASTER_THAN_EXACT = {**_FASTER_THAN_EXACT, **{name + COMPILED: target
                                                         for name, target in _FASTER_THAN_EXACT.items()}}


def verdicts(result: dict) -> list[str]:
    """One line per target: the measured ratio and whether it meets the target. The finite-difference
    targets are judged on the student step and on the meta-gradient alone (both are printed)."""
    lines, variants, alone = [], result["variants"], result["meta_gradient"]
    for name, target in AT_MOST_X_DFAD.items():
        if name in variants:
            ratio = variants[name]["vs_dfad_step"]
            lines.append(f"{result['name']}: {name} = {ratio:.2f}× DFAD step "
                         f"({'meets' if ratio <= target else 'misses'} the ≤ {target}× target)")
    for name, target in AT_LEAST_X_FASTER_THAN_EXACT.items():
        if name not in variants:
            continue
        step, gradient = variants[name]["exact_speedup"], alone[name]["gradient_exact_speedup"]
        lines.append(f"{result['name']}: {name}, relative error {alone[name]['error_vs_exact']:.1e}, is "
                     f"{step:.2f}× faster than exact per student step ({_verdict(step, target)}) and "
                     f"{gradient:.2f}× per meta-gradient ({_verdict(gradient, target)}; target ≥ {target}×)")
    return lines


def _verdict(speedup: float, target: float) -> str:
    return "meets" if speedup >= target else "misses"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--cases", default="cnn,wrn16_1,cnn32")
    parser.add_argument("--loss", default="l1", choices=("l1", "kl", "js"),
                        help="student loss; finite differences need a smooth one (kl, js) to be accurate")
    parser.add_argument("--json", default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu (the CPU targets), cuda or auto")
    args = parser.parse_args(argv)
    results = bench(args.cases.split(","), args.device, repeats=args.repeats, warmup=3, iterations=False,
                    overrides={"batch": 128, "memory_batch": 32, "loss": args.loss}, compiled=args.compile)
    print(format_results(results))
    for result in results:
        print("\n".join(verdicts(result)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
