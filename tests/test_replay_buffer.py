"""ReplayBuffer behaviour (PyTorch backend): policies, uniformity, round trips, bad input.

Statistical tests use fixed seeds and significance level ALPHA: with a correct buffer each fails
with probability ALPHA, and always the same way for the same seed.
"""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from lrwa_fast import ReplayBuffer
from lrwa_fast.memory import _ext
from lrwa_fast.memory.philox import philox_u32

ALPHA = 1e-3


def buffer(capacity=8, policy="reservoir", seed=0, **kw) -> ReplayBuffer:
    return ReplayBuffer(capacity, (3,), 4, policy=policy, seed=seed, backend="torch", **kw)


def items(start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch whose rows carry their item number (x) and item number + 0.5 (logits)."""
    ids = torch.arange(start, start + n, dtype=torch.float32)
    return ids[:, None].expand(n, 3).clone(), (ids + 0.5)[:, None].expand(n, 4).clone()


def stored_ids(buf: ReplayBuffer) -> list[int]:
    return sorted(int(v) for v in buf.storage.x[: len(buf), 0])


def test_philox_known_answers():
    """Random123's published Philox4x32-10 vectors (first output word)."""
    m = 0xFFFFFFFF
    assert int(philox_u32(0, torch.tensor([0]))) == 0x6627E8D5
    assert int(philox_u32(m | m << 32, torch.tensor([m]), m, m, m)) == 0x408F276D
    key = 0xA4093822 | 0x299F31D0 << 32
    assert int(philox_u32(key, torch.tensor([0x243F6A88]), 0x85A308D3, 0x13198A2E, 0x03707344)) == 0xD16CFE09


def test_fifo_keeps_the_newest():
    buf = buffer(capacity=5, policy="fifo")
    for start, n in [(0, 3), (3, 4), (7, 2), (9, 1)]:
        buf.add(*items(start, n))
    assert stored_ids(buf) == [5, 6, 7, 8, 9]
    buf.add(*items(10, 12))  # batch larger than the capacity
    assert stored_ids(buf) == [17, 18, 19, 20, 21]
    assert len(buf) == 5 and buf.seen == 22


def test_logits_travel_with_their_samples():
    buf = buffer(capacity=6)
    for start in range(0, 40, 7):
        buf.add(*items(start, 7))
    x, logits = buf.sample(50)
    torch.testing.assert_close(logits[:, 0], x[:, 0] + 0.5)


def test_reservoir_batched_equals_one_by_one():
    batched, single = buffer(capacity=7, seed=3), buffer(capacity=7, seed=3)
    start = 0
    for n in [5, 1, 9, 30, 2, 17]:
        batched.add(*items(start, n))
        for i in range(start, start + n):
            single.add(*items(i, 1))
        start += n
    assert torch.equal(batched.storage.x, single.storage.x)
    assert torch.equal(batched.storage.logits, single.storage.logits)


def test_reservoir_keeps_every_item_with_equal_probability():
    """Over many independent buffers, each of 60 items ends up in a 10-slot memory equally often."""
    n_items, capacity, trials = 60, 10, 1500
    counts = torch.zeros(n_items)
    for seed in range(trials):
        buf = buffer(capacity=capacity, seed=seed)
        for start in range(0, n_items, 12):
            buf.add(*items(start, 12))
        counts[stored_ids(buf)] += 1
    assert counts.sum() == trials * capacity
    expected = torch.full((n_items,), trials * capacity / n_items)
    p = stats.chisquare(counts.numpy(), expected.numpy()).pvalue
    assert p > ALPHA, f"reservoir inclusion not uniform (p={p:.2e})"


BACKENDS = ["torch"] + (["cpp"] if _ext.module() is not None else [])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("replace", [True, False])
def test_sampling_is_uniform(replace, backend):
    buf = ReplayBuffer(40, (3,), 4, policy="fifo", seed=0, backend=backend)
    buf.add(*items(0, 13))  # 13 of 40 slots filled: draws must stay among them
    counts = torch.zeros(13)
    for _ in range(2000):
        x, _ = buf.sample(5, replace=replace)
        if not replace:
            assert len(set(x[:, 0].tolist())) == 5, "without replacement must draw distinct items"
        counts += torch.bincount(x[:, 0].long(), minlength=13)
    p = stats.chisquare(counts.numpy()).pvalue
    assert p > ALPHA, f"sampling not uniform (p={p:.2e})"


def test_sampling_only_from_filled_slots():
    buf = buffer(capacity=100)
    buf.add(*items(0, 3))
    x, _ = buf.sample(200)
    assert set(x[:, 0].long().tolist()) <= {0, 1, 2}


def test_same_seed_same_draws_and_generator_key():
    a, b = buffer(seed=42), buffer(seed=42)
    for buf in (a, b):
        buf.add(*items(0, 20))
    assert torch.equal(a.sample(6)[0], b.sample(6)[0])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(a.sample(6, g1)[0], b.sample(6, g2)[0])
    g3 = torch.Generator().manual_seed(6)
    assert not torch.equal(a.sample(12, g3)[0], b.sample(12, torch.Generator().manual_seed(7))[0])


def test_counter_advances_between_calls():
    buf = buffer(capacity=50, policy="fifo")
    buf.add(*items(0, 50))
    first, second = buf.sample(20)[0], buf.sample(20)[0]
    assert not torch.equal(first, second)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_storage_returns_requested_dtype(dtype):
    buf = buffer(capacity=4, dtype=dtype)
    buf.add(*items(0, 4))
    x, logits = buf.sample(3)
    assert x.dtype == torch.float32 and logits.dtype == torch.float32
    assert buf.sample(2, dtype=torch.float64)[0].dtype == torch.float64


def test_state_dict_round_trip_is_exact():
    a = buffer(capacity=9, seed=7)
    for start in range(0, 50, 6):
        a.add(*items(start, 6))
    a.sample(4)
    b = buffer(capacity=9, seed=123)
    b.load_state_dict(a.state_dict())
    for name, t in a.storage.tensors().items():
        assert torch.equal(t, b.storage.tensors()[name])
    assert (a.seen, a.draws, a.seed) == (b.seen, b.draws, b.seed)
    assert torch.equal(a.sample(8)[0], b.sample(8)[0])
    a.add(*items(100, 5))
    b.add(*items(100, 5))
    assert torch.equal(a.storage.x, b.storage.x)


def test_load_state_dict_refuses_other_shapes():
    a, b = buffer(capacity=9), buffer(capacity=10)
    a.add(*items(0, 3))
    before = b.state_dict()
    with pytest.raises(ValueError, match="capacity"):
        b.load_state_dict(a.state_dict())
    assert torch.equal(before["x"], b.state_dict()["x"]) and b.seen == 0


def test_ages_metadata():
    buf = buffer(capacity=4, policy="fifo")
    buf.add(*items(0, 2), step=3)
    buf.add(*items(2, 2), step=10)
    assert sorted(buf.ages(12).tolist()) == [2, 2, 9, 9]


def _unchanged_after(buf: ReplayBuffer, action) -> None:
    before = buf.state_dict()
    with pytest.raises(ValueError):
        action()
    after = buf.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]) if isinstance(v, torch.Tensor) else v == after[k], k


@pytest.mark.parametrize("make_batch, match", [
    (lambda: (torch.zeros(2, 4), torch.zeros(2, 4)), "x must have shape"),
    (lambda: (torch.zeros(2, 3, 1), torch.zeros(2, 4)), "x must have shape"),
    (lambda: (torch.zeros(2, 3), torch.zeros(2, 5)), "teacher_logits must have shape"),
    (lambda: (torch.zeros(2, 3), torch.zeros(3, 4)), "rows"),
    (lambda: (torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 4)), "floating point"),
    (lambda: (torch.zeros(0, 3), torch.zeros(0, 4)), "empty"),
    (lambda: (torch.zeros(2, 3, device="meta"), torch.zeros(2, 4)), "buffer lives on"),
])
def test_bad_batches_raise_and_leave_the_buffer_unchanged(make_batch, match):
    buf = buffer(capacity=5)
    buf.add(*items(0, 3))
    _unchanged_after(buf, lambda: buf.add(*make_batch()))
    with pytest.raises(ValueError, match=match):
        buf.add(*make_batch())


def test_bad_sampling_requests():
    buf = buffer(capacity=5)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(1)
    buf.add(*items(0, 3))
    _unchanged_after(buf, lambda: buf.sample(0))
    _unchanged_after(buf, lambda: buf.sample(4, replace=False))
    assert buf.sample(4, replace=True)[0].shape == (4, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(capacity=0), "capacity"),
    (dict(capacity=-3), "capacity"),
    (dict(capacity=4, policy="lifo"), "policy"),
    (dict(capacity=4, dtype=torch.int32), "floating"),
])
def test_bad_construction(kwargs, match):
    capacity = kwargs.pop("capacity")
    with pytest.raises(ValueError, match=match):
        ReplayBuffer(capacity, (3,), 4, **kwargs)
