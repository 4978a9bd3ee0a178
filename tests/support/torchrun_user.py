"""A user's script under torchrun, run by the soak test (``tests.support.torchrun.USER_SCRIPT``): a tiny LRwA
trainer (exact meta-gradient, a replay memory) trains 3 iterations, writes its final checkpoint into
``OUT/ckpt`` and the script ends with the trainer alive, after ``destroy_process_group()`` with ``--destroy``.

    torchrun --standalone --nproc_per_node=2 tests/support/torchrun_user.py OUT [--destroy]
"""

from __future__ import annotations

import sys

import torch.distributed as dist

from lrwa_fast import LRwAConfig, LRwATrainer
from lrwa_fast.testing import tiny_models

out = sys.argv[1]
dist.init_process_group("gloo")
trainer = LRwATrainer(*tiny_models(), LRwAConfig(
    batch_size=16, latent_dim=8, iterations=3, student_steps=1, device="cpu", memory_capacity=24,
    memory_batch_size=8, memory_insert_size=8, checkpoint_dir=f"{out}/ckpt", checkpoint_every=3))
trainer.train(progress=False)
if "--destroy" in sys.argv[2:]:
    dist.destroy_process_group()
