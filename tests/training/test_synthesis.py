"""Synthesis rounds (DeepInversion, CMI, Fast) and ZSKT's attention update, as parts of the trainer: what a round
keeps, what each kind optimises, the meta step, the contrast bank, the rules, exact resume and composition with
LRwA's update."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lrwa_fast import DFADConfig, DFADTrainer, GeneratorLossWeights, LRwAConfig, LRwATrainer, OptimizerConfig
from lrwa_fast.ops import synthesis_terms as terms
from lrwa_fast.training.generator_objective import TeacherProbe
from lrwa_fast.training.synthesis import (
    FirstOrderMeta,
    first_layers,
    jitter_and_flip,
    local_view,
    reinitialise,
    reset_first_layers,
)
from lrwa_fast.updates import AttentionTransferUpdate, StepContext
from lrwa_fast.updates.attention import block_maps, matched_blocks

KINDS = {
    "inversion": dict(generator_weights=GeneratorLossWeights(adversarial=1, bn_prior=10, one_hot=1, tv_l1=1e-3,
                                                             tv_l2=1e-4, input_l2=1e-5, competition=1),
                      synthesis_jitter=0.125, synthesis_flip=True,
                      generator_optimizer={"name": "adam", "lr": 0.1, "betas": (0.5, 0.99)}),
    "reinit": dict(generator_weights=GeneratorLossWeights(adversarial=0.5, bn_prior=1, one_hot=1, contrastive=0.8),
                   adversarial_agreeing=True, contrastive_bank=64, contrastive_negatives=24),
    "meta": dict(generator_weights=GeneratorLossWeights(adversarial=1.1, bn_prior=10, one_hot=0.4),
                 adversarial_agreeing=True, synthesis_warmup=1, synthesis_latent_lr=0.01),
}


def config(kind, cls=DFADConfig, **extra):
    fields = dict(batch_size=16, latent_dim=8, iterations=4, generator_steps=3, student_steps=2, device="cpu",
                  seed=3, synthesis=kind, synthesis_pool=40, generator_optimizer={"name": "adam", "lr": 1e-3}) \
        | KINDS[kind] | extra
    if isinstance(fields["generator_optimizer"], dict):
        fields["generator_optimizer"] = OptimizerConfig(**fields["generator_optimizer"])
    return cls(**fields)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_round_keeps_its_best_batch_and_the_student_draws_from_the_pool(kind, tiny_models):
    trainer = DFADTrainer(*tiny_models(), config(kind))
    kept = []
    trainer.synthesis.pool.add = lambda x, t, add=trainer.synthesis.pool.add: (kept.append(x.clone()), add(x, t))
    metrics = trainer.step()
    assert len(kept) == 1 and kept[0].shape == (16, 1, 8, 8) and len(trainer.synthesis.pool) == 16
    assert metrics["loss_synthesis"] > 0
    x, t = trainer.fresh_batch()
    assert any(torch.equal(x[0], row) for row in kept[0])  # drawn from the pool
    assert torch.allclose(t, trainer.teacher(x), atol=1e-5)  # the teacher's logits kept with them
    trainer.step(), trainer.step()
    assert len(trainer.synthesis.pool) == 40  # the pool's capacity: a reservoir over every round


def test_the_best_batch_is_the_lowest_loss_of_the_round(tiny_models):
    trainer = DFADTrainer(*tiny_models(), config("inversion", generator_steps=4))
    seen = []
    on_samples = trainer.generator_objective.on_samples

    def record(x, *args, **kwargs):
        loss, t = on_samples(x, *args, **kwargs)
        seen.append((float(loss.detach()), x.detach().clone()))
        return loss, t

    trainer.generator_objective.on_samples = record
    kept = []
    trainer.synthesis.pool.add = lambda x, t: kept.append(x)
    best = trainer.synthesis.round(trainer.student)
    assert best == min(v for v, _ in seen) and torch.equal(kept[0], min(seen, key=lambda p: p[0])[1])


def test_reinitialise_draws_the_releases_initialisation(tiny_models):
    trainer = DFADTrainer(*tiny_models(), config("reinit"))
    trainer.step()
    reset = copy.deepcopy(trainer.generator)
    reinitialise(reset, torch.Generator().manual_seed(0))
    for m in reset.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            assert 0.01 < float(m.weight.std()) < 0.03 and (m.bias is None or not m.bias.any())
        if isinstance(m, nn.BatchNorm2d) and m.affine:
            assert abs(float(m.weight.mean()) - 1.0) < 0.05
    first = [p.detach().clone() for p in trainer.generator.parameters()]
    # a round starts from a fresh draw, not from where the last round ended
    reinitialise(trainer.generator, torch.Generator().manual_seed(5))
    assert not all(torch.equal(a, b) for a, b in zip(first, trainer.generator.parameters()))


def test_fast_meta_step_sums_the_copys_gradients():
    torch.manual_seed(0)
    meta = nn.Linear(3, 2)
    fast = copy.deepcopy(meta)
    optimizer = torch.optim.SGD(meta.parameters(), lr=0.5)
    before = [p.detach().clone() for p in meta.parameters()]
    step = FirstOrderMeta(meta, fast, optimizer)
    inner = torch.optim.SGD(fast.parameters(), lr=0.1)
    grads = []
    for k in range(3):
        inner.zero_grad()
        fast(torch.full((4, 3), float(k + 1))).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in fast.parameters()])
        step.accumulate()
        inner.step()
    step.step()
    for p, p0, *gs in zip(meta.parameters(), before, *grads):
        assert torch.allclose(p, p0 - 0.5 * sum(gs), atol=1e-6)
        assert p.grad is None


def test_meta_moves_the_initialisation_and_warms_up_without_the_adversary(tiny_models):
    trainer = DFADTrainer(*tiny_models(), config("meta"))
    calls = []
    on_samples = trainer.generator_objective.on_samples
    trainer.generator_objective.on_samples = lambda *a, **k: (calls.append(k["adversarial"]), on_samples(*a, **k))[1]
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    trainer.step()
    trainer.step()
    assert calls == [False] * 3 + [True] * 3  # warm-up: one round without the adversarial term
    assert not all(torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))


def test_the_contrast_bank_fills_as_a_ring(tiny_models):
    trainer = DFADTrainer(*tiny_models(), config("reinit"))
    contrast = trainer.synthesis.contrast
    assert contrast.dim == 8 + 16 + 16  # the instance means of each BatchNorm input of the teacher
    for i in range(5):
        trainer.step()
        assert contrast.filled == min(64, 16 * (i + 1))
    assert contrast.pointer == (16 * 5) % 64
    assert contrast._negatives().shape == (24, 2 * contrast.dim)


def test_views():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert torch.equal(jitter_and_flip(x, 0.0, False, gen), x)
    moved = jitter_and_flip(x, 0.125, True, gen)
    assert moved.shape == x.shape and sorted(moved.flatten().tolist()) == sorted(x.flatten().tolist())
    for shape in [(2, 3, 8, 8), (4, 40), (2, 1, 9)]:
        y = torch.randn(shape)
        assert local_view(y, gen).shape == y.shape
        assert jitter_and_flip(y, 0.25, True, gen).shape == y.shape


FAST_EXTRAS = dict(bn_prior_momentum=0.9, synthesis_reset_round=3)  # Fast's bn_mmt and reset_l0, after the save


@pytest.mark.parametrize("kind,extra", [(kind, {}) for kind in KINDS] + [("meta", FAST_EXTRAS)])
def test_resume_is_exact(kind, extra, tmp_path, tiny_models):
    straight = DFADTrainer(*tiny_models(), config(kind, **extra))
    for _ in range(4):
        straight.step()
    first = DFADTrainer(*tiny_models(), config(kind, **extra))
    for _ in range(2):
        first.step()
    state = first.synthesis.state_dict()
    assert ("objective" in state) == bool(extra) and (not extra or len(state["objective"]["bn_statistics"]) == 3)
    first.save(tmp_path / "ckpt.pt")
    resumed = DFADTrainer.load(tmp_path / "ckpt.pt", *tiny_models())
    for _ in range(2):
        resumed.step()
    for a, b in zip(straight.student.state_dict().values(), resumed.student.state_dict().values()):
        assert torch.equal(a, b)


def test_cmi_samples_with_lrwas_update(tiny_models):
    """The synthesis is a part: CMI's rounds feed LRwA's meta update and its replay memory."""
    trainer = LRwATrainer(*tiny_models(), config("reinit", LRwAConfig, memory_capacity=64, memory_batch_size=8,
                                                  memory_insert_size=8))
    for _ in range(3):
        metrics = trainer.step()
    assert len(trainer.memory.buffer) > 0 and "loss_retain" in " ".join(metrics)


@pytest.mark.parametrize("fields,message", [
    (dict(generator_weights=GeneratorLossWeights(contrastive=1.0)), "contrastive"),
    (dict(synthesis="inversion", ema_decay=0.9), "ema_decay"),
    (dict(synthesis="meta", precision="fp16"), "precision"),
    (dict(synthesis="reinit", generator_steps=0), "generator_steps"),
    (dict(synthesis="inversion", synthesis_jitter=0.5), "synthesis_jitter"),
    (dict(synthesis="rounds"), "synthesis"),
    (dict(generator_weights=GeneratorLossWeights(bn_prior=1), bn_prior_momentum=0.9), "bn_prior_momentum.*rounds"),
    (dict(synthesis="meta", bn_prior_momentum=0.9), "generator_weights.bn_prior"),
    (dict(synthesis="meta", generator_weights=GeneratorLossWeights(bn_prior=1), bn_prior_momentum=1.0),
     r"bn_prior_momentum=1.0 \(must lie in"),
    (dict(synthesis="reinit", synthesis_reset_round=3), "synthesis_reset_round.*'meta'"),
    (dict(synthesis="meta", synthesis_reset_round=-1), "synthesis_reset_round=-1"),
    (dict(synthesis="reinit", synthesis_clip_mean=(0.5,), synthesis_clip_std=(0.25,)),
     "synthesis_clip_mean clips optimised inputs: it needs synthesis 'inversion'"),
    (dict(synthesis="inversion", synthesis_clip_mean=(0.5,)), "set together, one value per channel each"),
    (dict(synthesis="inversion", synthesis_clip_mean=(0.5,), synthesis_clip_std=(0.0,)), "positive and finite"),
    (dict(synthesis="inversion", synthesis_clip_mean=(0.5, 0.5, 0.5), synthesis_clip_std=(0.2, 0.2, 0.2),
          latent_dim=8), "3 values, the samples have 1 channel"),
])
def test_rules_name_the_config_keys(fields, message, tiny_models):
    with pytest.raises(ValueError, match=message):
        DFADTrainer(*tiny_models(), DFADConfig(device="cpu", **fields))


def test_attention_transfer_is_refused_with_lrwas_update(tiny_models):
    with pytest.raises(ValueError, match="attention_weight"):
        LRwATrainer(*tiny_models(), LRwAConfig(device="cpu", attention_weight=1.0))


def test_zskt_update_adds_the_attention_transfer_of_matched_blocks(tiny_models):
    teacher, student, generator = tiny_models()
    trainer = DFADTrainer(teacher, student, generator, DFADConfig(device="cpu", batch_size=8, latent_dim=8,
                                                                  loss="kl", attention_weight=250.0))
    update = trainer.update
    assert isinstance(update, AttentionTransferUpdate)
    # SmallCNN: 8×8 maps until the pool, 4×4 after it (1×1 global pooling has no attention map)
    assert [(type(t).__name__, size) for t, _, size in update.pairs] == [("ReLU", (8, 8)), ("ReLU", (4, 4))]
    hooks_before = [len(m._forward_hooks) for m in teacher.modules()]
    x, t = trainer.fresh_batch()
    ctx = StepContext(student, trainer.student_params, trainer.student_names, trainer.kd_loss, 0, True)
    result = update(ctx, x, t)
    assert [len(m._forward_hooks) for m in teacher.modules()] == hooks_before  # no hook outlives the call
    s_maps, t_maps = [], []
    hooks = [s.register_forward_hook(lambda _m, _i, out: s_maps.append(out)) for _, s, _ in update.pairs]
    hooks += [t_.register_forward_hook(lambda _m, _i, out: t_maps.append(out)) for t_, _, _ in update.pairs]
    with torch.no_grad():
        teacher(x)
    loss = trainer.kd_loss(student(x), t) + 250.0 * sum(terms.attention_transfer_loss(a, b)
                                                        for a, b in zip(s_maps, t_maps))
    for h in hooks:
        h.remove()
    expected = torch.autograd.grad(loss, trainer.student_params)
    for g, e in zip(result.grads, expected):
        assert torch.allclose(g, e, rtol=1e-5, atol=1e-7)


def test_wrn_blocks_are_zskts_group_outputs():
    from lrwa_fast.models import build_model

    teacher, student = build_model("wrn16_2", 10), build_model("wrn16_1", 10)
    names = {m: n for n, m in [*teacher.named_modules(), *student.named_modules()]}
    pairs = matched_blocks(teacher, student, torch.zeros(1, 3, 32, 32))
    # two blocks per group: the groups end at blocks.1, blocks.3 and (the last) the blocks themselves
    assert [(names[t], names[s], size) for t, s, size in pairs] == [
        ("blocks.1", "blocks.1", (32, 32)), ("blocks.3", "blocks.3", (16, 16)), ("blocks", "blocks", (8, 8))]


def test_a_module_used_at_two_sizes_is_taken_at_each():
    relu = nn.ReLU()
    first, second = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, stride=2, padding=1)
    with block_maps([(relu, (8, 8)), (relu, (4, 4))]) as maps:
        relu(second(relu(first(torch.randn(2, 1, 8, 8)))))
    assert maps[0].shape[2:] == (8, 8) and maps[1].shape[2:] == (4, 4)


def test_each_cmi_round_reinitialises_and_runs_in_bf16(tiny_models, monkeypatch):
    from lrwa_fast.training import synthesis

    calls = []
    monkeypatch.setattr(synthesis, "reinitialise", lambda model, rng: calls.append(model))
    trainer = DFADTrainer(*tiny_models(), config("reinit", precision="bf16"))
    trainer.step(), trainer.step()
    assert calls == [trainer.generator, trainer.generator]
    assert trainer.synthesis.contrast.filled == 32 and trainer.synthesis.contrast.bank.dtype == torch.float32


def test_the_objective_applies_each_new_term_where_its_release_does(tiny_models):
    teacher, student, _ = tiny_models()
    weights = GeneratorLossWeights(adversarial=0.7, one_hot=0.3, tv_l1=0.2, tv_l2=0.1, input_l2=0.05,
                                   competition=0.4)
    trainer = DFADTrainer(teacher, student, tiny_models()[2],
                          DFADConfig(device="cpu", latent_dim=8, adversarial_loss="kl", adversarial_agreeing=True,
                                     generator_weights=weights))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 8, 8, generator=gen)
    view = torch.flip(x, dims=(3,))
    targets = torch.randint(0, 10, (6,), generator=gen)
    student.eval()
    loss, t = trainer.generator_objective.on_samples(x, view, student, targets=targets)
    s = student(view)
    expected = (0.7 * terms.agreeing_adversarial_loss(s, t) + 0.3 * torch.nn.functional.cross_entropy(t, targets)
                + 0.4 * terms.competition_loss(s, t) + 0.2 * terms.total_variation_l1(x)
                + 0.1 * terms.total_variation_l2(x) + 0.05 * terms.input_l2_loss(x))  # priors on x, not the view
    assert torch.allclose(loss, expected, rtol=1e-5)
    warm, _ = trainer.generator_objective.on_samples(x, view, student, adversarial=False, targets=targets)
    assert torch.allclose(warm, expected - 0.7 * terms.agreeing_adversarial_loss(s, t)
                          - 0.4 * terms.competition_loss(s, t), rtol=1e-5)


def _stats(x):
    dims = [d for d in range(x.dim()) if d != 1]
    return x.mean(dim=dims), x.var(dim=dims, unbiased=False)


def test_bn_prior_with_momentum_is_fasts_equation():
    """Fast's DeepInversionHook with bn_mmt m: the batch statistics of every later round mixed with the kept ones,
    ‖rv − (1−m)σ² − m·σ²_kept‖ + ‖rm − (1−m)μ − m·μ_kept‖, the kept ones moved at each round's end by its last
    forward: kept ← m·kept + (1−m)·last (the first round's kept as they are). float64, batch 1, odd widths."""
    gen = torch.Generator().manual_seed(11)
    layers = [nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 7, 3), nn.BatchNorm2d(7)]
    teacher = nn.Sequential(*layers).double().eval()
    for bn in (layers[1], layers[4]):
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen, dtype=torch.float64) * 3 + 0.1)
    m = 0.9
    probe = TeacherProbe(teacher, bn_prior=True, features=False, momentum=m)

    def inputs_of_bns(x):  # each BatchNorm's input, computed apart from the hooks
        h1 = layers[0](x)
        return [h1, layers[3](layers[2](layers[1](h1)))]

    kept = None
    for round_ in range(3):
        for _ in range(2):  # two steps a round: the statistics kept are the last step's
            x = torch.randn(1, 3, 5, 7, generator=gen, dtype=torch.float64)
            with probe.active():
                teacher(x)
            loss = probe.bn_loss()
            expected = 0.0
            for i, (bn, h) in enumerate(zip((layers[1], layers[4]), inputs_of_bns(x))):
                mean, var = _stats(h)
                if kept is not None:
                    mean, var = (1 - m) * mean + m * kept[i][0], (1 - m) * var + m * kept[i][1]
                expected = expected + torch.linalg.vector_norm(bn.running_var - var) \
                    + torch.linalg.vector_norm(bn.running_mean - mean)
            assert torch.allclose(loss, expected, rtol=1e-12, atol=0), round_
        last = [_stats(h) for h in inputs_of_bns(x)]
        kept = last if kept is None else [(m * km + (1 - m) * lm, m * kv + (1 - m) * lv)
                                          for (km, kv), (lm, lv) in zip(kept, last)]
        probe.update_momentum()
    restored = TeacherProbe(teacher, bn_prior=True, features=False, momentum=m)
    restored.load_state_dict(probe.state_dict())
    saved, loaded = probe.state_dict()["bn_statistics"], restored.state_dict()["bn_statistics"]
    assert sorted(saved) == sorted(loaded) == [0, 1]
    assert all(torch.equal(a, b) for i in saved for a, b in zip(saved[i], loaded[i]))
    with pytest.raises(ValueError, match="needs"):
        TeacherProbe(teacher, bn_prior=True, features=False).load_state_dict(probe.state_dict())


def test_a_batchnorm_that_runs_late_starts_from_its_own_statistics():
    """A BatchNorm that no forward reached yet (a branch not taken) has nothing kept: its term is plain until a round
    in which it runs ends, and the checkpoint holds what there is."""
    torch.manual_seed(2)
    used, unused = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    teacher = nn.ModuleDict({"used": used, "unused": unused}).eval()
    probe = TeacherProbe(teacher, bn_prior=True, features=False, momentum=0.5)
    x = torch.randn(4, 3)
    with probe.active():
        used(x)
    probe.update_momentum()
    assert sorted(probe.state_dict()["bn_statistics"]) == [0]
    with probe.active():
        unused(x)
    plain = torch.linalg.vector_norm(x.mean(0) - unused.running_mean) + \
        torch.linalg.vector_norm(x.var(0, unbiased=False) - unused.running_var)
    assert torch.allclose(probe.bn_loss(), plain)
    probe.update_momentum()
    assert sorted(probe.state_dict()["bn_statistics"]) == [0, 1]


def test_fast_resets_the_generators_first_layer_at_its_round(tiny_models, monkeypatch):
    from lrwa_fast.training import synthesis

    calls = []
    monkeypatch.setattr(synthesis, "reset_first_layers", lambda layers, rng: calls.append(layers))
    trainer = DFADTrainer(*tiny_models(), config("meta", synthesis_reset_round=2))
    trainer.step()
    assert calls == []
    trainer.step(), trainer.step()
    assert calls == [[trainer.generator.project, trainer.generator.body[0]]]  # round 2 only, before its copy


def test_reset_first_layers_draws_fasts_reset_l0(tiny_models):
    """Fast's reset_l0: its generator's ``l1.0`` (the projection) and ``conv_blocks.0`` (the BatchNorm after it),
    weights N(0, 0.02), BatchNorm scale included, zero biases; nothing else touched."""
    generator = tiny_models()[2]
    torch.manual_seed(0)
    for m in generator.modules():
        if isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.bias)
    before = copy.deepcopy(generator.state_dict())
    layers = first_layers(generator)
    assert layers == [generator.project, generator.body[0]]
    reset_first_layers(layers, torch.Generator().manual_seed(1))
    for m in layers:
        assert 0.01 < float(m.weight.detach().std()) < 0.03 and abs(float(m.weight.detach().mean())) < 0.02
        assert not m.bias.any()
    changed = {k for k, v in generator.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"project.weight", "project.bias", "body.0.weight", "body.0.bias"}
    with pytest.raises(ValueError, match="no linear or convolution layer"):
        first_layers(nn.Sequential(nn.ReLU()))
    plain = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.BatchNorm1d(3))
    assert first_layers(plain) == [plain[0]]  # only a BatchNorm right after the layer is Fast's conv_blocks.0
def _inputs_of_a_round(tiny_models, extra):
    """The inputs the teacher is given at each step of one DeepInversion round of 4 steps."""
    trainer = DFADTrainer(*tiny_models(), config("inversion", generator_steps=4, **extra))
    on_samples, seen = trainer.generator_objective.on_samples, []
    trainer.generator_objective.on_samples = lambda x, *a, **k: (seen.append(x.detach().clone()),
                                                                  on_samples(x, *a, **k))[1]
    trainer.synthesis.round(trainer.student)
    return seen


def test_inversion_clips_its_inputs_after_each_step_as_datafree(tiny_models):
    """DataFree's clip_images after each optimiser step: per channel to [−m/s, (1−m)/s] (bounds in float64); the
    first step's inputs are the raw draw."""
    mean, std = 0.4914, 0.2023
    low, high = torch.tensor(-mean / std, dtype=torch.float64).float(), torch.tensor((1 - mean) / std).float()
    seen = {clip: _inputs_of_a_round(tiny_models, dict(synthesis_clip_mean=(mean,), synthesis_clip_std=(std,))
                                     if clip else {}) for clip in (True, False)}
    assert torch.equal(seen[True][0], seen[False][0])  # the same draw, unclipped at the first step
    assert seen[True][0].min() < low and seen[True][0].max() > high
    for x in seen[True][1:]:
        assert x.min() >= low and x.max() <= high and (x == low).any() and (x == high).any()
    assert any(x.min() < low or x.max() > high for x in seen[False][1:])  # unclipped without the settings
