"""ReplayBuffer behaviour (PyTorch backend): policies, uniformity, round trips, bad input.

Statistical tests use fixed seeds and significance level ALPHA: with a correct buffer each fails
with probability ALPHA, and always the same way for the same seed.
"""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from lrwa_fast import ReplayBuffer
from lrwa_fast.replay.buffer import FIFOWriter, ReservoirWriter, UniformSampler, _ext, torch_backend
from lrwa_fast.replay.buffer.philox import philox_u32
from lrwa_fast.replay.buffer.storage import TensorStorage
from lrwa_fast.replay.buffer.writers import MAX_ITEMS, WRITERS

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


@pytest.mark.slow
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


def sequential_slots(policy: str, n_items: int, capacity: int, seed: int) -> list[int]:
    """Item held by each slot (-1: none) after offering items 0..n-1 one at a time, written out by hand:
    fifo overwrites slot i mod capacity; reservoir keeps item i at slot j = ⌊u·(i+1)/2³²⌋ if j < capacity."""
    held = [-1] * capacity
    for i in range(n_items):
        if policy == "fifo" or i < capacity:
            slot = i % capacity
        else:
            u = int(philox_u32(seed, torch.tensor([i & 0xFFFFFFFF]), i >> 32, 0, 1))
            slot = (u * (i + 1)) >> 32
        if slot < capacity:
            held[slot] = i
    return held


@pytest.mark.parametrize("policy", ["fifo", "reservoir"])
@pytest.mark.parametrize("capacity", [1, 5, 16])
def test_writers_assign_the_slots_of_one_by_one_insertion(policy, capacity):
    """Batched slot assignment (later items win collisions) equals the sequential rule after every batch."""
    held, seen = [-1] * capacity, 0
    for batch in [1, 3, 2, 9, 1, 40, 4, 17]:
        rows, slots = WRITERS[policy].assign_slots(seen, batch, capacity, 9, torch.device("cpu"))
        assert len(set(slots.tolist())) == len(slots), "one row per slot"
        for row, slot in zip(rows.tolist(), slots.tolist()):
            held[slot] = seen + row
        seen += batch
        assert held == sequential_slots(policy, seen, capacity, 9), (policy, seen)


@pytest.mark.parametrize("writer_class", [FIFOWriter, ReservoirWriter])
def test_writer_counts_and_state_dict_round_trip(writer_class):
    storages = [TensorStorage.allocate(6, (3,), 4, torch.device("cpu"), torch.float32) for _ in range(2)]
    writer = writer_class(5)
    for start, n in [(0, 4), (4, 7), (11, 2)]:
        writer.write(torch_backend, storages[0], *items(start, n), step=None)
    assert writer.state_dict() == {"seed": 5, "seen": 13, "adds": 3}
    twin = writer_class(0)
    twin.load_state_dict({**writer.state_dict(), "draws": 99})  # a buffer's state: other keys ignored
    assert twin.state_dict() == writer.state_dict()
    storages[1].x.copy_(storages[0].x)
    for w, storage in zip((writer, twin), storages):
        w.write(torch_backend, storage, *items(13, 9), step=None)
    assert torch.equal(storages[0].x, storages[1].x)
    assert storages[0].inserted_at.max() == 3  # step defaults to the number of earlier writes


def test_writer_refuses_items_beyond_its_lifetime_unchanged():
    writer = FIFOWriter(0)
    writer.seen = MAX_ITEMS - 1
    storage = TensorStorage.allocate(4, (3,), 4, torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="at most"):
        writer.write(torch_backend, storage, *items(0, 2), step=None)
    assert (writer.seen, writer.adds) == (MAX_ITEMS - 1, 0)


def test_sampler_counts_and_state_dict_round_trip():
    storage = TensorStorage.allocate(20, (3,), 4, torch.device("cpu"), torch.float32)
    FIFOWriter(0).write(torch_backend, storage, *items(0, 20), step=None)
    sampler = UniformSampler(7)
    for replace in (True, True, False):
        sampler.sample_into(torch_backend, storage, *storage.empty_sample(5, torch.float32), fill=20, replace=replace,
                     rng=None)
    assert sampler.state_dict() == {"seed": 7, "draws": 10, "calls": 1}
    twin = UniformSampler(0)
    twin.load_state_dict({**sampler.state_dict(), "seen": 99})
    assert twin.state_dict() == sampler.state_dict()
    for replace in (True, False):
        draws = [s.sample_into(torch_backend, storage, *storage.empty_sample(6, torch.float32), fill=20,
                               replace=replace, rng=None) for s in (sampler, twin)]
        assert torch.equal(*draws)
    generated = sampler.sample_into(torch_backend, storage, *storage.empty_sample(6, torch.float32), fill=20,
                             replace=True, rng=torch.Generator().manual_seed(1))
    assert sampler.draws == 22 and not torch.equal(generated, draws[0])


def test_buffer_state_is_its_parts_state():
    buf = buffer(capacity=6, policy="fifo", seed=3)
    buf.add(*items(0, 8))
    buf.sample(4)
    state = buf.state_dict()
    assert state["writer"] == buf.writer.state_dict() == {"seed": 3, "seen": 8, "adds": 1}
    assert state["sampler"] == buf.sampler.state_dict() == {"seed": 3, "draws": 4, "calls": 0}
    assert (buf.policy, buf.seed, buf.seen, buf.adds, buf.draws, buf.calls) == ("fifo", 3, 8, 1, 4, 0)


def test_writer_and_sampler_keys_survive_a_round_trip_when_they_differ():
    """Each part's state is nested under its name: a writer and a sampler with different keys keep theirs."""
    buf = buffer(capacity=6, policy="reservoir", seed=3)
    buf.writer.seed, buf.sampler.seed = 11, 22
    buf.add(*items(0, 9))
    buf.sample(4)
    twin = buffer(capacity=6, policy="reservoir", seed=0)
    twin.load_state_dict(buf.state_dict())
    assert (twin.writer.seed, twin.sampler.seed) == (11, 22)
    twin.add(*items(9, 30))
    buf.add(*items(9, 30))
    assert torch.equal(twin.storage.x, buf.storage.x) and torch.equal(twin.sample(5)[0], buf.sample(5)[0])


def test_a_flat_state_of_lrwa_fast_0_2_still_loads():
    """lrwa_fast 0.2 wrote the writer's and the sampler's counters side by side (one shared seed)."""
    buf = buffer(capacity=6, policy="fifo", seed=3)
    buf.add(*items(0, 8))
    buf.sample(4)
    state = buf.state_dict()
    flat = {**{k: v for k, v in state.items() if k not in ("writer", "sampler")}, **state["writer"],
            **state["sampler"]}
    twin = buffer(capacity=6, policy="fifo", seed=0)
    twin.load_state_dict(flat)
    assert twin.writer.state_dict() == buf.writer.state_dict()
    assert twin.sampler.state_dict() == buf.sampler.state_dict()
    assert torch.equal(twin.sample(5)[0], buf.sample(5)[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_sample_fits_sample_out(backend):
    buf = ReplayBuffer(8, (3,), 4, policy="fifo", seed=0, backend=backend)
    buf.add(*items(0, 8))
    out = buf.empty_sample(5, torch.float16)
    assert [(tuple(t.shape), t.dtype, t.device) for t in out] == [((5, 3), torch.float16, buf.device),
                                                                 ((5, 4), torch.float16, buf.device)]
    x, logits = buf.sample(5, dtype=torch.float16, out=out)
    assert x is out[0] and logits is out[1] and torch.equal(logits[:, 0], x[:, 0] + 0.5)
