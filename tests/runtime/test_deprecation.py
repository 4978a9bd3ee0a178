"""Names of 0.4 kept for one release: each still works, with a DeprecationWarning naming the new one, and
gives what the new name gives."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrwa_fast import BufferMemory, KDLoss, MetaSettings, ReplayBuffer, meta_gradient
from lrwa_fast.optim import UpdateResult
from lrwa_fast.replay.buffer import torch_backend
from lrwa_fast.runtime.deprecation import renamed_keyword
from lrwa_fast.updates import MetaUpdate, StepContext


def batches(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x, t = torch.randn(6, 5, generator=gen, dtype=torch.float64), torch.randn(6, 3, generator=gen, dtype=torch.float64)
    return (x[:4], t[:4]), (x[4:], t[4:])


def test_meta_gradients_memory_keyword_is_retention():
    model = nn.Linear(5, 3).double()
    fresh, kept = batches()
    new = meta_gradient(model, fresh, retention=kept, loss=KDLoss(kind="l1"))
    with pytest.warns(DeprecationWarning, match=r"meta_gradient\(memory=...\) is meta_gradient\(retention=...\)"):
        old = meta_gradient(model, fresh, memory=kept, loss=KDLoss(kind="l1"))
    assert all(torch.equal(new.grads[n], old.grads[n]) for n in new.grads)
    with pytest.raises(TypeError, match="both retention= and its old name memory="):
        meta_gradient(model, fresh, retention=kept, memory=kept)


def test_a_renamed_keyword_leaves_other_calls_alone():
    @renamed_keyword("old", "new", since="0.5")
    def f(a, *, new=0):
        return a + new

    assert f(1, new=2) == 3
    with pytest.warns(DeprecationWarning):
        assert f(1, old=2) == 3


def buffer_memory() -> BufferMemory:
    buffer = ReplayBuffer(8, (5,), 3, seed=1, backend="torch")
    gen = torch.Generator().manual_seed(2)
    buffer.add(torch.randn(8, 5, generator=gen), torch.randn(8, 3, generator=gen))
    return BufferMemory(buffer, 4)


def test_a_memorys_draw_is_its_retention_batch():
    a, b = buffer_memory(), buffer_memory()
    with pytest.warns(DeprecationWarning, match=r"BufferMemory.draw is BufferMemory.retention_batch"):
        old = a.draw(torch.float32)
    new = b.retention_batch(torch.float32)
    assert torch.equal(old[0], new[0]) and torch.equal(old[1], new[1])


def test_a_samplers_draw_is_sample_into():
    a, b = buffer_memory(), buffer_memory()
    storage, backend = a.buffer.storage, torch_backend
    out_a, out_b = storage.empty_sample(3, torch.float32), storage.empty_sample(3, torch.float32)
    with pytest.warns(DeprecationWarning, match=r"UniformSampler.draw is UniformSampler.sample_into"):
        old = a.buffer.sampler.draw(backend, storage, *out_a, fill=8, replace=True, rng=None)
    new = b.buffer.sampler.sample_into(backend, b.buffer.storage, *out_b, fill=8, replace=True, rng=None)
    assert torch.equal(old, new) and torch.equal(out_a[0], out_b[0])


class OldMemory:
    """A user's memory written for 0.4: it has ``draw``, not ``retention_batch``."""

    def __init__(self, inner: BufferMemory | None = None) -> None:
        self.inner = inner if inner is not None else buffer_memory()

    def __len__(self) -> int:
        return len(self.inner)

    def draw(self, dtype: torch.dtype):
        return self.inner.retention_batch(dtype)


def test_meta_update_still_draws_from_a_memory_of_0_4():
    torch.manual_seed(0)
    student = nn.Linear(5, 3)
    names, params = zip(*student.named_parameters())
    ctx = StepContext(student=student, names=list(names), params=list(params), loss=KDLoss(kind="l1"), iteration=0,
                      wants_metrics=True)
    x, t = torch.randn(4, 5), torch.randn(4, 3)
    settings = MetaSettings(mode="first_order")
    with pytest.warns(DeprecationWarning, match=r"OldMemory.draw is Memory.retention_batch"):
        old = MetaUpdate(OldMemory(), settings)(ctx, x, t)
    new = MetaUpdate(buffer_memory(), settings)(ctx, x, t)
    assert isinstance(old, UpdateResult)
    assert all(torch.equal(a, b) for a, b in zip(old.grads, new.grads))


class OldFullMemory(OldMemory):
    """The whole part as 0.4 wrote it: every method of the protocol, ``draw`` for the retention batch."""

    def observe(self, x: torch.Tensor, t: torch.Tensor) -> None:
        self.inner.observe(x, t)

    def end_of_iteration(self, iteration: int, *, clean: bool) -> None:
        self.inner.end_of_iteration(iteration, clean=clean)

    def metrics(self) -> dict[str, float]:
        return self.inner.metrics()

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state) -> None:
        self.inner.load_state_dict(state)


def test_a_trainer_keeps_and_feeds_an_updates_memory_of_0_4(tiny_models, tiny_run):
    from lrwa_fast import LRwAConfig, LRwATrainer

    memory = OldFullMemory(BufferMemory(ReplayBuffer(64, (1, 8, 8), 10, seed=1, backend="torch"), 8))
    before = len(memory)
    trainer = LRwATrainer(*tiny_models(), LRwAConfig(**tiny_run), update=MetaUpdate(memory, MetaSettings()))
    assert trainer.memory is memory
    with pytest.warns(DeprecationWarning, match=r"OldFullMemory.draw is Memory.retention_batch"):
        history = trainer.train(progress=False)
    assert len(memory) > before and "loss_retain" in history["metrics"][-1]
