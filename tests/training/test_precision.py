"""Mixed precision (bf16, fp16 with loss scaling) and channels-last memory format, on the CPU."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lrwa_fast import LRwAConfig, LRwATrainer, NonFiniteError, ops
from lrwa_fast.ops.losses import kd_loss_reference
from lrwa_fast.runtime.precision import autocast
from lrwa_fast.testing import TINY_RUN, tiny_models
from tests.support import flat, run_meta

CONFIG = dict(TINY_RUN, memory_capacity=20, memory_insert_size=6)


def models(seed: int = 0) -> tuple[nn.Module, nn.Module, nn.Module]:
    return tiny_models(seed, channels=3, student_width=6)  # 3-channel samples


def batches(seed: int, n_acq: int = 24, n_mem: int = 9):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n_acq, 3, 8, 8, generator=gen), torch.randn(n_acq, 10, generator=gen),
            torch.randn(n_mem, 3, 8, 8, generator=gen), torch.randn(n_mem, 10, generator=gen))


# Cosine to the fp32 exact gradient; over 24 seeds the smallest seen was 0.992 (exact) and 0.989
# (finite differences, which before autocast's weight cache was cleared sat at 0.96, as first order).
@pytest.mark.parametrize(("mode", "bound"), [("exact", 0.99), ("finite_difference", 0.98)])
def test_bf16_meta_gradient_stays_close_to_fp32_on_a_batchnorm_cnn(mode, bound):
    seed = int(torch.randint(0, 2**31, ()))
    _, student, _ = models(seed)
    data = batches(seed)
    kwargs = dict(inner_lr=0.5, loss="kl", temperature=2.0)
    reference = run_meta(copy.deepcopy(student), data, mode="exact", **kwargs)
    with autocast("bf16", torch.device("cpu")):
        low = run_meta(copy.deepcopy(student), data, mode=mode, **kwargs)
    assert all(g.dtype == torch.float32 for g in low.grads.values())  # fp32 master weights
    cosine = torch.nn.functional.cosine_similarity(flat(low.grads), flat(reference.grads), dim=0)
    assert cosine >= bound, (seed, float(cosine))


@pytest.mark.parametrize("mode", ["exact", "first_order", "finite_difference"])
def test_a_loss_scale_multiplies_the_meta_gradient_and_nothing_else(mode):
    seed = int(torch.randint(0, 2**31, ()))
    _, student, _ = models(seed)
    student = student.double()
    data = [t.double() for t in batches(seed)]
    kwargs = dict(inner_lr=0.3, mode=mode, loss="l1", retain_weight=0.5)
    plain = run_meta(copy.deepcopy(student), data, **kwargs)
    scale = torch.tensor(1024.0, dtype=torch.float64)
    scaled = run_meta(copy.deepcopy(student), data, loss_scale=scale, **kwargs)
    torch.testing.assert_close(flat(scaled.grads), 1024 * flat(plain.grads), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(scaled.loss_acq, plain.loss_acq, rtol=1e-12, atol=0)
    torch.testing.assert_close(scaled.loss_ret, plain.loss_ret, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["l1", "kl", "js"])
def test_half_logits_give_an_fp32_loss_on_the_reference_path(dtype, kind):
    gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    s, t = (torch.randn(7, 13, generator=gen) * 4 for _ in range(2))
    loss = ops.kd_loss(s.to(dtype), t.to(dtype), kind=kind, temperature=0.5, backend="torch")
    exact = kd_loss_reference(s.to(dtype).double(), t.to(dtype).double(), kind=kind, temperature=0.5)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), exact, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_keeps_fp32_weights_and_memory_logits(precision):
    trainer = LRwATrainer(*models(), LRwAConfig(**CONFIG, precision=precision))
    history = trainer.train(4, progress=False)
    assert all(p.dtype == torch.float32 for p in trainer.student.parameters())
    assert trainer.memory.state_dict()["logits"].dtype == torch.float32
    last = history["metrics"][-1]
    assert all(torch.isfinite(torch.tensor(v)) for v in last.values())
    assert ("scaler_skips" in last) == (precision == "fp16")


def test_an_fp16_overflow_is_a_counted_scaler_skip_not_an_error():
    trainer = LRwATrainer(*models(), LRwAConfig(**CONFIG, precision="fp16", nonfinite="raise"))
    trainer.train(1, progress=False)
    updater = trainer.student_updater
    before = [p.detach().clone() for p in trainer.student_params]
    updater.scaler.scale.fill_(3e38)  # the scaled losses overflow to inf
    assert not trainer.student_step()
    assert updater.scaler.skips == 1 and float(updater.scaler.scale) == pytest.approx(1.5e38)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.student_params))
    updater.scaler.scale.fill_(2.0**10)
    assert trainer.student_step()


def test_at_a_loss_scale_of_one_a_non_finite_step_meets_the_non_finite_policy():
    trainer = LRwATrainer(*models(), LRwAConfig(**CONFIG, precision="fp16", nonfinite="raise"))
    trainer.student_updater.scaler.scale.fill_(1.0)
    with torch.no_grad():
        trainer.student.classifier.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="student step"):
        trainer.student_step()


def test_fp16_resume_restores_the_loss_scale_bit_exactly(tmp_path):
    cfg = LRwAConfig(**CONFIG, precision="fp16")
    trainer = LRwATrainer(*models(), cfg)
    trainer.train(2, progress=False)
    trainer.student_updater.scaler.scale.fill_(512.0)
    path = trainer.save(tmp_path / "state.pt")
    trainer.train(2, progress=False)
    resumed = LRwATrainer.load(path, *models(seed=0))
    assert float(resumed.student_updater.loss_scale) == 512.0
    resumed.train(2, progress=False)
    for a, b in zip(trainer.student.state_dict().values(), resumed.student.state_dict().values()):
        assert torch.equal(a, b)


def test_channels_last_converts_the_convolutions_and_trains_as_contiguous_does():
    runs = []
    for channels_last in (False, True):
        trainer = LRwATrainer(*models(), LRwAConfig(**CONFIG, channels_last=channels_last, meta_mode="first_order"))
        trainer.train(2, progress=False)
        runs.append(trainer)
    conv = runs[1].student.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    for a, b in zip(runs[0].student.parameters(), runs[1].student.parameters()):
        torch.testing.assert_close(a, b.contiguous(), rtol=1e-4, atol=1e-5)


def test_an_unknown_precision_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"precision='fp8'"):
        LRwATrainer(*models(), LRwAConfig(**CONFIG, precision="fp8"))


def test_a_checkpoint_from_before_the_precision_fields_resumes_at_their_defaults():
    trainer = LRwATrainer(*models(), LRwAConfig(**CONFIG))
    trainer.train(1, progress=False)
    state = trainer.state_dict()
    for key in ("precision", "channels_last", "dist_timeout"):
        del state["config"][key]
    resumed = LRwATrainer(*models(), LRwAConfig(**CONFIG))
    resumed.load_state_dict(state)
    assert resumed.iteration == 1
    with pytest.raises(ValueError, match="precision"):
        LRwATrainer(*models(), LRwAConfig(**CONFIG, precision="bf16")).load_state_dict(state)
