"""lrwa_fast: data-free knowledge distillation with the LRwA meta-learned student update.

Public API: the trainer and its configs (:mod:`lrwa_fast.training`), the student updates it is built
from (:mod:`lrwa_fast.updates`, the functional meta-gradient among them), the memories, buffer and
generative (:mod:`lrwa_fast.replay`), the updater (:mod:`lrwa_fast.optim`), the fused ops and their
references (:mod:`lrwa_fast.ops`), the model zoo (:mod:`lrwa_fast.models`) and data parallelism
(:mod:`lrwa_fast.runtime.distributed`). The command line and the reports are in :mod:`lrwa_fast.apps`,
benchmarks in :mod:`lrwa_fast.bench`, a test harness in :mod:`lrwa_fast.testing`.
"""

from .config import DFADConfig, GeneratorLossWeights, LRwAConfig, OptimizerConfig, load_config
from .optim import Updater, gradients
from .replay import BufferMemory, GenerativeMemory, InsertSchedule, Memory, ReplayBuffer
from .runtime.distributed import PeerFailure, Ranks
from .runtime.guard import NonFiniteError
from .runtime.metrics import accuracy_evaluator
from .training import DFADTrainer, LRwATrainer, Trainer, TrainingInterrupted
from .updates import (
    KDLoss,
    KDUpdate,
    MetaResult,
    MetaSettings,
    MetaUpdate,
    StepContext,
    StudentUpdate,
    UpdateResult,
    kd_gradients,
    meta_gradient,
)

__all__ = [
    "BufferMemory",
    "DFADConfig",
    "DFADTrainer",
    "GenerativeMemory",
    "GeneratorLossWeights",
    "InsertSchedule",
    "KDLoss",
    "KDUpdate",
    "LRwAConfig",
    "LRwATrainer",
    "Memory",
    "MetaResult",
    "MetaSettings",
    "MetaUpdate",
    "NonFiniteError",
    "OptimizerConfig",
    "PeerFailure",
    "Ranks",
    "ReplayBuffer",
    "StepContext",
    "StudentUpdate",
    "Trainer",
    "TrainingInterrupted",
    "UpdateResult",
    "Updater",
    "accuracy_evaluator",
    "gradients",
    "kd_gradients",
    "load_config",
    "meta_gradient",
]
__version__ = "0.4.0"

# Names of earlier releases, still importable (with a DeprecationWarning): old name -> (current object, release).
_RENAMED = {"DataParallel": (Ranks, "0.2"), "ReplayMemory": (BufferMemory, "0.3")}


def __getattr__(name: str) -> object:
    if name in _RENAMED:
        import warnings

        current, release = _RENAMED[name]
        warnings.warn(f"lrwa_fast.{name} (the name of lrwa_fast {release}) is lrwa_fast.{current.__name__} now",
                      DeprecationWarning, stacklevel=2)
        return current
    raise AttributeError(f"module 'lrwa_fast' has no attribute {name!r}")
