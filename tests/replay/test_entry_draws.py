"""Whole-entry draws (``draw="entry"``, the authors' replay): every draw is one stored insertion, exactly as
it was inserted (float64 rows too), the entry is uniform over the full ones, the compiled backends equal
the PyTorch reference bit for bit, the state resumes exactly, and what cannot hold whole entries is refused.

The statistical test uses a fixed seed and significance level ALPHA (see test_replay_backends)."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from lrwa_fast import LRwAConfig, LRwATrainer, ReplayBuffer
from lrwa_fast.replay.buffer import _ext
from lrwa_fast.replay.buffer.samplers import EntrySampler

ALPHA = 1e-3
BACKENDS = ["torch", pytest.param("cpp", marks=pytest.mark.skipif(_ext.module() is None, reason="no extension"))]


def entries(backend: str, capacity: int = 12, size: int = 3, seed: int = 5, device: str = "cpu",
            dtype: torch.dtype = torch.float64) -> ReplayBuffer:
    return ReplayBuffer(capacity, (2, 1), 4, policy="fifo", seed=seed, backend=backend, device=device, dtype=dtype,
                        draw="entry", entry_size=size)


def insertion(k: int, size: int = 3, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Insertion number ``k``: float64 rows carrying k (exactly representable) and noise (not)."""
    gen = torch.Generator().manual_seed(k)
    x = torch.randn(size, 2, 1, generator=gen, dtype=torch.float64)
    x[:, 0, 0] = k
    return x.to(device), torch.randn(size, 4, generator=gen, dtype=torch.float64).to(device)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_draw_is_one_whole_insertion_as_it_was_inserted(backend):
    buf = entries(backend)
    inserted = {}
    for k in range(7):  # 7 insertions into 4 entries: the FIFO keeps insertions 3..6
        inserted[k] = insertion(k)
        buf.add(*inserted[k])
        for _ in range(5):
            x, t = buf.sample(3, dtype=torch.float64)
            k_drawn = int(x[0, 0, 0])
            assert k_drawn <= k and k_drawn >= k - 3, "only insertions still stored"
            assert torch.equal(x, inserted[k_drawn][0]) and torch.equal(t, inserted[k_drawn][1])


def test_the_entry_is_uniform_over_the_full_ones():
    buf = entries("torch", capacity=40, size=4)
    for k in range(10):
        buf.add(*insertion(k, size=4))
    counts = torch.zeros(10)
    for _ in range(4000):
        counts[int(buf.sample(4, dtype=torch.float64)[0][0, 0, 0])] += 1
    assert stats.chisquare(counts.numpy()).pvalue > ALPHA


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_the_compiled_backend_equals_the_reference_bit_for_bit(dtype):
    if _ext.module() is None:
        pytest.skip("no extension")
    runs = []
    for backend in ("torch", "cpp"):
        buf = entries(backend, dtype=dtype)
        seen = []
        for k in range(9):
            buf.add(*insertion(k))
            seen += [buf.sample_with_indices(3, dtype=torch.float32) for _ in range(3)]
        seen.append(buf.sample_with_indices(3, torch.Generator().manual_seed(2)))
        runs.append(seen)
    for a, b in zip(*runs):
        assert all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.gpu
@pytest.mark.skipif(not _ext.has_cuda(), reason="needs the extension's CUDA kernels")
def test_cuda_equals_the_reference():
    runs = []
    for backend, device in (("torch", "cpu"), ("cuda", "cuda")):
        buf = entries(backend, device=device, dtype=torch.float32)
        for k in range(9):
            buf.add(*insertion(k, device=device))
        runs.append([buf.sample_with_indices(3) for _ in range(20)])
    for a, b in zip(*runs):
        assert all(torch.equal(u.cpu(), v.cpu()) for u, v in zip(a, b))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_restored_buffer_draws_what_the_original_draws(backend):
    original = entries(backend)
    for k in range(5):
        original.add(*insertion(k))
        original.sample(3)
    copy = entries("torch", seed=99)  # another key and backend: the state brings the key
    copy.load_state_dict(original.state_dict())
    for _ in range(10):
        assert torch.equal(original.sample_with_indices(3)[2], copy.sample_with_indices(3)[2])


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(policy="reservoir", draw="entry", entry_size=3), "fifo"),
    (dict(policy="fifo", draw="entry", entry_size=5), "whole entries"),
    (dict(policy="fifo", draw="entry"), "entry_size"),
    (dict(policy="fifo", draw="uniform", entry_size=3), "entry_size goes with"),
    (dict(policy="fifo", draw="each"), "draw='each' \\(expected one of"),
])
def test_a_buffer_that_cannot_hold_whole_entries_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReplayBuffer(12, (2, 1), 4, **kwargs)


def test_bad_adds_draws_and_states_are_refused_and_change_nothing():
    buf = entries("torch")
    with pytest.raises(ValueError, match="from a buffer holding 0"):
        buf.sample(3)
    with pytest.raises(ValueError, match="add batches of 3"):
        buf.add(*insertion(0, size=2))
    buf.add(*insertion(0))
    before = buf.state_dict()
    with pytest.raises(ValueError, match="takes the entry's 3 samples"):
        buf.sample(2)
    uniform = ReplayBuffer(12, (2, 1), 4, policy="fifo", dtype=torch.float64)
    with pytest.raises(ValueError, match="draws 'entry' entries of 3, this buffer draws 'uniform'"):
        uniform.load_state_dict(before)
    with pytest.raises(ValueError, match="draws 'uniform', this buffer draws 'entry' entries of 3"):
        buf.load_state_dict(uniform.state_dict())
    other_size = ReplayBuffer(12, (2, 1), 4, policy="fifo", dtype=torch.float64, draw="entry", entry_size=6)
    other_size.add(*insertion(1, size=6))
    kept = other_size.state_dict()
    with pytest.raises(ValueError, match="draws 'entry' entries of 3, this buffer draws 'entry' entries of 6"):
        other_size.load_state_dict(before)
    assert torch.equal(other_size.state_dict()["x"], kept["x"]), "a refused state changes nothing"
    after = buf.state_dict()
    assert after["sampler"] == before["sampler"] and torch.equal(after["x"], before["x"])


def test_the_sampler_rule_is_its_reference():
    """Entry e of the full ones, consecutive slots: the reference rule on its own."""
    slots = EntrySampler.indices(12, 3, seed=5, counter=7, device=torch.device("cpu"))
    assert slots[0] % 3 == 0 and torch.equal(slots, slots[0] + torch.arange(3)) and int(slots[-1]) < 12


def recipe_config(**extra) -> LRwAConfig:
    return LRwAConfig(batch_size=16, latent_dim=8, iterations=8, student_steps=2, device="cpu", seed=3,
                      memory_policy="fifo", memory_draw="entry", memory_capacity=12, memory_insert_size=4,
                      memory_batch_size=4, inner_lr=0.9, inner_weight_decay=5e-4, acquire_weight=0.0,
                      joint_replay=True, bn_mode="joint", loss="l1", **extra)


def test_the_recipe_trains_and_resumes_bit_exactly(tmp_path, tiny_models):
    straight = LRwATrainer(*tiny_models(), recipe_config())
    straight.train(progress=False)
    first = LRwATrainer(*tiny_models(), recipe_config())
    first.train(4, progress=False)
    first.save(tmp_path / "half.pt")
    resumed = LRwATrainer.load(tmp_path / "half.pt", *tiny_models())
    resumed.train(progress=False)
    assert straight.memory.buffer.sampler.calls > 0
    for a, b in zip(straight.student.state_dict().values(), resumed.student.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.history["metrics"] == resumed.history["metrics"]
    assert straight.memory.buffer.state_dict()["sampler"] == resumed.memory.buffer.state_dict()["sampler"]


@pytest.mark.parametrize(("fields", "match"), [
    (dict(memory_policy="reservoir"), "needs memory_policy='fifo'"),
    (dict(memory_capacity=10), "whole entries of memory_insert_size"),
    (dict(memory_batch_size=8), "must equal memory_insert_size"),
    (dict(bn_mode="joint", joint_replay=False), "needs joint_replay=True"),
])
def test_the_config_names_what_breaks_whole_entries(fields, match, tiny_models):
    base = {"memory_policy": "fifo", "memory_draw": "entry", "memory_capacity": 12, "memory_insert_size": 4,
            "memory_batch_size": 4, "joint_replay": True, "bn_mode": "joint"}
    with pytest.raises(ValueError, match=match):
        LRwATrainer(*tiny_models(), LRwAConfig(**{**base, **fields}))


def test_the_released_step_is_the_recipe_with_its_meta_term_weighted_zero(tiny_models):
    """authors_released (meta_mode="none") computes what the authors' code computes: the recipe's step with a
    meta term that sends nothing (here: weighted 0 in the first-order mode); the weights agree bit for bit."""
    released = LRwATrainer(*tiny_models(), recipe_config(meta_mode="none"))
    zero_meta = LRwATrainer(*tiny_models(), recipe_config(meta_mode="first_order", retain_weight=0.0))
    for trainer in (released, zero_meta):
        trainer.train(progress=False)
    for a, b in zip(released.student.state_dict().values(), zero_meta.student.state_dict().values()):
        assert torch.equal(a, b)
