"""Reference losses against independent float64 formulas (values and gradients), awkward shapes.

Tolerances: float32 computations against float64 formulas, relative 1e-5 (values) and 1e-4
(gradients, normwise); float64 against float64, 1e-10.
"""

from __future__ import annotations

import math

import pytest
import torch

from lrwa_fast.ops import losses

SHAPES = [(1, 1), (1, 7), (3, 1), (5, 10), (41, 1271), (2, 1000)]
TEMPERATURES = [0.5, 1.0, 4.0]


def rand_logits(shape, seed, scale=3.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def softmax64(x, t):
    z = x.double() / t
    z = z - z.max(dim=1, keepdim=True).values
    e = z.exp()
    return e / e.sum(dim=1, keepdim=True)


def kl_rows64(s, t, temp):
    ps, pt = softmax64(s, temp), softmax64(t, temp)
    return temp**2 * torch.where(pt > 0, pt * (pt.log() - ps.log()), torch.zeros_like(pt)).sum(1)


def js_rows64(s, t, temp):
    ps, pt = softmax64(s, temp), softmax64(t, temp)
    m = (ps + pt) / 2

    def kl(p):
        return torch.where(p > 0, p * (p.log() - m.log()), torch.zeros_like(p)).sum(1)

    return 0.5 * kl(pt) + 0.5 * kl(ps)


def rel_err(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_kl_value_and_gradients(shape, temperature):
    seed = hash((shape, temperature)) % 10_000
    s = rand_logits(shape, seed).requires_grad_()
    t = rand_logits(shape, seed + 1).requires_grad_()
    loss = losses.kd_loss_reference(s, t, kind="kl", temperature=temperature)
    expected = kl_rows64(s.detach(), t.detach(), temperature).mean()
    assert abs(float(loss.detach()) - float(expected)) <= 1e-5 * max(1.0, abs(float(expected)))
    gs, gt = torch.autograd.grad(loss, [s, t])
    ps, pt = softmax64(s.detach(), temperature), softmax64(t.detach(), temperature)
    n = shape[0]
    exp_gs = temperature * (ps - pt) / n
    rows = kl_rows64(s.detach(), t.detach(), temperature)[:, None] / temperature**2
    exp_gt = temperature * pt * (pt.log() - ps.log() - rows) / n
    if exp_gs.norm() > 0:
        assert rel_err(gs, exp_gs) < 1e-4
    assert (gt.double() - exp_gt).norm() <= 1e-4 * max(exp_gt.norm(), 1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_l1_value_and_gradients(shape):
    s = rand_logits(shape, 3).requires_grad_()
    t = rand_logits(shape, 4).requires_grad_()
    loss = losses.kd_loss_reference(s, t, kind="l1", temperature=7.0)  # temperature ignored
    diff = s.detach().double() - t.detach().double()
    assert abs(float(loss.detach()) - float(diff.abs().mean())) < 1e-5 * float(diff.abs().mean())
    gs, gt = torch.autograd.grad(loss, [s, t])
    expected = diff.sign() / diff.numel()
    assert torch.allclose(gs.double(), expected, rtol=1e-6, atol=0)
    assert torch.allclose(gt.double(), -expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_js_value_and_gradients(shape, temperature):
    s = rand_logits(shape, 11, dtype=torch.float64).requires_grad_()
    t = rand_logits(shape, 12, dtype=torch.float64).requires_grad_()
    loss = losses.kd_loss_reference(s, t, kind="js", temperature=temperature)
    s2, t2 = s.detach().clone().requires_grad_(), t.detach().clone().requires_grad_()
    expected = js_rows64(s2, t2, temperature).mean()
    assert abs(float(loss.detach()) - float(expected.detach())) < 1e-10 * max(1.0, float(expected.detach()))
    assert 0 <= float(loss.detach()) <= math.log(2) + 1e-12
    for got, want in zip(torch.autograd.grad(loss, [s, t]), torch.autograd.grad(expected, [s2, t2])):
        assert (got - want).norm() <= 1e-9 * max(float(want.norm()), 1e-12)


@pytest.mark.parametrize("kind", ["kl", "js", "l1"])
def test_reductions(kind):
    s, t = rand_logits((6, 9), 1), rand_logits((6, 9), 2)
    rows = losses.kd_loss_reference(s, t, kind=kind, reduction="none")
    assert rows.shape == (6,)
    torch.testing.assert_close(losses.kd_loss_reference(s, t, kind=kind, reduction="sum"), rows.sum())
    torch.testing.assert_close(losses.kd_loss_reference(s, t, kind=kind), rows.mean())


@pytest.mark.parametrize("kind", ["kl", "js"])
def test_extreme_logits_stay_finite(kind):
    s = rand_logits((4, 33), 5, scale=1e4).requires_grad_()
    t = rand_logits((4, 33), 6, scale=1e4)
    loss = losses.kd_loss_reference(s, t, kind=kind, temperature=1.0)
    (g,) = torch.autograd.grad(loss, s)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
    expected = (kl_rows64 if kind == "kl" else js_rows64)(s.detach(), t, 1.0).mean()
    assert abs(float(loss.detach()) - float(expected)) <= 1e-4 * max(1.0, float(expected))


def test_identical_logits_give_zero():
    x = rand_logits((3, 5), 9)
    for kind in ("kl", "js", "l1"):
        assert float(losses.kd_loss_reference(x, x.clone(), kind=kind)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="mse"), r"kind=.mse. \(expected one of"),
    (dict(reduction="max"), r"reduction=.max. \(expected one of"),
    (dict(temperature=0.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        losses.kd_loss_reference(torch.zeros(2, 3), torch.zeros(2, 3), **kwargs)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="equal shape"):
        losses.kd_loss_reference(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least one row"):
        losses.kd_loss_reference(torch.zeros(0, 3), torch.zeros(0, 3))


@pytest.mark.parametrize("kind", ["l1", "kl", "js"])
def test_adversarial_term(kind):
    s, t = rand_logits((4, 6), 1), rand_logits((4, 6), 2)
    d = losses.kd_loss_reference(s, t, kind=kind, temperature=3.0)
    adv = losses.adversarial_loss(s, t, kind=kind, temperature=3.0)
    torch.testing.assert_close(adv, 1 - d if kind == "js" else -d)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (7, 3), (33, 100)])
def test_one_hot_and_balance(shape):
    t = rand_logits(shape, 21, dtype=torch.float64).requires_grad_()
    p = softmax64(t, 1.0)
    expected_ce = -(p.log()[torch.arange(shape[0]), t.argmax(1)]).mean()
    torch.testing.assert_close(losses.one_hot_loss(t), expected_ce, rtol=1e-10, atol=1e-12)
    mean_p = p.mean(0)
    expected_bal = math.log(shape[1]) + (mean_p * mean_p.log()).sum()
    got = losses.class_balance_loss(t)
    torch.testing.assert_close(got, expected_bal, rtol=1e-10, atol=1e-12)
    (g,) = torch.autograd.grad(got, t)
    t2 = t.detach().clone().requires_grad_()
    m2 = softmax64(t2, 1.0).mean(0)
    (g2,) = torch.autograd.grad((m2 * m2.log()).sum(), t2)
    torch.testing.assert_close(g, g2, rtol=1e-8, atol=1e-12)


def test_class_balance_is_zero_when_balanced():
    t = torch.eye(4, dtype=torch.float64) * 5
    assert float(losses.class_balance_loss(t)) == pytest.approx(0.0, abs=1e-12)


def test_activation_loss():
    f = rand_logits((3, 17), 8, dtype=torch.float64).requires_grad_()
    out = losses.activation_loss(f)
    torch.testing.assert_close(out, -f.detach().abs().mean())
    (g,) = torch.autograd.grad(out, f)
    torch.testing.assert_close(g, -f.detach().sign() / f.numel())
