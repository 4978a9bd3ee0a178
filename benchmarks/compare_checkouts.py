"""Step and iteration times of two checkouts of lrwa_fast, interleaved in one run.

Runs ``python -m lrwa_fast bench ...`` alternately with each checkout first on ``PYTHONPATH``
(``--rounds`` times each, old first in odd rounds and new first in even ones, so drift hits both),
and reports, per case and variant, the median over rounds of each checkout's median time and their
ratio new/old. Example (the commit before a change, checked out with ``git worktree add``)::

    python benchmarks/compare_checkouts.py /tmp/old . --rounds 3 -- --cases cnn,wrn16_1 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_bench(checkout: Path, bench_args: list[str], out: Path) -> dict[tuple[str, str], float]:
    """Median ms per (case, variant) of one ``lrwa-fast bench`` run of ``checkout``."""
    root = checkout.resolve()  # also the working directory: `python -m` puts it first on sys.path
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-m", "lrwa_fast", "bench", *bench_args, "--json", str(out)], env=env,
                   cwd=root, check=True, stdout=subprocess.DEVNULL)
    results = json.loads(out.read_text())["results"]
    return {(r["name"], v): s["median_ms"] for r in results for v, s in r["variants"].items()}


def compare(old: Path, new: Path, rounds: int, bench_args: list[str]) -> list[dict[str, object]]:
    """Interleaved runs; one row per (case, variant) present in both checkouts."""
    times: dict[str, dict[tuple[str, str], list[float]]] = {"old": {}, "new": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            order = (("old", old), ("new", new)) if r % 2 == 0 else (("new", new), ("old", old))
            for label, checkout in order:
                print(f"round {r + 1}/{rounds}: {label} ({checkout})", file=sys.stderr, flush=True)
                for key, ms in run_bench(checkout, bench_args, Path(tmp) / f"{label}{r}.json").items():
                    times[label].setdefault(key, []).append(ms)
    rows = []
    for key in times["old"].keys() & times["new"].keys():
        old_ms, new_ms = statistics.median(times["old"][key]), statistics.median(times["new"][key])
        rows.append({"case": key[0], "variant": key[1], "old_ms": old_ms, "new_ms": new_ms,
                     "new_over_old": new_ms / old_ms, "rounds": rounds})
    return sorted(rows, key=lambda row: (row["case"], row["variant"]))


def format_rows(rows: list[dict[str, object]]) -> str:
    lines = ["| case | variant | old ms | new ms | new / old |", "|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['variant']} | {r['old_ms']:.2f} | {r['new_ms']:.2f} | {r['new_over_old']:.3f} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path, help="checkout measured as the baseline")
    parser.add_argument("new", type=Path, help="checkout measured against it")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the rows here")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    args, bench_args = parser.parse_args(argv[:cut]), argv[cut + 1:]
    rows = compare(args.old, args.new, args.rounds, bench_args)
    print(format_rows(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"old": str(args.old), "new": str(args.new), "bench_args": bench_args,
                                               "rows": rows}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
