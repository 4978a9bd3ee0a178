"""Test harness, public for users' own tests: the smallest models a trainer runs on, local multi-process runs,
synthetic CIFAR, SVHN and Tiny-ImageNet files in the real on-disk formats, and a counter of what crosses the
process group. No library module imports it."""

from .cifar_files import write_synthetic_cifar
from .multiprocess import rank_values, run_local
from .svhn_files import write_svhn_files
from .tiny import TINY_RUN, one_seed_models, tiny_models
from .tiny_imagenet_files import write_tiny_imagenet
from .traffic import AllReduceTraffic

__all__ = ["TINY_RUN", "AllReduceTraffic", "one_seed_models", "rank_values", "run_local", "tiny_models",
           "write_svhn_files", "write_synthetic_cifar", "write_tiny_imagenet"]
