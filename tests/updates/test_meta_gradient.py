"""meta_gradient against finite differences, an independent torch.func computation, and the
defect of the released code (a meta term that sends no gradient)."""

from __future__ import annotations

import copy
import zlib

import pytest
import torch
from torch.func import functional_call

from lrwa_fast import KDLoss, MetaSettings, meta_gradient
from lrwa_fast.ops.losses import kd_loss_reference
from tests.support import flat, make_case, run_meta

FD_EPS = 1e-6
FD_RTOL = 1e-6  # relative to the gradient's norm, float64


def objective(model, params, x_acq, t_acq, x_mem, t_mem, *, inner_lr, loss, temperature, retain_weight):
    """J(θ) written directly: inner gradient by autograd, buffers copied so nothing is updated."""

    def fwd(p, x):
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        return functional_call(model, (p, buffers), (x,))

    def dist(s, t):
        return kd_loss_reference(s, t, kind=loss, temperature=temperature)

    names = list(params)
    with torch.enable_grad():
        leaves = {n: params[n].detach().requires_grad_() for n in names}
        l_acq = dist(fwd(leaves, x_acq), t_acq)
        grads = torch.autograd.grad(l_acq, [leaves[n] for n in names])
    inner = {n: params[n] - inner_lr * g for n, g in zip(names, grads)}
    return l_acq.detach() + retain_weight * dist(fwd(inner, x_mem), t_mem)


def finite_difference_grad(model, case, **kw) -> dict[str, torch.Tensor]:
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = {}
    for name, p in params.items():
        g = torch.zeros_like(p)
        for i in range(p.numel()):
            vals = []
            for sign in (1.0, -1.0):
                shifted = dict(params)
                q = p.clone()
                q.view(-1)[i] += sign * FD_EPS
                shifted[name] = q
                vals.append(objective(model, shifted, *case, **kw))
            g.view(-1)[i] = (vals[0] - vals[1]) / (2 * FD_EPS)
        out[name] = g
    return out


def assert_close_rel(actual, expected, rtol):
    a, e = flat(actual), flat(expected)
    err = (a - e).norm() / e.norm()
    assert err < rtol, f"relative error {err:.3e} >= {rtol}"


@pytest.mark.parametrize("kind", ["mlp", "bn_cnn"])
@pytest.mark.parametrize("loss", ["l1", "kl"])
def test_exact_matches_finite_differences(kind, loss):
    model, *case = make_case(kind, seed=zlib.crc32(f"{kind}-{loss}".encode()) % 1000)
    kw = dict(inner_lr=0.3, loss=loss, temperature=2.0, retain_weight=0.7)
    result = run_meta(model, case, mode="exact", **kw)
    fd = finite_difference_grad(model, case, **kw)
    assert_close_rel(result.grads, fd, FD_RTOL)


@pytest.mark.parametrize("kind", ["mlp", "bn_cnn"])
def test_exact_matches_torch_func_autograd(kind):
    model, *case = make_case(kind, seed=11)
    kw = dict(inner_lr=0.2, loss="kl", temperature=3.0, retain_weight=1.3)
    result = run_meta(model, case, mode="exact", **kw)
    x_acq, t_acq, x_mem, t_mem = case

    def buffers():
        return {n: b.clone() for n, b in model.named_buffers()}

    def dist(s, t):
        return kd_loss_reference(s, t, kind="kl", temperature=3.0)

    def l_acq(p):
        return dist(functional_call(model, (p, buffers()), (x_acq,)), t_acq)

    def big_j(p):
        g = torch.func.grad(l_acq)(p)
        inner = {n: p[n] - 0.2 * g[n] for n in p}
        return l_acq(p) + 1.3 * dist(functional_call(model, (inner, buffers()), (x_mem,)), t_mem)

    params = {n: p.detach() for n, p in model.named_parameters()}
    expected = torch.func.grad(big_j)(params)
    assert_close_rel(result.grads, expected, 1e-12)


@pytest.mark.parametrize("kind", ["mlp", "bn_cnn"])
def test_first_order_vs_exact(kind):
    model, *case = make_case(kind, seed=5)
    exact = run_meta(model, case, inner_lr=0.5, mode="exact", loss="kl")
    first = run_meta(model, case, inner_lr=0.5, mode="first_order", loss="kl")
    diff = (flat(exact.grads) - flat(first.grads)).norm() / flat(exact.grads).norm()
    assert diff > 1e-4, "the second-order term vanished"
    exact0 = run_meta(model, case, inner_lr=0.0, mode="exact", loss="kl")
    first0 = run_meta(model, case, inner_lr=0.0, mode="first_order", loss="kl")
    assert_close_rel(exact0.grads, first0.grads, 1e-13)


@pytest.mark.parametrize("kind", ["mlp", "bn_cnn"])
def test_first_order_is_acq_grad_plus_retention_grad_at_inner_weights(kind):
    model, x_acq, t_acq, x_mem, t_mem = make_case(kind, seed=2)
    res = run_meta(model, (x_acq, t_acq, x_mem, t_mem), inner_lr=0.4, mode="first_order",
                        loss="l1", retain_weight=2.0)
    params = dict(model.named_parameters())
    g_acq = torch.autograd.grad(kd_loss_reference(model(x_acq), t_acq, kind="l1"), list(params.values()))
    inner = {n: (p - 0.4 * g).detach().requires_grad_() for (n, p), g in zip(params.items(), g_acq)}
    l_ret = kd_loss_reference(functional_call(model, inner, (x_mem,)), t_mem, kind="l1")
    g_ret = torch.autograd.grad(l_ret, list(inner.values()))
    expected = {n: a + 2.0 * b for n, a, b in zip(params, g_acq, g_ret)}
    assert_close_rel(res.grads, expected, 1e-13)
    cos = torch.dot(flat(dict(zip(params, g_acq))), flat(dict(zip(params, g_ret))))
    cos = cos / (flat(dict(zip(params, g_acq))).norm() * flat(dict(zip(params, g_ret))).norm())
    assert abs(float(res.grad_cosine) - float(cos)) < 1e-6
    assert abs(float(res.loss_ret) - float(l_ret.detach())) < 1e-12


def test_meta_term_reaches_the_student():
    """The released code's defect: a detached θ' makes the retention term send zero gradient.

    Here the retention term's gradient w.r.t. θ (through θ') must be non-zero and equal finite
    differences of θ ↦ L_ret(θ − α∇L_acq(θ)).
    """
    model, *case = make_case("bn_cnn", seed=9)
    with_ret = run_meta(model, case, inner_lr=0.3, mode="exact", loss="l1", retain_weight=1.0)
    without = run_meta(model, case, inner_lr=0.3, mode="exact", loss="l1", retain_weight=0.0)
    meta_term = {n: with_ret.grads[n] - without.grads[n] for n in with_ret.grads}
    assert flat(meta_term).norm() > 1e-3 * flat(without.grads).norm()
    kw = dict(inner_lr=0.3, loss="l1", temperature=1.0)
    fd_total = finite_difference_grad(model, case, retain_weight=1.0, **kw)
    fd_acq = finite_difference_grad(model, case, retain_weight=0.0, **kw)
    fd_meta = {n: fd_total[n] - fd_acq[n] for n in fd_total}
    assert_close_rel(meta_term, fd_meta, 1e-5)


def _running_stats(model):
    return [b.clone() for b in model.buffers()]


@pytest.mark.parametrize("mode", ["exact", "first_order", "finite_difference"])
@pytest.mark.parametrize("bn_mode", ["acquire", "retain_eval"])
def test_batchnorm_buffers_updated_by_acquisition_only(bn_mode, mode):
    model, x_acq, t_acq, x_mem, t_mem = make_case("bn_cnn", seed=3)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference(x_acq)
    params_before = [p.clone() for p in model.parameters()]
    run_meta(model, (x_acq, t_acq, x_mem, t_mem), inner_lr=0.1, bn_mode=bn_mode, mode=mode)
    assert all(torch.equal(a, b) for a, b in zip(params_before, model.parameters())), "θ must be restored"
    for got, want in zip(model.buffers(), reference.buffers()):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-14)
    assert all(p.grad is None for p in model.parameters()), "meta_gradient must not touch .grad"


@pytest.mark.parametrize("mode", ["exact", "first_order", "finite_difference"])
def test_batchnorm_buffers_all_mode_counts_both_passes(mode):
    model, x_acq, t_acq, x_mem, t_mem = make_case("bn_cnn", seed=3)
    acquire_only = copy.deepcopy(model)
    with torch.no_grad():
        acquire_only(x_acq)
    run_meta(model, (x_acq, t_acq, x_mem, t_mem), inner_lr=0.1, bn_mode="all", mode=mode)
    bn, ref = model[1], acquire_only[1]
    assert int(bn.num_batches_tracked) == 2
    assert not torch.allclose(bn.running_mean, ref.running_mean)


def test_eval_mode_leaves_buffers_untouched():
    model, *case = make_case("bn_cnn", seed=4)
    model.eval()
    before = _running_stats(model)
    run_meta(model, case, inner_lr=0.1)
    assert all(torch.equal(a, b) for a, b in zip(before, _running_stats(model)))
    assert not model.training


def test_retain_eval_restores_training_flags():
    model, *case = make_case("bn_cnn", seed=4)
    run_meta(model, case, inner_lr=0.1, bn_mode="retain_eval")
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("mode", ["exact", "first_order", "finite_difference"])
def test_retain_eval_keeps_frozen_batchnorm_frozen(mode):
    model, *case = make_case("bn_cnn", seed=4)
    model[1].eval()
    run_meta(model, case, inner_lr=0.1, bn_mode="retain_eval", mode=mode)
    assert model.training and not model[1].training


def test_frozen_parameters_are_skipped():
    model, *case = make_case("mlp", seed=6)
    model[0].bias.requires_grad_(False)
    res = run_meta(model, case, inner_lr=0.1)
    assert set(res.grads) == {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="second"), "mode=.second. \\(expected one of"),
    (dict(bn_mode="x"), "bn_mode"),
    (dict(inner_lr=-1.0), "inner_lr"),
    (dict(retain_weight=float("nan")), "retain_weight"),
    (dict(mode="finite_difference", fd_scheme="forward"), "fd_scheme='forward' \\(expected one of"),
    (dict(mode="finite_difference", fd_epsilon=0.0), "fd_epsilon must be a positive finite number"),
    (dict(mode="finite_difference", fd_epsilon=-1e-3), "fd_epsilon must be a positive finite number"),
    (dict(mode="finite_difference", fd_epsilon=float("nan")), "fd_epsilon must be a positive finite number"),
    (dict(mode="finite_difference", fd_epsilon=float("inf")), "fd_epsilon must be a positive finite number"),
])
def test_bad_settings_are_refused_when_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MetaSettings(**kwargs)


@pytest.mark.parametrize("kwargs, match", [(dict(kind="mse"), "kind=.mse. \\(expected one of"),
                                           (dict(temperature=0.0), "temperature"), (dict(backend="fast"), "backend")])
def test_bad_losses_are_refused_when_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KDLoss(**kwargs)


def test_settings_are_built_by_keyword_only():
    with pytest.raises(TypeError):
        MetaSettings("exact", 0.1)  # type: ignore[misc]


@pytest.mark.parametrize("acquire_weight", [0.0, 0.3, 1.0])
def test_mode_none_is_the_objective_without_its_meta_term(acquire_weight):
    """J = a·L_acq + L(x_acq ∪ x_mem), written directly (float64); at a = 0 the acquisition pass is skipped."""
    model, x_acq, t_acq, x_mem, t_mem = make_case("mlp", seed=1)
    settings = MetaSettings(mode="none", joint_replay=True, acquire_weight=acquire_weight)
    res = meta_gradient(model, (x_acq, t_acq), (x_mem, t_mem), settings=settings)
    params = [p for p in model.parameters() if p.requires_grad]
    joint = kd_loss_reference(model(torch.cat([x_acq, x_mem])), torch.cat([t_acq, t_mem]), kind="l1")
    total = acquire_weight * kd_loss_reference(model(x_acq), t_acq, kind="l1") + joint
    expected = dict(zip(res.grads, torch.autograd.grad(total, params)))
    torch.testing.assert_close(flat(res.grads), flat(expected), rtol=1e-12, atol=1e-14)
    assert res.loss_ret is None and res.grad_cosine is None
    assert float(res.loss_joint) == pytest.approx(float(joint.detach()))
    assert (res.loss_acq is None) == (acquire_weight == 0)


def test_mode_none_needs_the_joint_term():
    with pytest.raises(ValueError, match="mode='none' without joint_replay"):
        MetaSettings(mode="none")


# ----------------------------------------------------------------- the authors' step: inner weight decay,
# no separate acquisition term, the joint replay term, BatchNorm statistics from the joint pass only
def authors_objective(model, case, *, inner_lr, decay, acquire, retain, joint, first_order, kind="l1", temperature=1.0):
    """J(θ) of the module docstring as a function of θ for torch.func (buffers copied, so nothing is updated);
    ``first_order``: the inner gradient is a constant (``torch.func`` sees it detached)."""
    x_acq, t_acq, x_mem, t_mem = case

    def forward(p, x):
        return functional_call(model, (p, {n: b.clone() for n, b in model.named_buffers()}), (x,))

    def dist(s, t):
        return kd_loss_reference(s, t, kind=kind, temperature=temperature)

    def l_acq(p):
        return dist(forward(p, x_acq), t_acq)

    def big_j(p):
        g = torch.func.grad(l_acq)(p)
        if first_order:
            g = {n: v.detach() for n, v in g.items()}
        inner = {n: p[n] - inner_lr * (g[n] + decay * p[n]) for n in p}
        total = acquire * l_acq(p) + retain * dist(forward(inner, x_mem), t_mem)
        if joint:
            total = total + dist(forward(p, torch.cat([x_acq, x_mem])), torch.cat([t_acq, t_mem]))
        return total

    return big_j


AUTHORS = [dict(decay=5e-4, acquire=0.0, retain=1.0, joint=True), dict(decay=0.3, acquire=0.4, retain=0.7, joint=False),
           dict(decay=0.05, acquire=1.0, retain=1.3, joint=True)]


@pytest.mark.parametrize("kind", ["mlp", "bn_cnn"])
@pytest.mark.parametrize("terms", AUTHORS, ids=["authors", "strong-decay", "with-acquisition"])
@pytest.mark.parametrize("mode", ["exact", "first_order"])
def test_weight_decay_and_weights_match_a_float64_reference(kind, terms, mode):
    model, *case = make_case(kind, seed=zlib.crc32(f"{kind}-{terms}-{mode}".encode()) % 1000)
    kw = dict(inner_lr=0.9 if terms["acquire"] == 0 else 0.3, loss="kl", temperature=2.0)
    result = run_meta(model, case, mode=mode, inner_weight_decay=terms["decay"], acquire_weight=terms["acquire"],
                      retain_weight=terms["retain"], joint_replay=terms["joint"], **kw)
    reference = authors_objective(model, case, inner_lr=kw["inner_lr"], decay=terms["decay"], acquire=terms["acquire"],
                                  retain=terms["retain"], joint=terms["joint"], first_order=mode == "first_order",
                                  kind="kl", temperature=2.0)
    expected = torch.func.grad(reference)({n: p.detach() for n, p in model.named_parameters()})
    assert_close_rel(result.grads, expected, 1e-12)


@pytest.mark.parametrize("scheme", ["central", "one_sided"])
@pytest.mark.parametrize("terms", AUTHORS, ids=["authors", "strong-decay", "with-acquisition"])
def test_weight_decay_finite_differences_match_exact(terms, scheme):
    model, *case = make_case("bn_cnn", seed=13)
    kw = dict(inner_lr=0.5, loss="kl", temperature=2.0, inner_weight_decay=terms["decay"],
              acquire_weight=terms["acquire"], retain_weight=terms["retain"], joint_replay=terms["joint"])
    exact = run_meta(copy.deepcopy(model), case, mode="exact", **kw)
    fd = run_meta(copy.deepcopy(model), case, mode="finite_difference", fd_scheme=scheme, **kw)
    first = run_meta(copy.deepcopy(model), case, mode="first_order", **kw)
    error = (flat(fd.grads) - flat(exact.grads)).norm() / flat(exact.grads).norm()
    assert error <= 1e-6 < (flat(first.grads) - flat(exact.grads)).norm() / flat(exact.grads).norm()


def test_no_decay_and_full_acquisition_are_the_paper_objective_bit_for_bit():
    model, *case = make_case("bn_cnn", seed=21)
    plain = run_meta(copy.deepcopy(model), case, inner_lr=0.3, loss="kl")
    explicit = run_meta(copy.deepcopy(model), case, inner_lr=0.3, loss="kl", inner_weight_decay=0.0,
                        acquire_weight=1.0)
    assert all(torch.equal(a, b) for a, b in zip(plain.grads.values(), explicit.grads.values()))


@pytest.mark.parametrize("mode", ["exact", "first_order", "finite_difference"])
def test_joint_bn_mode_updates_the_statistics_in_the_joint_pass_only(mode):
    model, x_acq, t_acq, x_mem, t_mem = make_case("bn_cnn", seed=3)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference(torch.cat([x_acq, x_mem]))
    res = run_meta(model, (x_acq, t_acq, x_mem, t_mem), inner_lr=0.1, mode=mode, bn_mode="joint", joint_replay=True)
    assert res.loss_joint is not None
    bn = model[1]
    assert int(bn.num_batches_tracked) == 1
    for got, want in zip(model.buffers(), reference.buffers()):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("kwargs, match", [
    (dict(inner_weight_decay=-1e-4), "inner_weight_decay"),
    (dict(acquire_weight=float("nan")), "acquire_weight"),
    (dict(bn_mode="joint"), "joint_replay=True"),
])
def test_the_authors_terms_are_checked_when_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MetaSettings(**kwargs)
