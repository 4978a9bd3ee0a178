"""Test harness, public for users' own tests: local multi-process runs, synthetic CIFAR files in the
real on-disk format, and a counter of what crosses the process group. No library module imports it."""

from .cifar_files import write_synthetic_cifar
from .multiprocess import rank_values, run_local
from .traffic import AllReduceTraffic

__all__ = ["AllReduceTraffic", "rank_values", "run_local", "write_synthetic_cifar"]
