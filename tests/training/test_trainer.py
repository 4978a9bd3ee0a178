"""Trainers: model validation, learning, non-finite handling, LRwA memory schedule, evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrwa_fast import DFADConfig, DFADTrainer, LRwAConfig, LRwATrainer, NonFiniteError, testing
from lrwa_fast.models import Generator, SmallCNN

SMALL = {k: v for k, v in testing.TINY_RUN.items() if k != "seed"}  # the default seed 0
demo_models = testing.one_seed_models


class VectorGenerator(nn.Module):
    def __init__(self, latent=8, out=5):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent, 16), nn.Tanh(), nn.Linear(16, out))

    def forward(self, z):
        return self.net(z)


def mlp(inp=5, out=3):
    return nn.Sequential(nn.Linear(inp, 12), nn.ReLU(), nn.Linear(12, out))


def test_rejects_different_output_widths():
    teacher, _, gen = demo_models()
    with pytest.raises(ValueError, match="teacher gives 10 logits, the student 7"):
        DFADTrainer(teacher, SmallCNN(7, 1, width=4), gen, DFADConfig(**SMALL))


def test_rejects_generator_that_ignores_latent_dim():
    teacher, student, _ = demo_models()
    with pytest.raises(ValueError, match=r"generator does not accept z of shape \(2, 8\)"):
        DFADTrainer(teacher, student, Generator(32, channels=1, img_size=8, ngf=8), DFADConfig(**SMALL))


def test_rejects_generator_output_the_teacher_cannot_take():
    teacher, student, _ = demo_models()
    expected = r"teacher does not accept the generator's output of shape \(2, 3, 8, 8\)"
    with pytest.raises(ValueError, match=expected):
        DFADTrainer(teacher, student, Generator(8, channels=3, img_size=8, ngf=8), DFADConfig(**SMALL))


def test_rejects_non_logit_outputs():
    with pytest.raises(ValueError, match="student must return logits"):
        DFADTrainer(mlp(), nn.Sequential(mlp(), nn.Flatten(0)), VectorGenerator(), DFADConfig(**SMALL))


def test_rejects_bad_config_values():
    with pytest.raises(ValueError, match=r"inner_lr.*must be >= 0"):
        LRwATrainer(*demo_models(), LRwAConfig(**SMALL, inner_lr=-1))
    with pytest.raises(ValueError, match="meta_mode"):
        LRwATrainer(*demo_models(), LRwAConfig(**SMALL, meta_mode="second"))
    with pytest.raises(ValueError, match="needs a LRwAConfig"):
        LRwATrainer(*demo_models(), DFADConfig(**SMALL))


def kd_loss_on(trainer, x):
    with torch.no_grad():
        return float(trainer.kd_loss(trainer.student(x), trainer.teacher(x)))


@pytest.mark.parametrize("trainer_cls, cfg_cls", [(DFADTrainer, DFADConfig), (LRwATrainer, LRwAConfig)])
def test_short_run_decreases_kd_loss_on_a_fixed_generator(trainer_cls, cfg_cls):
    cfg = cfg_cls(**(SMALL | dict(iterations=25, batch_size=32)), generator_steps=0)
    trainer = trainer_cls(*demo_models(), cfg)
    x = trainer.fresh_batch()[0]
    before = kd_loss_on(trainer, x)
    trainer.train(progress=False)
    assert kd_loss_on(trainer, x) < 0.7 * before


@pytest.mark.parametrize("trainer_cls, cfg_cls", [(DFADTrainer, DFADConfig), (LRwATrainer, LRwAConfig)])
def test_adversarial_run_decreases_the_student_loss(trainer_cls, cfg_cls):
    trainer = trainer_cls(*demo_models(1), cfg_cls(**(SMALL | dict(iterations=30))))
    history = trainer.train(progress=False)
    losses = [m["loss_student"] for m in history["metrics"]]
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]


def test_modules_are_trained_in_place_and_teacher_frozen():
    teacher, student, gen = demo_models()
    t0 = [p.clone() for p in teacher.parameters()]
    s0 = [p.clone() for p in student.parameters()]
    g0 = [p.clone() for p in gen.parameters()]
    trainer = LRwATrainer(teacher, student, gen, LRwAConfig(**SMALL))
    trainer.train(3, progress=False)
    assert trainer.student is student and trainer.generator is gen
    assert all(torch.equal(a, b) for a, b in zip(t0, teacher.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(s0, student.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g0, gen.parameters()))


def test_non_image_inputs():
    trainer = LRwATrainer(mlp(), mlp(), VectorGenerator(), LRwAConfig(**SMALL))
    assert trainer.sample_shape == (5,) and trainer.num_classes == 3
    trainer.train(4, progress=False)
    assert "loss_retain" in trainer.history["metrics"][-1]


def poison(module):
    with torch.no_grad():
        next(module.parameters()).fill_(float("nan"))


def test_nan_loss_stops_training_naming_the_step():
    teacher, student, gen = demo_models()
    trainer = DFADTrainer(teacher, student, gen, DFADConfig(**SMALL))
    trainer.train(2, progress=False)
    poison(student)
    with pytest.raises(NonFiniteError, match="iteration 2, generator step"):
        trainer.step()
    trainer = DFADTrainer(*demo_models(), DFADConfig(**SMALL, generator_steps=0))
    poison(trainer.student)
    with pytest.raises(NonFiniteError, match="iteration 0, student step 0"):
        trainer.step()


def test_skip_policy_counts_and_does_not_update():
    trainer = LRwATrainer(*demo_models(), LRwAConfig(**SMALL, generator_steps=0, nonfinite="skip"))
    trainer.train(1, progress=False)
    seen_before = trainer.memory.buffer.seen
    buffers_before = [b.clone() for b in trainer.student.buffers()]
    poison(trainer.student)
    before = [p.clone() for p in trainer.student.parameters()]
    with pytest.warns(RuntimeWarning, match="step skipped") as caught:
        metrics = trainer.step()
    assert len(caught) == 1, "warn once, then count"
    assert metrics["skipped_steps"] == 2
    for a, b in zip(before, trainer.student.parameters()):
        assert torch.equal(a.nan_to_num(), b.nan_to_num())
    for a, b in zip(buffers_before, trainer.student.buffers()):
        assert torch.equal(a, b), "a skipped step must not leave its BatchNorm statistics behind"
    assert trainer.memory.buffer.seen == seen_before, "nothing is inserted in an iteration with skips"


def test_memory_schedule():
    cfg = LRwAConfig(**SMALL, memory_start=2, memory_insert_every=3, memory_insert_size=5,
                     memory_capacity=100)
    trainer = LRwATrainer(*demo_models(), cfg)
    fills = [trainer.step()["memory_fill"] for _ in range(9)]
    assert fills == [0, 0, 5, 5, 5, 10, 10, 10, 15]
    ages = trainer.memory.buffer.ages(trainer.iteration)
    assert sorted(set(ages.tolist())) == [1, 4, 7]


def test_meta_step_logs_alignment_and_joint_replay():
    trainer = LRwATrainer(*demo_models(), LRwAConfig(**SMALL, joint_replay=True))
    trainer.train(3, progress=False)
    last = trainer.history["metrics"][-1]
    assert {"loss_retain", "grad_cosine", "loss_joint"} <= set(last)
    assert last["grad_cosine"] != 0.0, "the alignment is computed from two non-zero gradients"
    plain = LRwATrainer(*demo_models(), LRwAConfig(**SMALL, meta_mode="none", joint_replay=True))
    plain.train(3, progress=False)
    assert "loss_retain" not in plain.history["metrics"][-1]
    assert "loss_joint" in plain.history["metrics"][-1]


def test_same_seed_same_run():
    runs = []
    for _ in range(2):
        trainer = LRwATrainer(*demo_models(3), LRwAConfig(**SMALL, seed=5))
        runs.append(trainer.train(4, progress=False)["metrics"])
    assert runs[0] == runs[1]


def test_evaluate_schedule_and_modes():
    seen = []

    def evaluate(model):
        seen.append(model.training)
        return 0.5

    trainer = DFADTrainer(*demo_models(), DFADConfig(**SMALL))
    history = trainer.train(7, evaluate=evaluate, eval_every=3, progress=False)
    assert [e["iteration"] for e in history["evaluations"]] == [3, 6, 7]
    assert history["evaluations"][0]["score"] == 0.5
    assert seen == [False, False, False] and trainer.student.training


def test_log_every_reads_metrics_at_the_interval():
    trainer = DFADTrainer(*demo_models(), DFADConfig(**(SMALL | dict(log_every=2))))
    results = [trainer.step() for _ in range(4)]
    assert results[0] == {} and results[2] == {}
    assert results[1]["iteration"] == 2 and math.isfinite(results[3]["loss_student"])


def test_alignment_is_computed_only_in_iterations_whose_metrics_are_read(monkeypatch):
    import lrwa_fast.updates.meta_update as meta_update

    asked = []

    def spy(*args, **kwargs):
        asked.append(kwargs["settings"].alignment)
        return meta_gradient(*args, **kwargs)

    meta_gradient = meta_update.meta_gradient
    monkeypatch.setattr(meta_update, "meta_gradient", spy)
    cfg = LRwAConfig(**(SMALL | dict(log_every=3, student_steps=1)), memory_start=0)
    trainer = LRwATrainer(*demo_models(), cfg)
    results = [trainer.step() for _ in range(6)]
    assert asked == [False, True, False, False, True], "iteration 1 has an empty memory, then 2 and 5 are read"
    assert -1.0 <= results[2]["grad_cosine"] <= 1.0 and results[2]["grad_cosine"] != 0.0
    assert "grad_cosine" in results[5] and results[3] == {}


def test_memory_draws_reuse_one_pair_of_tensors(monkeypatch):
    trainer = LRwATrainer(*demo_models(), LRwAConfig(**SMALL))
    drawn = []
    sample = trainer.memory.buffer.sample

    def spy(*args, **kwargs):
        result = sample(*args, **kwargs)
        drawn.append(tuple(t.data_ptr() for t in result))
        return result

    monkeypatch.setattr(trainer.memory.buffer, "sample", spy)
    trainer.train(4, progress=False)
    assert len(drawn) == 6 and len(set(drawn)) == 1, "3 iterations with memory × 2 student steps, one buffer pair"


def test_generator_prior_terms_run():
    from lrwa_fast import GeneratorLossWeights

    weights = GeneratorLossWeights(adversarial=1.0, one_hot=1.0, balance=5.0, activation=0.1, bn_prior=1.0)
    trainer = DFADTrainer(*demo_models(), DFADConfig(**SMALL, generator_weights=weights))
    metrics = trainer.step()
    assert math.isfinite(metrics["loss_generator"])


def test_deferred_check_names_the_first_bad_step():
    """The CUDA path (no sync per step) exercised on the CPU: the error comes at the next read."""
    trainer = DFADTrainer(*demo_models(), DFADConfig(**(SMALL | dict(log_every=3)), generator_steps=0))
    trainer.runtime.guard.defer = True
    trainer.step()
    poison(trainer.student)
    trainer.step()
    with pytest.raises(NonFiniteError, match="first seen at iteration 1, student step 0"):
        trainer.step()


def test_training_past_the_cosine_horizon_is_refused():
    trainer = DFADTrainer(*demo_models(), DFADConfig(**SMALL))
    trainer.train(4, progress=False)
    with pytest.raises(ValueError, match=r"would pass config\.iterations=10"):
        trainer.train(7, progress=False)
    assert trainer.iteration == 4
    constant = DFADConfig(**SMALL)
    constant.student_optimizer.schedule = constant.generator_optimizer.schedule = "constant"
    DFADTrainer(*demo_models(), constant).train(12, progress=False)


class WithUnusedLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.unused = mlp(), nn.Linear(3, 3)

    def forward(self, x):
        return self.used(x)


def test_unused_trainable_parameters_get_zero_gradients():
    trainer = LRwATrainer(mlp(), WithUnusedLayer(), VectorGenerator(), LRwAConfig(**SMALL))
    unused, used = trainer.student.unused.weight.clone(), trainer.student.used[0].weight.clone()
    trainer.train(3, progress=False)
    drift = (trainer.student.unused.weight - unused).abs().max()
    assert drift <= 1e-3 * unused.abs().max(), "only weight decay may move an unused parameter"
    assert not torch.equal(trainer.student.used[0].weight, used)


def test_config_combinations_that_would_waste_work_are_refused():
    with pytest.raises(ValueError, match="meta_mode='none' without joint_replay"):
        LRwATrainer(*demo_models(), LRwAConfig(**SMALL, meta_mode="none"))
    trainer = LRwATrainer(*demo_models(), LRwAConfig(**SMALL, memory_insert_size=64))
    trainer.step()
    assert len(trainer.memory) == SMALL["batch_size"], "an insertion takes at most the fresh batch"
