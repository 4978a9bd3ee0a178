"""Where a plan's units run. :class:`LocalExecutor` runs them on this machine, one after another or in a pool of
processes (one thread each); :mod:`.slurm` submits them to a Slurm cluster. Both leave the same folders, from
which a study is reported (:func:`~lrwa_fast.apps.units.finished_runs`).

:func:`run_plan` is the engine behind ``lrwa-fast demo``, the local study and ``benchmarks/ablation.py``: the
teacher unit, then every run unit, here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..runtime.distributed import Ranks
from .runs import RunPlan, RunResult, check_plan
from .units import Unit, plan_units


class LocalExecutor:
    """Run units in this process (``jobs=1``) or in ``jobs`` spawned processes with one thread each, each run's
    end reported as it comes (``progress``)."""

    def __init__(self, jobs: int = 1, progress: bool = True) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.jobs, self.progress = jobs, progress

    def run(self, units: list[Unit]) -> list[RunResult]:
        """Every unit's result, in the units' order."""
        if self.jobs == 1:
            runs = []
            for i, unit in enumerate(units):
                if self.progress:
                    print(f"[{i + 1}/{len(units)}] {unit.method}, seed {unit.seed}", flush=True)
                runs.append(unit())
            return runs
        import multiprocessing as mp

        done = {}
        with mp.get_context("spawn").Pool(self.jobs) as pool:
            for k, (i, run) in enumerate(pool.imap_unordered(_indexed_unit, list(enumerate(units)))):
                done[i] = run
                if self.progress:
                    print(f"[{k + 1}/{len(units)}] done: {run['method']}, seed {run['seed']}, mean accuracy "
                          f"{100 * run['stats']['mean']:.1f}%, {run['wall_time_s']:.0f} s", flush=True)
        return [done[i] for i in range(len(units))]


def _indexed_unit(item: tuple[int, Unit]) -> tuple[int, RunResult]:
    index, unit = item
    torch.set_num_threads(1)
    return index, unit()


def run_plan(plan: RunPlan, out_dir: Path, cache_dir: Path, progress: bool = True, resume: bool = False,
             jobs: int = 1) -> tuple[list[RunResult], float]:
    """Train (or load) the teacher, then run (or reload) every method for every seed; returns the runs (seed
    by seed) and the teacher's test accuracy.

    Finished runs are kept in ``out_dir/runs`` and unfinished ones checkpoint in
    ``out_dir/checkpoints``; ``resume=True`` reuses both, otherwise they are cleared first.
    ``jobs > 1`` runs that many processes with one thread each, each run's end reported as it comes.
    Under torchrun every run is data-parallel over the ranks and rank 0 alone writes files.
    """
    check_plan(plan, jobs)
    teacher, units = plan_units(plan, out_dir, cache_dir, progress=progress, run_progress=progress and jobs == 1)
    if not resume and Ranks.current().is_main:
        clear_runs(out_dir)
    return run_units(teacher, units, jobs=jobs, progress=progress)


def clear_runs(out_dir: Path) -> None:
    """Forget the finished and unfinished runs in ``out_dir`` (``runs/``, ``checkpoints/``)."""
    for folder in ("runs", "checkpoints"):
        shutil.rmtree(out_dir / folder, ignore_errors=True)


def run_units(teacher: Unit, units: list[Unit], *, jobs: int = 1, progress: bool = True
              ) -> tuple[list[RunResult], float]:
    """The teacher unit (rank 0 first under torchrun), then the run units here; returns the runs' results and
    the teacher's accuracy."""
    with Ranks.current().main_first("training the benchmark's teacher"):
        teacher_acc = teacher()
    return LocalExecutor(jobs, progress).run(units), teacher_acc
