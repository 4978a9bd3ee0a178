"""Student updates as strategies: given the student and a fresh batch, return gradients and what to log.

The trainer calls an update once per student step; the :class:`~lrwa_fast.updater.Updater` then
turns the gradients into new weights. Write your own by following :class:`StudentUpdate`.
"""

from ..precision import scaled
from .base import KDLoss, StepContext, StudentUpdate, UpdateResult
from .kd import KDUpdate, kd_gradients
from .meta import MetaUpdate

__all__ = ["KDLoss", "KDUpdate", "MetaUpdate", "StepContext", "StudentUpdate", "UpdateResult", "kd_gradients",
           "scaled"]
