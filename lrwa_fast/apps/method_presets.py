"""CIFAR presets of the methods papers compare against, on every pair of the benchmark table
(``cifar10-wrn40_2-wrn16_1-cmi``, ...): each method's published settings with the source of each, what this
library cannot express exactly, and the accuracy published for that method and pair beside them.

Sources: DAFL's release (huawei-noah/Efficient-Computing ``DAFL/README.md``, ``DAFL-train.py``), ZSKT's release
(polo5/ZeroShotKnowledgeTransfer ``scripts/ZeroShot``, ``solver.py``), the DataFree code base for DFQ,
DeepInversion and CMI (zju-vipa/DataFree ``scripts/``, ``datafree_kd.py``) and Fast-Datafree for Fast
(zju-vipa/Fast-Datafree ``scripts/fast_cifar.sh``, Fast-10).
"""

from __future__ import annotations

import math
from typing import Any

from ..data.images import image_set
from ..models.layouts import layout
from .benchmark_table import PUBLISHED, Preset

DAFL = "huawei-noah/Efficient-Computing DAFL (README's CIFAR commands, DAFL-train.py)"
ZSKT = "polo5/ZeroShotKnowledgeTransfer (scripts/ZeroShot/main0.sh, solver.py)"
DATAFREE = "zju-vipa/DataFree (9e79fa9) scripts/{}/ and datafree_kd.py"
FAST = "zju-vipa/Fast-Datafree (0dcecbc) scripts/fast_cifar.sh, Fast-10 (g_steps 10)"
LIBRARY = "this library"
# The published column of each method (presets_common.PUBLISHED) and the method's settings below.
COLUMNS = {"dafl": "DAFL", "zskt": "ZSKT", "dfq": "DFQ", "deepinv": "DeepInv", "cmi": "CMI", "fast": "Fast-10"}

_DATAFREE_STUDENT = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "cosine"}
_ROUND_VIEW = {"synthesis_jitter": 0.125, "synthesis_flip": True}  # a 4-pixel crop of 32 and flips


def _adam(lr: float, betas: tuple[float, float] = (0.5, 0.999), schedule: str = "constant") -> dict[str, Any]:
    return {"name": "adam", "lr": lr, "weight_decay": 0.0, "betas": list(betas), "schedule": schedule}


def _dafl(dataset: str, _pair: tuple[str, str]) -> tuple[dict[str, Any], dict[str, str], tuple[str, ...]]:
    ie = 5.0 if dataset == "cifar10" else 20.0
    trainer = {"batch_size": 1024, "latent_dim": 1000, "iterations": 2000 * 120, "generator_steps": 1,
               "student_steps": 1, "loss": "kl", "generator_weights": {
                   "adversarial": 0.0, "one_hot": 0.05, "balance": ie / math.log(10), "activation": 0.01},
               "student_optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                                     "schedule": "cosine"},
               "generator_optimizer": _adam(0.02, (0.9, 0.999))}
    sources = {"trainer.batch_size, latent_dim, iterations": f"{DAFL}: batch 1024, latent 1000, 2000 epochs of 120",
               "trainer.generator_weights": f"{DAFL}: oh 0.05, ie {ie:g} (log10 entropy: balance = ie / ln 10), "
               "a 0.01, no adversary",
               "trainer.loss": f"{DAFL}: kdloss, KL at T = 1 averaged over the batch",
               "trainer.student_optimizer": f"{DAFL}: SGD 0.1, momentum 0.9, wd 5e-4",
               "trainer.generator_optimizer": f"{DAFL}: Adam lr_G 0.02"}
    notes = ("DAFL steps the generator and the student on the same batch at once; here the student steps on a "
             "fresh batch after the generator's step",
             "DAFL's student schedule is ×0.1 at epochs 800 and 1600; here cosine over the run",
             "the README passes --act 0.01, which DAFL-train.py does not define (its flag is --a): the run as "
             "written stops at argument parsing; 0.01 is taken as intended",
             "DAFL's generator (BatchNorm eps 0.8 from a positional argument) differs from lrwa_fast.models.Generator")
    return trainer, sources, notes


def _zskt(dataset: str, _pair: tuple[str, str]) -> tuple[dict[str, Any], dict[str, str], tuple[str, ...]]:
    classes = image_set(dataset).num_classes
    trainer = {"batch_size": 128, "latent_dim": 100, "iterations": 80000, "generator_steps": 1, "student_steps": 10,
               "loss": "kl", "adversarial_loss": "kl", "attention_weight": 250.0 * classes, "grad_clip": 5.0 * classes,
               "student_optimizer": _adam(2e-3, (0.9, 0.999), "cosine"),
               "generator_optimizer": _adam(1e-3, (0.9, 0.999), "cosine")}
    sources = {"trainer.batch_size, latent_dim, iterations, generator_steps, student_steps":
               f"{ZSKT}: batch 128, z_dim 100, 8e4 pseudo batches, 1 generator and 10 student iterations",
               "trainer.attention_weight": f"{ZSKT}: AT_beta 250 against F.kl_div's mean over batch and classes; "
               f"× {classes} classes against this library's KL averaged over the batch",
               "trainer.loss, adversarial_loss": f"{ZSKT}: forward KL at T = 1, the generator minimises its negative",
               "trainer.student_optimizer, generator_optimizer": f"{ZSKT}: Adam 2e-3 and 1e-3, cosine over the run",
               "trainer.grad_clip": f"{ZSKT}: gradient norm clipped at 5 for its loss; × {classes} for this library's "
               "(the student's here)"}
    notes = ("ZSKT reuses one pseudo batch for its generator step and its 10 student steps; here each student step "
             "draws a fresh batch",
             "ZSKT clips the generator's gradient norm at 5 as well; here only the student's",
             "ZSKT pairs a WRN's group outputs; here the last map of each resolution (docs/methods.md)")
    return trainer, sources, notes


def _dfq(dataset: str, pair: tuple[str, str]) -> tuple[dict[str, Any], dict[str, str], tuple[str, ...]]:
    lr = 0.05 if (dataset, pair[0]) == ("cifar100", "resnet34") else 0.1
    trainer = {"batch_size": 256, "latent_dim": 256, "iterations": 200 * 400 // 10, "generator_steps": 1,
               "student_steps": 10, "loss": "kl", "adversarial_loss": "kl",
               "generator_weights": {"adversarial": 1.0, "bn_prior": 1.0, "one_hot": 1.0, "balance": 20.0},
               "student_optimizer": {**_DATAFREE_STUDENT, "lr": lr}, "generator_optimizer": _adam(1e-3)}
    source = DATAFREE.format("dfq")
    sources = {"trainer.*": f"{source}: batch 256, nz 256, 200 epochs of 400 student steps in rounds of kd_steps 10 "
               f"after g_steps 1; adv 1, bn 1, oh 1, balance 20; KL at T = 1; SGD {lr:g} (wd 1e-4, cosine); "
               "generator Adam 1e-3 (0.5, 0.999)"}
    notes = ("DataFree's balance term is Σ p̄ log p̄; this library's log C − H(p̄): the same gradient",)
    return trainer, sources, notes


def _rounds(pool_rounds: int) -> dict[str, Any]:
    """What the synthesis-round presets share: DataFree's batch and student, one round per epoch of 400 student
    steps at T = 20, every round's batch kept."""
    return {"batch_size": 256, "latent_dim": 256, "iterations": pool_rounds, "student_steps": 400, "loss": "kl",
            "temperature": 20.0, "student_optimizer": dict(_DATAFREE_STUDENT), "synthesis_pool": 256 * pool_rounds,
            **_ROUND_VIEW}


_ROUND_NOTES = ("DataFree keeps every synthesised batch on disk; here the pool holds all of them in memory "
                "(synthesis_pool = batch × rounds)",
                "DataFree's student batches pass through the dataset's crop and flip; here the pool samples as made",
                "DataFree's views are per-sample kornia crops; here one shift and one flip per batch")


def _deepinv(dataset: str, _pair: tuple[str, str]) -> tuple[dict[str, Any], dict[str, str], tuple[str, ...]]:
    mean, std = layout("datafree").normalisation[dataset]  # the normaliser its clip_images is given
    trainer = {**_rounds(200), "synthesis": "inversion", "generator_steps": 1000,
               "generator_optimizer": _adam(0.1, (0.5, 0.99)),
               "synthesis_clip_mean": list(mean), "synthesis_clip_std": list(std),
               "generator_weights": {"adversarial": 0.0, "bn_prior": 10.0, "one_hot": 1.0, "competition": 1.0,
                                     "tv_l1": 1e-3}}
    source = DATAFREE.format("deepinv")
    sources = {"trainer.*": f"{source}: inputs optimised 1000 steps a round by Adam 0.1 (0.5, 0.99), clipped to the "
               "image range after each step under the teacher's normalisation (DataFree's, registry.py "
               "NORMALIZE_DICT); bn 10, oh 1, adv 1 as −JS at T = 3 (the competition term: 1 − JS), tv 0.001 (its L1 "
               "form), l2 0; 200 epochs of one round and 400 student steps at T = 20; SGD 0.1 (wd 1e-4, cosine)"}
    notes = (*_ROUND_NOTES, "the published DeepInv column is DeepInv-2k (2000 steps a round)",
             "a teacher trained with another normalisation needs synthesis_clip_mean / synthesis_clip_std set to it")
    return trainer, sources, notes


def _cmi(_dataset: str, pair: tuple[str, str]) -> tuple[dict[str, Any], dict[str, str], tuple[str, ...]]:
    trainer = {**_rounds(200), "synthesis": "reinit", "generator_steps": 200, "adversarial_loss": "kl",
               "adversarial_agreeing": True,
               "generator_optimizer": _adam(1e-3), "contrastive_temperature": 0.2, "contrastive_bank": 40960,
               "contrastive_negatives": 4096, "contrastive_head_dim": 256,
               "generator_weights": {"adversarial": 0.5, "bn_prior": 1.0, "one_hot": 1.0, "contrastive": 0.8}}
    source = DATAFREE.format("cmi")
    sources = {"trainer.*": f"{source} (cmi_cifar10.sh): a generator re-initialised each round, 200 steps with its "
               "codes (Adam 1e-3, (0.5, 0.999)); adv 0.5 (decision-adversarial), bn 1, oh 1, cr 0.8, cr_T 0.2; bank "
               "40960, 4096 negatives, head 256; 200 epochs of one round and 400 student steps at T = 20"}
    notes = (*_ROUND_NOTES,
             *(("CMI takes the inputs of a ResNet-34 teacher's layer1-layer4 as features; here every BatchNorm "
                "input",)
               if pair[0] == "resnet34" else ()))
    return trainer, sources, notes


_FAST_WEIGHTS = {"resnet34": (1.33, 0.5), "vgg11": (1.0, 0.5), "wrn40_2": (1.1, 0.4)}  # adv, oh by teacher


def _fast(_dataset: str, pair: tuple[str, str]) -> tuple[dict[str, Any], dict[str, str], tuple[str, ...]]:
    adv, oh = _FAST_WEIGHTS[pair[0]]
    trainer = {**_rounds(220), "synthesis": "meta", "generator_steps": 10, "synthesis_latent_lr": 0.01,
               "synthesis_warmup": 20, "adversarial_loss": "kl", "adversarial_agreeing": True,
               "bn_prior_momentum": 0.9, "synthesis_reset_round": 140,
               "generator_optimizer": _adam(2e-3),
               "student_optimizer": {**_DATAFREE_STUDENT, "lr": 0.2},
               "generator_weights": {"adversarial": adv, "bn_prior": 10.0, "one_hot": oh}}
    sources = {"trainer.*": f"{FAST}: a meta-learned generator 10 steps a round (lr_g 2e-3, lr_z 0.01), first-order "
               f"MAML; adv {adv:g} after 20 warm-up epochs, bn 10 with bn_mmt 0.9, oh {oh:g}; reset_l0 (the first "
               "layer re-initialised at epoch 120 + warm-up); 220 epochs of one round and 400 student steps at T = 20; "
               "SGD 0.2 (wd 1e-4, cosine)"}
    notes = (*_ROUND_NOTES, "Fast trains no student in its 20 warm-up epochs; here the student trains from the first")
    return trainer, sources, notes


RECIPES = {"dafl": _dafl, "zskt": _zskt, "dfq": _dfq, "deepinv": _deepinv, "cmi": _cmi, "fast": _fast}


def method_preset(dataset: str, teacher: str, student: str, method: str) -> Preset:
    """The preset of ``method`` (:data:`RECIPES`) on one pair of the benchmark table."""
    trainer, sources, notes = RECIPES[method](dataset, (teacher, student))
    classes, size = image_set(dataset).num_classes, image_set(dataset).image_size
    name = f"{dataset}-{teacher}-{student}-{method}"
    spec = {"method": "dfad", "dataset": dataset,
            "teacher": {"arch": teacher, "num_classes": classes, "in_channels": 3},
            "student": {"arch": student, "num_classes": classes, "in_channels": 3},
            "generator": {"img_size": size, "ngf": 64}, "trainer": {**trainer, "seed": 0},
            "eval_every": max(1, trainer["iterations"] // 200), "output_dir": f"lrwa_runs/{name}"}
    published = PUBLISHED[(dataset, teacher, student)]
    shown = f"published {COLUMNS[method]} student: {published.methods[COLUMNS[method]]:.2f} ({published.source})"
    return Preset(name, f"{COLUMNS[method]}, {teacher} -> {student} on {dataset}, its published settings", spec,
                  {"dataset, teacher.arch, student.arch": "the DataFree / CMI / Fast-Datafree benchmark table",
                   **sources, "eval_every": LIBRARY + " (200 evaluations a run)", "generator": LIBRARY +
                   ": lrwa_fast.models.Generator, ngf 64 (DataFree's generator has the same layers)"},
                  (*notes, shown), published)


METHOD_PRESETS: list[Preset] = [method_preset(dataset, teacher, student, method)
                                for dataset, teacher, student in PUBLISHED for method in RECIPES]
