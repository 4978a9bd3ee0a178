"""Student updates as strategies: given the student and a fresh batch, return gradients and what to log.

The plain KD update (:mod:`.kd`), ZSKT's with attention transfer (:mod:`.attention`), the LRwA update
(:mod:`.meta_update`: :class:`MetaUpdate`, drawing
its retention batches from a :class:`~lrwa_fast.replay.Memory`) and the meta-gradient it computes,
a pure function of the student's parameters (:mod:`.meta_gradient`). The trainer calls an update once
per student step; an :class:`~lrwa_fast.optim.Updater` turns the gradients into new weights. Write
your own by following :class:`StudentUpdate`.
"""

from ..optim import UpdateResult
from ..runtime.precision import scaled
from .attention import AttentionSettings, AttentionTransferUpdate
from .base import KDLoss, StepContext, StudentUpdate
from .kd import KDUpdate, kd_gradients
from .meta_gradient import MetaResult, MetaSettings, meta_gradient
from .meta_update import MetaUpdate

__all__ = ["AttentionSettings", "AttentionTransferUpdate", "KDLoss", "KDUpdate",
           "MetaResult", "MetaSettings", "MetaUpdate", "StepContext", "StudentUpdate",
           "UpdateResult", "kd_gradients", "meta_gradient", "scaled"]
