"""The generator's objective: the teacher hooks that collect BatchNorm statistics and penultimate features,
against a hand computation in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrwa_fast.training.generator_objective import TeacherProbe


class TinyTeacher(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 5)
        self.bn1d = nn.BatchNorm1d(5)

    def forward(self, x):
        h = self.bn(self.conv(x)).relu().mean(dim=(2, 3))
        return self.bn1d(self.fc(h))


def test_teacher_probe_bn_prior_and_features():
    torch.manual_seed(0)
    teacher = TinyTeacher().double().eval()
    with torch.no_grad():
        for bn in (teacher.bn, teacher.bn1d):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    probe = TeacherProbe(teacher, bn_prior=True, features=True)
    with probe.active():
        teacher(x)
    conv_out = teacher.conv(x)
    h = teacher.bn(conv_out).relu().mean(dim=(2, 3))
    fc_out = teacher.fc(h)
    expected = 0.0
    for inp, bn in ((conv_out, teacher.bn), (fc_out, teacher.bn1d)):
        dims = [d for d in range(inp.dim()) if d != 1]
        mean, var = inp.mean(dims), inp.var(dims, unbiased=False)
        expected = expected + (mean - bn.running_mean).norm() + (var - bn.running_var).norm()
    torch.testing.assert_close(probe.bn_loss(), expected)
    torch.testing.assert_close(probe.features(), h)
    g1 = torch.autograd.grad(probe.bn_loss(), x, retain_graph=True)[0]
    g2 = torch.autograd.grad(expected, x)[0]
    torch.testing.assert_close(g1, g2)
    assert not teacher.bn._forward_hooks, "hooks must be removed after the block"


def test_probe_needs_batchnorm_and_linear():
    with pytest.raises(ValueError, match="BatchNorm"):
        TeacherProbe(nn.Sequential(nn.Linear(2, 2)), bn_prior=True, features=False)
    with pytest.raises(ValueError, match=r"nn\.Linear"):
        TeacherProbe(nn.Sequential(nn.Conv2d(1, 1, 1)), bn_prior=False, features=True)
