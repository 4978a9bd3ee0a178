"""compile_student: same training as the eager student, refused where it cannot be right, eager
with one warning where it cannot run."""

from __future__ import annotations

import warnings

import pytest
import torch

from lrwa_fast import DFADConfig, DFADTrainer, LRwAConfig, LRwATrainer, testing
from lrwa_fast.runtime import warn_once
from lrwa_fast.training import compiling

SMALL = dict(testing.TINY_RUN, batch_size=24)
SMOOTH = dict(loss="kl", adversarial_loss="kl")  # L1's sign() would turn rounding into O(1/n) jumps


def models():
    return testing.one_seed_models(1)


def test_exact_meta_mode_is_refused():
    with pytest.raises(ValueError, match="compiled graphs have no double backward"):
        LRwATrainer(*models(), LRwAConfig(**SMALL, compile_student=True))


def test_unavailable_compiler_warns_once_and_trains_eagerly(monkeypatch):
    monkeypatch.setattr(compiling, "compile_unavailable_reason", lambda device: "no C++ compiler found")
    monkeypatch.setattr(warn_once, "_issued", set())
    with pytest.warns(RuntimeWarning, match="no C.. compiler found; the student runs eagerly"):
        trainer = DFADTrainer(*models(), DFADConfig(**SMALL, compile_student=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = DFADTrainer(*models(), DFADConfig(**SMALL, compile_student=True))
    assert not trainer.student_compiled and not second.student_compiled
    assert trainer.student._compiled_call_impl is None
    trainer.train(2, progress=False)


def test_cpu_without_any_compiler_is_detected(monkeypatch):
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    assert "no C++ compiler" in compiling.compile_unavailable_reason(torch.device("cpu"))


def _final_parameters(cls, config_cls, **extra):
    trainer = cls(*models(), config_cls(**(SMALL | SMOOTH | extra)))
    trainer.train(3, progress=False)
    return trainer, {k: v.detach().clone() for k, v in trainer.student.state_dict().items()}


@pytest.mark.slow
@pytest.mark.skipif(compiling.compile_unavailable_reason(torch.device("cpu")) is not None,
                    reason="torch.compile cannot run on this machine")
@pytest.mark.parametrize("cls,config_cls,extra", [
    (DFADTrainer, DFADConfig, {}),
    (LRwATrainer, LRwAConfig, {"meta_mode": "first_order", "memory_insert_size": 8}),
    (LRwATrainer, LRwAConfig, {"meta_mode": "first_order", "memory_insert_size": 8, "joint_replay": True}),
    (LRwATrainer, LRwAConfig, {"meta_mode": "finite_difference", "memory_insert_size": 8}),
    (LRwATrainer, LRwAConfig, {"meta_mode": "finite_difference", "fd_scheme": "one_sided", "memory_insert_size": 8}),
], ids=["dfad", "lrwa_first_order", "lrwa_first_order_joint", "lrwa_fd_central", "lrwa_fd_one_sided"])
def test_compiled_student_trains_as_the_eager_one(cls, config_cls, extra):
    """Three iterations (generator and student steps, memory inserts, smooth losses): the compiled
    student ends where the eager one does, to float32 rounding (kernels fuse and reorder sums)."""
    _, eager = _final_parameters(cls, config_cls, **extra)
    trainer, compiled = _final_parameters(cls, config_cls, compile_student=True, **extra)
    assert trainer.student_compiled and trainer.student._compiled_call_impl is not None
    assert eager.keys() == compiled.keys()
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(compiled[n], models()[1].state_dict()[n]) for n in compiled), "it trained"


@pytest.mark.gpu
def test_compiled_student_trains_as_the_eager_one_on_cuda():
    extra = {"meta_mode": "first_order", "memory_insert_size": 8, "device": "cuda", "memory_backend": "auto"}
    _, eager = _final_parameters(LRwATrainer, LRwAConfig, **extra)
    trainer, compiled = _final_parameters(LRwATrainer, LRwAConfig, compile_student=True, **extra)
    assert trainer.student_compiled
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-4, atol=1e-5)
