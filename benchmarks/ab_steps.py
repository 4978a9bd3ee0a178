"""Step and iteration times of an earlier lrwa_fast against this one, in one process, interleaved.

    python benchmarks/ab_steps.py OLD_CHECKOUT [--cases cnn,wrn16_1] [--repeats 15] [--json OUT]

On a shared machine, the speed of separate runs drifts by ±10–20%, which hides a 3% difference.
Here the earlier package (``OLD_CHECKOUT/lrwa_fast``, copied and imported as ``lrwa_fast_old``)
and this one build the same trainers (``lrwa_fast.bench.steps.step_functions``: same models, seeds and
batch sizes) and their steps alternate call by call, old first in even repeats and new first in
odd ones, so drift hits both alike. Reported: each side's median and the ratio new / old.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from lrwa_fast.bench import cases as new_cases
from lrwa_fast.bench import steps as new_bench

VARIANTS = ("dfad_step", "lrwa_first_order", "lrwa_exact", "dfad_iteration", "lrwa_iteration")


def import_old(checkout: Path, where: Path) -> ModuleType:
    """``checkout/lrwa_fast`` imported as ``lrwa_fast_old`` (absolute self-references renamed)."""
    target = where / "lrwa_fast_old"
    shutil.copytree(checkout / "lrwa_fast", target)
    for path in target.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("lrwa_fast.", "lrwa_fast_old.").replace("from lrwa_fast ", "from lrwa_fast_old "),
                        encoding="utf-8")
    sys.path.insert(0, str(where))
    old = importlib.import_module("lrwa_fast_old.bench")  # a module before 0.3, a package with .steps since
    return importlib.import_module("lrwa_fast_old.bench.steps") if hasattr(old, "__path__") else old


def alternate(old: Callable[[], object], new: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median seconds of each, timed in alternation."""
    times: dict[str, list[float]] = {"old": [], "new": []}
    for r in range(repeats):
        order = (("old", old), ("new", new)) if r % 2 == 0 else (("new", new), ("old", old))
        for label, fn in order:
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in times.items()}


def compare_case(old_bench: ModuleType, name: str, repeats: int, warmup: int,
                 variants: tuple[str, ...] = VARIANTS) -> list[dict[str, object]]:
    device = torch.device("cpu")
    old_fns = old_bench.step_functions(old_bench.CASES[name], device, variants)
    new_fns = new_bench.step_functions(new_cases.CASES[name], device, variants)
    rows = []
    for variant in variants:
        for _ in range(warmup):
            old_fns[variant]()
            new_fns[variant]()
        n = max(3, repeats // 3) if variant.endswith("iteration") else repeats
        medians = alternate(old_fns[variant], new_fns[variant], n)
        rows.append({"case": name, "variant": variant, "old_ms": 1e3 * medians["old"], "new_ms": 1e3 * medians["new"],
                     "new_over_old": medians["new"] / medians["old"], "repeats": n})
        print(f"{name} {variant}: old {rows[-1]['old_ms']:.2f} ms, new {rows[-1]['new_ms']:.2f} ms, "
              f"new/old {rows[-1]['new_over_old']:.3f}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path, help="checkout of the earlier commit (e.g. from git worktree add)")
    parser.add_argument("--cases", default="cnn,wrn16_1")
    parser.add_argument("--repeats", type=int, default=15, help="per step variant (iterations: a third)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {VARIANTS}")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        old_bench = import_old(args.old.resolve(), Path(tmp))
        variants = tuple(args.variants.split(","))
        rows = [row for name in args.cases.split(",")
                for row in compare_case(old_bench, name, args.repeats, args.warmup, variants)]
    print("| case | variant | old ms | new ms | new / old | repeats |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['variant']} | {r['old_ms']:.2f} | {r['new_ms']:.2f} | {r['new_over_old']:.3f} "
              f"| {r['repeats']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"old": str(args.old), "rows": rows}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
