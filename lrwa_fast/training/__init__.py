"""Training: the trainer that assembles one adversarial DFKD iteration from parts (:mod:`.trainer`), each
part's settings from the flat config (:mod:`.settings`), its checkpoint state (:mod:`.state`), the one loop
that runs it and every teacher training (:mod:`.loop`, with :mod:`.progress`), the generator's objective, the
synthesis rounds of DeepInversion, CMI and Fast (:mod:`.synthesis`), MAD's
EMA generator, the forgetting probes, module inspection and the optional compiled student."""

from .loop import TrainingInterrupted
from .trainer import DFADTrainer, LRwATrainer, Trainer, trainer_class

__all__ = ["DFADTrainer", "LRwATrainer", "Trainer", "TrainingInterrupted", "trainer_class"]
