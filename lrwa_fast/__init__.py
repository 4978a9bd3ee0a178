"""lrwa_fast: data-free knowledge distillation with the LRwA meta-learned student update.

Public API: the trainers and their configs, the student updates they are built from
(:mod:`lrwa_fast.updates`), the functional meta-gradient, the memories (buffer and generative), the
reference losses (:mod:`lrwa_fast.losses`), the fused ops (:mod:`lrwa_fast.ops`), the model zoo
(:mod:`lrwa_fast.models`) and data parallelism (:mod:`lrwa_fast.distributed`).
"""

from .config import DFADConfig, GeneratorLossWeights, LRwAConfig, OptimizerConfig, load_config
from .distributed import DataParallel, PeerFailure
from .generative_replay import GenerativeMemory
from .guard import NonFiniteError
from .memory import ReplayBuffer
from .meta import MetaResult, gradients, meta_gradient
from .metrics import accuracy_evaluator
from .replay import InsertSchedule, Memory, ReplayMemory
from .trainer import DFADTrainer, LRwATrainer, TrainingInterrupted
from .updater import Updater
from .updates import KDLoss, KDUpdate, MetaUpdate, StepContext, StudentUpdate, UpdateResult, kd_gradients

__all__ = [
    "DFADConfig",
    "DFADTrainer",
    "DataParallel",
    "GenerativeMemory",
    "GeneratorLossWeights",
    "InsertSchedule",
    "KDLoss",
    "KDUpdate",
    "LRwAConfig",
    "LRwATrainer",
    "Memory",
    "MetaResult",
    "MetaUpdate",
    "NonFiniteError",
    "OptimizerConfig",
    "PeerFailure",
    "ReplayBuffer",
    "ReplayMemory",
    "StepContext",
    "StudentUpdate",
    "TrainingInterrupted",
    "UpdateResult",
    "Updater",
    "accuracy_evaluator",
    "gradients",
    "kd_gradients",
    "load_config",
    "meta_gradient",
]
__version__ = "0.2.0"
