"""lrwa_fast: data-free knowledge distillation with the LRwA meta-learned student update.

Public API: the trainers and their configs, the functional meta-gradient, the replay memory,
the reference losses (:mod:`lrwa_fast.losses`), the fused ops (:mod:`lrwa_fast.ops`) and the
model zoo (:mod:`lrwa_fast.models`).
"""

from .config import DFADConfig, GeneratorLossWeights, LRwAConfig, OptimizerConfig, load_config
from .guard import NonFiniteError
from .memory import ReplayBuffer
from .meta import MetaResult, meta_gradient
from .trainer import DFADTrainer, LRwATrainer, TrainingInterrupted

__all__ = [
    "DFADConfig",
    "DFADTrainer",
    "GeneratorLossWeights",
    "LRwAConfig",
    "LRwATrainer",
    "MetaResult",
    "NonFiniteError",
    "OptimizerConfig",
    "ReplayBuffer",
    "TrainingInterrupted",
    "load_config",
    "meta_gradient",
]
__version__ = "0.1.0"
