"""The Updater: gradients to new weights. One step is the optimiser's step (against a float64 reference), clipping
to the global norm, the non-finite policy with the BatchNorm rollback of a skipped step, and its state."""

from __future__ import annotations

import copy

import pytest
import torch

from lrwa_fast.config import OptimizerConfig
from lrwa_fast.optim.gradients import UpdateResult
from lrwa_fast.optim.updater import Updater, UpdaterSettings
from lrwa_fast.runtime.guard import NonFiniteError
from lrwa_fast.runtime.services import Runtime, RuntimeSettings


def make_updater(policy: str, module: torch.nn.Module, clip: float = 0.0) -> Updater:
    optimizer = OptimizerConfig(lr=0.1, momentum=0.0, weight_decay=0.0, schedule="constant")
    runtime = Runtime(RuntimeSettings(device="cpu", nonfinite=policy))
    return Updater("student", list(module.parameters()), UpdaterSettings(optimizer=optimizer, horizon=10, clip=clip),
                   runtime, rollback=(module,))


def test_updater_rolls_back_batchnorm_statistics_of_a_skipped_update():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    updater = make_updater("skip", net)
    before = [b.clone() for b in net.buffers()]
    weights = [p.detach().clone() for p in net.parameters()]

    def compute():
        out = net(torch.randn(8, 3) * 5 + 2)  # moves the running statistics
        grads = [torch.full_like(p, float("nan")) for p in net.parameters()]
        return UpdateResult(grads, {"loss": out.sum().detach()})

    with pytest.warns(RuntimeWarning, match="step skipped"):
        snapshot = updater.snapshot()
        assert updater.apply(compute(), "test step", snapshot) is False
    assert all(torch.equal(a, b) for a, b in zip(before, net.buffers()))
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))
    assert updater.guard.skipped == 1
    net(torch.randn(8, 3) * 5 + 2)  # moves the statistics again, outside any step
    moved = [b.clone() for b in net.buffers()]
    grads = [torch.full_like(p, float("nan")) for p in net.parameters()]
    assert updater.apply(UpdateResult(grads, {"loss": torch.tensor(0.0)}), "direct") is False
    assert all(torch.equal(a, b) for a, b in zip(moved, net.buffers())), "without a snapshot nothing rolls back"


def test_updater_clips_to_the_global_norm_and_logs_it():
    net = torch.nn.Linear(4, 3)
    updater = make_updater("raise", net, clip=0.5)
    weights = [p.detach().clone() for p in net.parameters()]
    grads = [torch.randn_like(p) * 10 for p in net.parameters()]
    norm = float(torch.cat([g.reshape(-1) for g in grads]).norm())
    assert updater.apply(UpdateResult([g.clone() for g in grads], {"loss": torch.tensor(1.0)}), "step")
    moved = torch.cat([(w - p.detach()).reshape(-1) for w, p in zip(weights, net.parameters())])
    torch.testing.assert_close(float(moved.norm()), 0.1 * 0.5, rtol=1e-4, atol=0)
    assert updater.metrics.read()["grad_norm_student"] == pytest.approx(norm, rel=1e-5)


def test_a_step_is_sgd_with_momentum_and_weight_decay_against_float64():
    """Two steps on awkward shapes (one row, odd widths): torch.optim.SGD's rule, computed here in float64."""
    torch.manual_seed(3)
    net = torch.nn.Linear(5, 1)
    lr, momentum, decay = 0.05, 0.9, 1e-2
    optimizer = OptimizerConfig(lr=lr, momentum=momentum, weight_decay=decay, schedule="constant")
    updater = Updater("student", list(net.parameters()), UpdaterSettings(optimizer=optimizer, horizon=4),
                      Runtime(RuntimeSettings(device="cpu")))
    weights = [p.detach().double().clone() for p in net.parameters()]
    velocity = [torch.zeros_like(w) for w in weights]
    for _ in range(2):
        grads = [torch.randn_like(p) * 1e3 for p in net.parameters()]  # large values: no clipping by default
        for i, (w, g) in enumerate(zip(weights, grads)):
            d = g.double() + decay * w
            velocity[i] = d if _ == 0 else momentum * velocity[i] + d
            weights[i] = w - lr * velocity[i]
        assert updater.apply(UpdateResult([g.clone() for g in grads], {"loss": torch.tensor(1.0)}), "step")
    for w, p in zip(weights, net.parameters()):
        torch.testing.assert_close(p.detach().double(), w, rtol=1e-6, atol=1e-6)


def test_a_non_finite_update_raises_under_the_raise_policy_and_changes_nothing():
    net = torch.nn.Linear(3, 2)
    updater = make_updater("raise", net)
    weights = [p.detach().clone() for p in net.parameters()]
    grads = [torch.full_like(p, float("inf")) for p in net.parameters()]
    with pytest.raises(NonFiniteError, match="non-finite loss or gradient at step 7"):
        updater.apply(UpdateResult(grads, {"loss": torch.tensor(0.0)}), "step 7")
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))


def test_the_state_restores_the_optimiser_and_the_schedule():
    """An updater loaded from another's state takes the same next step at the same learning rate."""
    torch.manual_seed(0)
    first, second = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    second.load_state_dict(first.state_dict())
    cosine = OptimizerConfig(lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine")
    settings = UpdaterSettings(optimizer=cosine, horizon=10)
    a = Updater("student", list(first.parameters()), settings, Runtime(RuntimeSettings(device="cpu")))
    for _ in range(3):
        a.apply(UpdateResult([torch.randn_like(p) for p in first.parameters()], {}), "step")
        a.advance_schedule()
    second.load_state_dict(first.state_dict())
    b = Updater("student", list(second.parameters()), settings, Runtime(RuntimeSettings(device="cpu")))
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # as from a checkpoint (torch's loader keeps the tensors)
    assert b.lr == a.lr < 0.1
    grads = [torch.randn_like(p) for p in first.parameters()]
    a.apply(UpdateResult([g.clone() for g in grads], {}), "step")
    b.apply(UpdateResult([g.clone() for g in grads], {}), "step")
    assert all(torch.equal(x, y) for x, y in zip(first.parameters(), second.parameters()))
