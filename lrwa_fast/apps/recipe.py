"""The authors' LRwA recipe, defined once: gaurav104/LRA ``src/configs/Ours-1.json`` read by
``src/agents/predfkd_meta_memory.py`` (CIFAR-100, ResNet-34 → ResNet-18). The CIFAR presets (:mod:`.presets`)
and the study's ``authors*`` methods (:mod:`.study`) both build their settings here.

The recipe: 400 epochs of 72 iterations, each 1 generator step and 10 student steps on batches of 512
(latent 1000). Student: L1 between logits; SGD lr 0.1, momentum 0.9, weight decay 5e-4, cosine. Meta step:
one inner SGD step at lr 0.9 with weight decay 5e-4 (θ' = θ − 0.9(∇L_acq + 5e-4 θ)), outer loss
L1(S_θ'(x_mem)) + L1(S_θ(fresh ∪ memory)) (no separate acquisition term), BatchNorm statistics from the
joint pass only (``higher`` runs the inner loop on copies of the buffers). Memory: a cyclic list of 10
entries, each the first batch/8 samples of the last fresh batch, written every 5 epochs (80 writes in the
run) from the end of epoch 0; each student step replays one whole entry chosen uniformly. Generator:
Adam lr 0.02, constant; objective one-hot 1, class balance 5 (log10, so 5/ln 10 with the natural log),
activation 0.1, adversarial 1 − JS at T = 3.

Fitting it to another run (an embedded benchmark), with rules fixed before any run was made:

1. models, batch size and latent size are the run's (the generator's latent belongs to its architecture);
2. the run length is the run's; the memory keeps its place in the run: written every 1/80 of it, the first
   write at the end of its first 1/400 (both rounded half up, at least one iteration);
3. an entry is batch // 8 samples, the memory holds 10 entries, a draw is one entry;
4. the evaluation interval, the forgetting probes and the device are the run's;
5. everything else is the recipe's.
"""

from __future__ import annotations

import math
from typing import Any

EPOCHS, ITERATIONS_PER_EPOCH = 400, 72  # authors: max_epoch 400, 36 * (1024 // batch_size) iterations
BATCH_SIZE, LATENT_DIM = 512, 1000
MEMORY_ENTRIES = 10  # memory_capacity in entries
ENTRY_DIVISOR = 8  # an entry is batch // 8 samples
WRITES_PER_RUN = EPOCHS // 5  # one write every 5 epochs
FIRST_WRITE_FRACTION = 1 / EPOCHS  # at the end of epoch 0


def _half_up(value: float) -> int:
    return max(1, math.floor(value + 0.5))


def shared(*, batch_size: int = BATCH_SIZE, latent_dim: int = LATENT_DIM,
           iterations: int = EPOCHS * ITERATIONS_PER_EPOCH) -> dict[str, Any]:
    """The settings both arms share (the recipe without its memory, i.e. its DFAD twin), as config fields."""
    return {
        "batch_size": batch_size, "latent_dim": latent_dim, "iterations": iterations,
        "generator_steps": 1, "student_steps": 10, "loss": "l1",
        "adversarial_loss": "js", "adversarial_temperature": 3.0,
        "generator_weights": {"adversarial": 1.0, "one_hot": 1.0, "balance": 5 / math.log(10), "activation": 0.1,
                              "bn_prior": 0.0},
        "student_optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                              "schedule": "cosine"},
        "generator_optimizer": {"name": "adam", "lr": 0.02, "betas": [0.9, 0.999], "weight_decay": 0.0,
                                "schedule": "constant"},
    }


def memory(*, batch_size: int = BATCH_SIZE, iterations: int = EPOCHS * ITERATIONS_PER_EPOCH) -> dict[str, Any]:
    """The recipe's memory for a run of ``iterations`` on batches of ``batch_size`` (rules 2 and 3)."""
    entry = batch_size // ENTRY_DIVISOR
    return {"memory_policy": "fifo", "memory_draw": "entry", "memory_capacity": MEMORY_ENTRIES * entry,
            "memory_insert_size": entry, "memory_batch_size": entry,
            "memory_insert_every": _half_up(iterations / WRITES_PER_RUN),
            "memory_start": _half_up(iterations * FIRST_WRITE_FRACTION) - 1}


META_STEP: dict[str, Any] = {"meta_mode": "exact", "inner_lr": 0.9, "inner_weight_decay": 5e-4,
                             "acquire_weight": 0.0, "retain_weight": 1.0, "joint_replay": True, "bn_mode": "joint"}


def lrwa(*, batch_size: int = BATCH_SIZE, latent_dim: int = LATENT_DIM,
         iterations: int = EPOCHS * ITERATIONS_PER_EPOCH) -> dict[str, Any]:
    """The whole recipe (shared settings, memory and meta step) as config fields."""
    return {**shared(batch_size=batch_size, latent_dim=latent_dim, iterations=iterations),
            **memory(batch_size=batch_size, iterations=iterations), **META_STEP}


def fitted(run: dict[str, Any], *, with_memory: bool) -> dict[str, Any]:
    """The recipe fitted to a run described by ``run`` (an embedded benchmark's shared settings): its batch,
    latent size, length, device and probes (rules 1, 2 and 4), the recipe for the rest."""
    sizes = {k: run[k] for k in ("batch_size", "latent_dim", "iterations")}
    own = {k: run[k] for k in ("device", "probe_every", "probe_size") if k in run}
    return {**(lrwa(**sizes) if with_memory else shared(**sizes)), **own}
