"""MAD's EMA generator and the forgetting probes: parts of the trainer, each checkpointed, switched off by
default at no cost, bad values refused by name; the forgetting measure against a hand computation."""

from __future__ import annotations

import copy

import pytest
import torch

from lrwa_fast import DFADConfig, DFADTrainer, LRwAConfig, LRwATrainer, OptimizerConfig, accuracy_evaluator
from lrwa_fast.runtime.distributed import Ranks
from lrwa_fast.training.generator_ema import EMASettings, GeneratorEMA

EVAL = dict(eval_every=2, progress=False)


def evaluator(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return accuracy_evaluator(torch.randn(40, 1, 8, 8, generator=gen), torch.randint(0, 10, (40,), generator=gen))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("ema_decay", 1.0, r"ema_decay=1.0 \(must lie in \[0, 1\)\)"), ("ema_decay", -0.1, "ema_decay=-0.1"),
    ("ema_share", 1.5, r"ema_share=1.5 \(must lie in \[0, 1\]\)"), ("ema_share", -0.5, "ema_share=-0.5"),
    ("probe_every", -1, r"probe_every=-1 \(must be >= 0\)"), ("probe_size", 0, "probe_size=0")])
def test_bad_values_are_refused_by_name(field, value, message, tiny_models, tiny_run):
    with pytest.raises(ValueError, match=message):
        DFADTrainer(*tiny_models(), DFADConfig(**tiny_run, **{field: value}))


def test_off_by_default_adds_no_part(tiny_models, tiny_run):
    trainer = LRwATrainer(*tiny_models(), LRwAConfig(**tiny_run))
    assert trainer.generator_ema is None and trainer.probes is None
    assert not {"generator_ema", "probes"} & set(trainer.parts())


def test_the_ema_follows_the_generator_by_its_decay(tiny_models):
    """One update: θ_ema = d·θ_ema + (1 − d)·θ, against a float64 computation."""
    _, _, generator = tiny_models()
    ema = GeneratorEMA(generator, EMASettings(decay=0.9, share=0.5))
    before = [p.detach().double().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(torch.randn_like(p))
    ema.update(generator)
    for old, new, live in zip(before, ema.module.parameters(), generator.parameters()):
        torch.testing.assert_close(new.double(), 0.9 * old + 0.1 * live.double(), rtol=1e-6, atol=1e-7)
    assert not any(p.requires_grad for p in ema.module.parameters())


class Constant(torch.nn.Module):
    """A "generator" emitting its value in every row: tells which generator made which row."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(value))

    def forward(self, z):
        return self.value.expand(len(z), 3)


class FakeRanks(Ranks):
    def __init__(self, rank: int, world: int) -> None:
        super().__init__()
        self.rank, self.world_size = rank, world


@pytest.mark.parametrize(("batch", "share", "world"), [(16, 0.25, 1), (7, 0.5, 1), (16, 0.4, 2), (12, 1.0, 3),
                                                        (5, 0.0, 1)])
def test_the_last_share_of_the_global_batch_comes_from_the_ema(batch, share, world):
    live = Constant(1.0)
    ema = GeneratorEMA(live, EMASettings(decay=0.5, share=share))
    with torch.no_grad():
        ema.module.value.fill_(2.0)
    rows = torch.cat([ema.generate(live, torch.zeros(batch // world, 4), batch, FakeRanks(r, world))
                      for r in range(world)])
    expected = torch.tensor([1.0] * (batch - round(share * batch)) + [2.0] * round(share * batch))
    assert torch.equal(rows[:, 0], expected[: len(rows)])


def test_mad_changes_the_student_batches_and_trains(tiny_models, tiny_run):
    plain = DFADTrainer(*tiny_models(), DFADConfig(**tiny_run))
    mad = DFADTrainer(*tiny_models(), DFADConfig(**tiny_run, ema_decay=0.9, ema_share=0.5))
    plain.train(3, progress=False)
    mad.train(3, progress=False)
    assert "generator_ema" in mad.parts() and "generator_ema" in mad.state_dict()
    assert not torch.equal(next(plain.student.parameters()), next(mad.student.parameters()))
    drift = [(a - b).abs().max() for a, b in zip(mad.generator_ema.module.parameters(), mad.generator.parameters())]
    assert max(drift) > 0, "the EMA lags the generator"


@pytest.mark.parametrize("memory_kind", ["buffer", "generative"])
def test_ema_and_probes_resume_bit_exactly(tmp_path, memory_kind, tiny_models, tiny_run):
    cfg = LRwAConfig(**(tiny_run | dict(iterations=8)), ema_decay=0.8, ema_share=0.25, probe_every=2, probe_size=6,
                     memory_insert_size=8, memory_kind=memory_kind, vae_width=4, vae_fresh_size=8)
    straight = LRwATrainer(*tiny_models(), cfg)
    straight.train(evaluate=evaluator(), **EVAL)
    first = LRwATrainer(*tiny_models(), cfg)
    first.train(4, evaluate=evaluator(), **EVAL)
    path = first.save(tmp_path / "half.pt")
    resumed = LRwATrainer.load(path, *tiny_models(student_seed=9))
    resumed.train(evaluate=evaluator(), **EVAL)
    a, b = straight.state_dict(), resumed.state_dict()
    for part in ("student", "generator"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    assert all(torch.equal(x, y) for x, y in zip(a["generator_ema"]["module"].values(),
                                                 b["generator_ema"]["module"].values()))
    assert all(torch.equal(x, y) for x, y in zip(a["probes"]["x"], b["probes"]["x"]))
    assert a["probes"]["iterations"] == b["probes"]["iterations"] == [0, 2, 4, 6]
    assert a["history"] == b["history"]


def hand_forgetting(rows: list[list[float]]) -> list[float | None]:
    """Chaudhry et al.'s average forgetting, written out with loops."""
    out = []
    for k, row in enumerate(rows):
        values = []
        for j, now in enumerate(row):
            seen = [rows[lag][j] for lag in range(k) if j < len(rows[lag])]
            if seen:
                values.append(max(seen) - now)
        out.append(sum(values) / len(values) if values else None)
    return out


def test_forgetting_matches_a_hand_computation_on_a_recorded_run(tiny_models, tiny_run):
    """A linear teacher labels pseudo-samples with many classes; a fast student and generator move enough
    for agreements to rise and fall."""
    _, student, generator = tiny_models()
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    cfg = DFADConfig(**(tiny_run | dict(iterations=12, batch_size=32)), probe_every=2, probe_size=16,
                     generator_optimizer=OptimizerConfig(name="adam", lr=0.05, weight_decay=0.0, schedule="constant"),
                     student_optimizer=OptimizerConfig(lr=0.5, momentum=0.0, schedule="constant"))
    trainer = DFADTrainer(teacher, student, generator, cfg)
    evaluations = trainer.train(evaluate=evaluator(), **EVAL)["evaluations"]
    rows = [e["probe_agreement"] for e in evaluations]
    assert [len(r) for r in rows] == [1, 2, 3, 4, 5, 6], "one probe every 2 iterations, evaluated every 2"
    expected = hand_forgetting(rows)
    assert [e["forgetting"] for e in evaluations] == pytest.approx(expected)
    assert expected[0] is None and max(f for f in expected[1:]) > 0, "a run that moves forgets something"
    for row, x, labels in zip(rows[-1:], trainer.probes.x, trainer.probes.labels):
        assert 0.0 <= row[0] <= 1.0 and x.shape == (16, 1, 8, 8) and labels.shape == (16,)


def test_probes_hold_the_teachers_labels_and_leave_training_unchanged(tiny_models, tiny_run):
    plain = DFADTrainer(*tiny_models(), DFADConfig(**tiny_run))
    probed = DFADTrainer(*tiny_models(), DFADConfig(**tiny_run, probe_every=3, probe_size=4))
    plain.train(evaluate=evaluator(), **EVAL)
    probed.train(evaluate=evaluator(), **EVAL)
    assert all(torch.equal(a, b) for a, b in zip(plain.student.state_dict().values(),
                                                 probed.student.state_dict().values()))
    with torch.no_grad():
        teacher = copy.deepcopy(probed.teacher)
        for x, labels in zip(probed.probes.x, probed.probes.labels):
            assert torch.equal(teacher(x).argmax(1), labels)
    assert probed.probes.iterations == [0, 3, 6, 9]
