"""Ablation of LRwA's design choices on the digits demo, against DFAD, same seeds and budget.

    python benchmarks/ablation.py --iterations 600 --seeds 3 --jobs 2 --out lrwa_runs/ablation

It is the demo (:func:`lrwa_fast.apps.demo.run_demo`) with one method per variant: finished runs are kept
in ``<out>/runs`` and unfinished ones checkpoint, so an interrupted ablation resumes where it
stopped (``--fresh`` starts over). The table (markdown) goes to stdout and ``<out>/ablation.md``;
``--only`` restricts the variants (comma-separated names).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lrwa_fast.apps.demo import demo_plan, format_table, run_demo
from lrwa_fast.apps.runs import RunPlan, method_config, method_dict

L1 = {"loss": "l1", "adversarial_loss": "l1", "retain_weight": 1.0}
R1 = {"retain_weight": 1.0}

# name → (method, overrides of that method's demo config). The demo's defaults (KL loss, retain
# weight 0.25) came out of these rounds: "L1 ·" is the screening on the authors' L1 loss (run with
# --iterations 400), "KL ·" the screening on KL with retain weight 1 (--seeds 2).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "DFAD": ("DFAD", {}),
    "LRwA": ("LRwA", {}),
    "LRwA · finite differences (central)": ("LRwA", {"meta_mode": "finite_difference"}),
    "LRwA · finite differences (one-sided)": ("LRwA", {"meta_mode": "finite_difference", "fd_scheme": "one_sided"}),
    "LRwA · first order": ("LRwA", {"meta_mode": "first_order"}),
    "LRwA · generative memory": ("LRwA", {"memory_kind": "generative"}),
    "LRwA · generative memory + first order": ("LRwA", {"memory_kind": "generative", "meta_mode": "first_order"}),
    "KL · retain weight 1": ("LRwA", R1),
    "KL · retain 1 + inner lr 0.005": ("LRwA", {**R1, "inner_lr": 0.005}),
    "KL · retain 1 + first order + inner lr 0.005": ("LRwA", {**R1, "meta_mode": "first_order",
                                                               "inner_lr": 0.005}),
    "KL · joint replay (no meta)": ("LRwA", {"meta_mode": "none", "joint_replay": True}),
    "KL · retain 1 + memory batch 8": ("LRwA", {**R1, "memory_batch_size": 8}),
    "KL · retain 1 + inner lr 0.2": ("LRwA", {**R1, "inner_lr": 0.2}),
    "KL · retain 1 + BN: all passes update": ("LRwA", {**R1, "bn_mode": "all"}),
    "KL · retain 1 + memory from it 200": ("LRwA", {**R1, "memory_start": 200}),
    "L1 · DFAD": ("DFAD", L1),
    "L1 · LRwA": ("LRwA", L1),
    "L1 · joint replay (no meta)": ("LRwA", {**L1, "meta_mode": "none", "joint_replay": True}),
    "L1 · exact + joint replay": ("LRwA", {**L1, "joint_replay": True}),
    "L1 · first order": ("LRwA", {**L1, "meta_mode": "first_order"}),
    "L1 · fifo memory": ("LRwA", {**L1, "memory_policy": "fifo"}),
    "L1 · memory from it 100": ("LRwA", {**L1, "memory_start": 100}),
    "L1 · memory from it 200 + fifo 512": ("LRwA", {**L1, "memory_start": 200, "memory_policy": "fifo",
                                                   "memory_capacity": 512}),
    "L1 · insert 8 per it": ("LRwA", {**L1, "memory_insert_size": 8}),
    "L1 · insert every 10 its": ("LRwA", {**L1, "memory_insert_every": 10}),
    "L1 · small memory (256)": ("LRwA", {**L1, "memory_capacity": 256}),
    "L1 · BN: all passes update": ("LRwA", {**L1, "bn_mode": "all"}),
    "L1 · BN: retention eval": ("LRwA", {**L1, "bn_mode": "retain_eval"}),
    "L1 · memory batch 128": ("LRwA", {**L1, "memory_batch_size": 128}),
    "L1 · memory batch 8": ("LRwA", {**L1, "memory_batch_size": 8}),
    "L1 · inner lr 0.005": ("LRwA", {**L1, "inner_lr": 0.005}),
    "L1 · inner lr 0.5": ("LRwA", {**L1, "inner_lr": 0.5}),
    "L1 · inner lr 0.005 + retain 0.1": ("LRwA", {**L1, "inner_lr": 0.005, "retain_weight": 0.1}),
    "L1 · retain weight 0.25": ("LRwA", {**L1, "retain_weight": 0.25}),
    "L1 · retain weight 4": ("LRwA", {**L1, "retain_weight": 4.0}),
    "L1 · student lr 0.05": ("LRwA", {**L1, "student_optimizer": {"lr": 0.05}}),
    "L1 · first order + inner lr 0.005": ("LRwA", {**L1, "meta_mode": "first_order", "inner_lr": 0.005}),
}


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overrides``, nested dicts merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) else value
    return out


def ablation_plan(names: list[str], iterations: int, eval_every: int, seeds: int) -> RunPlan:
    """A demo plan whose methods are the chosen variants (of the digits demo's methods at its own length)."""
    base = demo_plan("digits")
    methods = {name: method_config(merged(method_dict(base.methods[VARIANTS[name][0]]), VARIANTS[name][1]))[1]
               for name in names}
    return RunPlan(iterations=iterations, eval_every=eval_every, seeds=seeds, methods=methods)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (one thread each)")
    parser.add_argument("--only", default="", help="comma-separated variant names")
    parser.add_argument("--out", default="lrwa_runs/ablation")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "lrwa_fast"))
    parser.add_argument("--fresh", action="store_true", help="discard finished runs in --out first")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    plan = ablation_plan(names, args.iterations, args.eval_every, args.seeds)
    report = run_demo(plan, Path(args.out), Path(args.cache_dir), progress=args.jobs == 1,
                      resume=not args.fresh, jobs=args.jobs)
    text = format_table(report)
    (Path(args.out) / "ablation.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
