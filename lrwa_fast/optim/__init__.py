"""From gradients to new weights: the gradient of a loss, an update's result, the :class:`Updater`
(data-parallel average, loss scaler, non-finite policy, clipping, optimiser, schedule) and the
optimisers it builds. Below the memories and the trainer: the generative memory trains its VAE
through an updater too."""

from .gradients import UpdateResult, gradients, zeros_for_unused
from .optimizers import build_optimizer
from .updater import BufferSnapshot, Updater, UpdaterSettings

__all__ = ["BufferSnapshot", "UpdateResult", "Updater", "UpdaterSettings", "build_optimizer", "gradients",
           "zeros_for_unused"]
