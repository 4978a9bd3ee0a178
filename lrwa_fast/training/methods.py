"""The methods DFKD papers compare against, as config fields over a benchmark's shared loop (batch, steps, student
optimiser): each method's generator terms and synthesis from its release, the synthesis rounds scaled down for the
embedded benchmarks and the benchmark cases (docs/methods.md gives each source and what differs from it). The
study (:mod:`lrwa_fast.apps.study`), ``lrwa-fast bench --methods`` and ``lrwa-fast profile --methods`` read them
from here; the CIFAR presets carry the published settings (:mod:`lrwa_fast.apps.presets`).
"""

from __future__ import annotations

import math
from typing import Any

from ..config import GeneratorLossWeights, OptimizerConfig


def _adam(lr: float, betas: tuple[float, float] = (0.5, 0.999)) -> OptimizerConfig:
    """The rounds' Adam at a constant rate (the releases create it per round, without a schedule)."""
    return OptimizerConfig(name="adam", lr=lr, weight_decay=0.0, betas=betas, schedule="constant")


_W = GeneratorLossWeights
# CMI (Fang et al. 2021, DataFree's cmi_cifar10.sh): a generator re-initialised each round, 10 steps (CIFAR 200),
# Adam 1e-3 for it and its codes, decision-adversarial 0.5, BatchNorm statistics 1, one-hot 1, contrast 0.8 at 0.2.
_CMI: dict[str, Any] = dict(synthesis="reinit", generator_steps=10, adversarial_loss="kl", adversarial_agreeing=True,
                            contrastive_temperature=0.2, generator_optimizer=_adam(1e-3),
                            generator_weights=_W(adversarial=0.5, bn_prior=1.0, one_hot=1.0, contrastive=0.8))

# name → (trainer, config fields)
COMPARED_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    # DAFL (Chen et al. 2019, huawei-noah DAFL): one-hot 1, information entropy 5 (log10: balance 5 / ln 10),
    # activation 0.1, no adversary.
    "dafl": ("dfad", dict(generator_weights=_W(adversarial=0.0, one_hot=1.0, balance=5 / math.log(10),
                                               activation=0.1))),
    # ZSKT (Micaelli & Storkey 2019, polo5/ZeroShotKnowledgeTransfer): the KL adversary, attention transfer
    # β = 250 on matched blocks against a KL averaged over batch and classes (F.kl_div's "mean"): 250 × 10 classes
    # against this library's KL averaged over the batch.
    "zskt": ("dfad", dict(attention_weight=2500.0)),
    # DFQ (Choi et al. 2020, as DataFree runs it): KL adversary 1, BatchNorm statistics 1, one-hot 1, balance 20.
    "dfq": ("dfad", dict(generator_weights=_W(adversarial=1.0, bn_prior=1.0, one_hot=1.0, balance=20.0))),
    # DeepInversion (Yin et al. 2020; DataFree's deepinv_fast: 10 steps a round, CIFAR 2000 in the paper): the inputs
    # optimised by Adam 0.1 (0.5, 0.99), BatchNorm statistics 10, one-hot 1, adaptive competition 1, jitter 1/8.
    "deepinv": ("dfad", dict(synthesis="inversion", generator_steps=10, synthesis_jitter=0.125,
                             generator_optimizer=_adam(0.1, (0.5, 0.99)),
                             generator_weights=_W(adversarial=0.0, bn_prior=10.0, one_hot=1.0, competition=1.0))),
    "cmi": ("dfad", _CMI),
    "cmi_lrwa": ("lrwa", {**_CMI, "meta_mode": "exact"}),  # CMI's samples, LRwA's update and memory
    # Fast (Fang et al. 2022, Fast-5): a meta-learned generator, 5 steps a round, Adam 3e-3 (codes 0.01),
    # decision-adversarial 1.1 after 20 warm-up rounds, BatchNorm statistics 10 mixed with earlier rounds' (0.9),
    # one-hot 0.4, the generator's first layer (and its BatchNorm) re-initialised at round 120 + warm-up.
    "fast": ("dfad", dict(synthesis="meta", generator_steps=5, synthesis_latent_lr=0.01, synthesis_warmup=20,
                          adversarial_loss="kl", adversarial_agreeing=True, generator_optimizer=_adam(3e-3),
                          bn_prior_momentum=0.9, synthesis_reset_round=140,
                          generator_weights=_W(adversarial=1.1, bn_prior=10.0, one_hot=0.4))),
}
