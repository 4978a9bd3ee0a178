"""meta_mode="finite_difference": the exact meta-gradient's Hessian-vector product from finite
differences of acquisition gradients, against the exact mode.

Tolerances: relative error of the whole gradient ≤ 1e-6 in float64 (both schemes, default ε rule);
in float32 on a smooth BatchNorm CNN (SiLU, average pooling), against the float64 exact gradient,
≤ 1e-2 (the measured value is printed; about 3e-4). Inputs are drawn fresh per seed; the seed is
derived from the test's parameters.

Piecewise-linear models (ReLU, max pooling) are not held to these bounds: a finite difference also
sees the kinks the perturbation crosses, which the exact (almost-everywhere) Hessian ignores, so the
error there depends on the model and the data (``lrwa-fast bench`` reports it for the zoo models).
"""

from __future__ import annotations

import copy
import zlib

import pytest
import torch
from torch import nn

from lrwa_fast import LRwAConfig, LRwATrainer
from lrwa_fast.models import Generator, SmallCNN
from tests.support import flat, make_case, run_meta

F64_RTOL = 1e-6
F32_RTOL = 1e-2


def relative_error(actual, expected) -> float:
    a, e = flat(actual.grads).double(), flat(expected.grads).double()
    return float((a - e).norm() / e.norm())


def both(model, case, **kw):
    exact = run_meta(copy.deepcopy(model), case, mode="exact", **kw)
    fd = run_meta(copy.deepcopy(model), case, mode="finite_difference", **kw)
    return exact, fd


@pytest.mark.parametrize("kind", ["mlp", "bn_cnn"])
@pytest.mark.parametrize("scheme", ["central", "one_sided"])
@pytest.mark.parametrize("loss, temperature, retain_weight", [("kl", 2.0, 0.6), ("js", 0.7, 3.0), ("kl", 1.0, 1.0)])
def test_matches_exact_in_float64(kind, scheme, loss, temperature, retain_weight):
    seed = zlib.crc32(f"{kind}{scheme}{loss}{temperature}".encode()) % 10_000
    model, *case = make_case(kind, seed)
    kw = dict(inner_lr=0.3, loss=loss, temperature=temperature, retain_weight=retain_weight)
    exact, fd = both(model, case, fd_scheme=scheme, **kw)
    first = run_meta(copy.deepcopy(model), case, mode="first_order", **kw)
    assert relative_error(first, exact) > 1e-3, "the case must have a second-order term worth testing"
    assert relative_error(fd, exact) <= F64_RTOL
    torch.testing.assert_close(fd.loss_ret, exact.loss_ret, rtol=1e-13, atol=0)
    torch.testing.assert_close(fd.grad_cosine, exact.grad_cosine, rtol=1e-6, atol=1e-9)


def smooth_bn_cnn(width: int = 8) -> nn.Module:
    """Three conv-BatchNorm-SiLU blocks with average pooling: a BatchNorm CNN without kinks."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.SiLU()]

    return nn.Sequential(*block(3, width), *block(width, 2 * width), nn.AvgPool2d(2), *block(2 * width, 2 * width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 10))


def float32_bn_cnn(seed: int):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = smooth_bn_cnn()
    x_acq, x_mem = torch.randn(32, 3, 16, 16, generator=gen), torch.randn(8, 3, 16, 16, generator=gen)
    t_acq, t_mem = torch.randn(32, 10, generator=gen) * 3, torch.randn(8, 10, generator=gen) * 3
    return model, (x_acq, t_acq, x_mem, t_mem)


@pytest.mark.parametrize("scheme", ["central", "one_sided"])
def test_float32_error_on_a_batchnorm_cnn_is_bounded(scheme):
    model, case = float32_bn_cnn(seed=zlib.crc32(scheme.encode()) % 1000)
    kw = dict(inner_lr=0.5, loss="kl", temperature=2.0, retain_weight=1.0)
    reference = run_meta(copy.deepcopy(model).double(), tuple(t.double() for t in case), mode="exact", **kw)
    fd = run_meta(copy.deepcopy(model), case, mode="finite_difference", fd_scheme=scheme, **kw)
    exact32 = run_meta(copy.deepcopy(model), case, mode="exact", **kw)
    first = run_meta(copy.deepcopy(model), case, mode="first_order", **kw)
    errors = {name: relative_error(r, reference) for name, r in (("fd", fd), ("exact", exact32), ("first", first))}
    print(f"float32 BN CNN, {scheme}: relative error to float64 exact {errors}")
    assert errors["fd"] <= F32_RTOL
    assert errors["fd"] < 0.2 * errors["first"], "finite differences must recover most of the second-order term"


@pytest.mark.parametrize("kind", ["mlp", "bn_cnn"])
def test_zero_inner_lr_gives_every_mode_the_same_gradient(kind):
    model, *case = make_case(kind, seed=21)
    kw = dict(inner_lr=0.0, loss="kl", temperature=1.5, retain_weight=0.4)
    results = [run_meta(copy.deepcopy(model), case, mode=mode, **kw)
               for mode in ("exact", "first_order", "finite_difference")]
    for other in results[1:]:
        assert relative_error(other, results[0]) <= 1e-13


@pytest.mark.parametrize("scheme", ["central", "one_sided"])
@pytest.mark.parametrize("bn_mode", ["acquire", "all", "retain_eval"])
def test_running_statistics_as_after_exact(bn_mode, scheme):
    model, *case = make_case("bn_cnn", seed=8)
    exact_model, fd_model = copy.deepcopy(model), copy.deepcopy(model)
    run_meta(exact_model, case, inner_lr=0.2, mode="exact", bn_mode=bn_mode)
    run_meta(fd_model, case, inner_lr=0.2, mode="finite_difference", fd_scheme=scheme, bn_mode=bn_mode)
    for (name, a), b in zip(exact_model.named_buffers(), fd_model.buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-15, msg=f"buffer {name}")
    assert all(p.grad is None for p in fd_model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fd_model.parameters()))


def test_epsilon_override_is_used():
    model, *case = make_case("mlp", seed=3)
    kw = dict(inner_lr=0.3, loss="kl", mode="finite_difference")
    good = run_meta(copy.deepcopy(model), case, fd_epsilon=1e-6, **kw)
    coarse = run_meta(copy.deepcopy(model), case, fd_epsilon=3.0, **kw)
    exact = run_meta(copy.deepcopy(model), case, inner_lr=0.3, loss="kl", mode="exact")
    assert relative_error(good, exact) < 1e-6 < relative_error(coarse, exact)


def test_trainer_config_and_bad_values():
    torch.manual_seed(0)
    models = SmallCNN(10, 1, width=8), SmallCNN(10, 1, width=4), Generator(8, channels=1, img_size=8, ngf=8)
    small = dict(batch_size=16, latent_dim=8, iterations=4, student_steps=2, device="cpu", memory_insert_size=8)
    trainer = LRwATrainer(*models, LRwAConfig(**small, meta_mode="finite_difference", fd_scheme="one_sided"))
    history = trainer.train(progress=False)
    assert "loss_retain" in history["metrics"][-1]
    with pytest.raises(ValueError, match="fd_scheme='forward'"):
        LRwATrainer(*models, LRwAConfig(**small, fd_scheme="forward"))
    with pytest.raises(ValueError, match="fd_epsilon must be a positive finite number"):
        LRwATrainer(*models, LRwAConfig(**small, fd_epsilon=0.0))
