"""Data parallelism on 2 gloo processes against 1 process: identical ranks, sharded latent codes,
the same DFAD trajectory, the global meta-gradient, checkpoints, signals and a dead rank."""

from __future__ import annotations

import json
import signal

import pytest
import torch

from lrwa_fast import DFADConfig, LRwAConfig, LRwATrainer
from lrwa_fast.runtime.checkpoint import CheckpointError, list_checkpoints
from lrwa_fast.testing import rank_values, run_local
from lrwa_fast.training import DFADTrainer
from tests.support import run_meta
from tests.support import workers as w
from tests.support.torchrun import TorchrunJob

pytestmark = pytest.mark.distributed

SHARED = ("student", "generator", "student_optimizer", "generator_optimizer")  # what the ranks must agree on


def assert_same(a, b, atol: float = 0.0, where: str = "") -> None:
    """Nested dicts/lists of tensors equal (bit-exact when ``atol`` is 0)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], atol, f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, atol, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        if atol == 0:
            assert torch.equal(a, b), where
        else:
            torch.testing.assert_close(a, b, rtol=0, atol=atol, msg=lambda m: f"{where}: {m}")
    else:
        assert a == b, where


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["exact", "finite_difference"])
def test_ranks_hold_identical_weights_buffers_and_optimiser_states(tmp_path, mode):
    a, b = rank_values(run_local(w.train_lrwa, tmp_path, iterations=4, mode=mode))
    assert_same({k: a[k] for k in SHARED}, {k: b[k] for k in SHARED})
    assert a["student"]["features.1.running_mean"].abs().sum() > 0  # the BatchNorm buffers did move
    assert a["memory"] == b["memory"] == 12  # each shard holds 4 of every 8 inserted, 3 insertions
    assert a["metrics"] == b["metrics"]  # logged values are the global ones


@pytest.mark.slow
def test_the_authors_recipe_on_two_ranks_keeps_them_identical_and_draws_one_entry(tmp_path):
    """Inner weight decay, no acquisition term, joint replay with its BatchNorm statistics, whole-entry draws
    from a FIFO memory: the ranks stay identical and draw the same entry of their shards (one global entry)."""
    recipe = dict(AUTHORS_TERMS, inner_lr=0.9, bn_mode="joint", memory_policy="fifo", memory_draw="entry",
                  memory_capacity=24, memory_insert_size=8, memory_batch_size=8, loss="l1")
    for mode in ("exact", "first_order"):
        (tmp_path / mode).mkdir()
        a, b = rank_values(run_local(w.train_lrwa, tmp_path / mode, iterations=4, mode=mode, **recipe))
        assert_same({k: a[k] for k in SHARED}, {k: b[k] for k in SHARED})
        assert a["memory"] == b["memory"] == 12 and a["metrics"] == b["metrics"]
        assert a["sampler"] == b["sampler"] and a["sampler"]["calls"] > 0
        assert torch.equal(a["last_draw"], b["last_draw"])  # the same slots: the same entry on both ranks
        assert a["last_draw"][0] % 4 == 0 and torch.equal(a["last_draw"], a["last_draw"][0] + torch.arange(4))


@pytest.mark.slow
def test_ranks_with_mad_and_probes_stay_identical(tmp_path):
    """The EMA generator's share is of the global batch (rank 1 here draws only EMA rows); weights and the
    EMA stay identical on both ranks, and each keeps probes of its own shard."""
    a, b = rank_values(run_local(w.train_lrwa, tmp_path, iterations=4, mode="first_order", ema_decay=0.9,
                                 ema_share=0.5, probe_every=2, probe_size=4))
    for state in (a, b):  # rank 1 never runs the live generator on a fresh batch: its BatchNorm call counts
        state["generator"] = {k: v for k, v in state["generator"].items() if "num_batches_tracked" not in k}
    assert_same({k: a[k] for k in SHARED}, {k: b[k] for k in SHARED})
    assert_same(a["ema"], b["ema"], where="the EMA generator")
    assert a["probes"] == b["probes"] == [0, 2]


@pytest.mark.slow
def test_ranks_with_generative_memories_stay_identical_and_train_their_own_vae(tmp_path):
    a, b = rank_values(run_local(w.train_lrwa, tmp_path, iterations=3, mode="first_order", memory_kind="generative",
                              vae_width=8, vae_fresh_size=8))
    assert_same({k: a[k] for k in SHARED}, {k: b[k] for k in SHARED})
    assert a["memory"] == b["memory"] > 0  # each VAE has learned from its rank's samples
    assert any(not torch.equal(a["vae"][k], b["vae"][k]) for k in a["vae"]), "each rank trains its own VAE (weights)"


@pytest.mark.slow
def test_latent_codes_are_slices_of_the_one_process_draw(tmp_path):
    a, b = rank_values(run_local(w.train_lrwa, tmp_path, iterations=1, mode="first_order"))
    single = LRwATrainer(*w.bn_models(), LRwAConfig(**w.LRWA, meta_mode="first_order"))
    single.train(1, progress=False)
    union = torch.cat([a["latent"], b["latent"]])
    assert a["latent"].shape == (8, 8) and not torch.equal(a["latent"], b["latent"])
    assert torch.equal(union, single.random.latent(16, 8))


@pytest.mark.slow
def test_dfad_on_two_processes_follows_the_one_process_trajectory(tmp_path):
    a, b = rank_values(run_local(w.train_dfad_bn_free, tmp_path, iterations=3))
    single = DFADTrainer(*w.bn_free_models(), DFADConfig(**w.SMALL))
    single.train(3, progress=False)
    assert_same(a, b)
    assert_same(a["student"], single.student.state_dict(), atol=2e-6, where="student")
    assert_same(a["generator"], single.generator.state_dict(), atol=2e-6, where="generator")


AUTHORS_TERMS = dict(inner_weight_decay=5e-4, acquire_weight=0.0, joint_replay=True)  # the authors' step


@pytest.mark.parametrize("mode", [pytest.param("exact", marks=pytest.mark.slow), "first_order",
                                  pytest.param("finite_difference", marks=pytest.mark.slow)])
@pytest.mark.parametrize("terms", [{}, AUTHORS_TERMS], ids=["paper", "authors"])
def test_meta_gradient_with_a_group_is_the_gradient_on_the_union(tmp_path, mode, terms):
    seed = int(torch.randint(0, 2**31, ()))
    a, b = rank_values(run_local(w.meta_gradient_on_shards, tmp_path, mode=mode, seed=seed, **terms))
    model, x_acq, t_acq, x_mem, t_mem = w.meta_problem(seed)
    ref = run_meta(model, (x_acq, t_acq, x_mem, t_mem), inner_lr=0.3, mode=mode, loss="kl", temperature=2.0,
                   retain_weight=0.7, **terms)
    assert_same(a, b)
    for name, g in ref.grads.items():
        assert torch.allclose(a["grads"][name], g, rtol=1e-6, atol=1e-9), name
    torch.testing.assert_close(a["loss_acq"], ref.loss_acq, rtol=1e-12, atol=0)
    torch.testing.assert_close(a["loss_ret"], ref.loss_ret, rtol=1e-12, atol=0)


@pytest.mark.slow
def test_checkpoint_in_two_processes_resumes_bit_exactly_in_two_fresh_ones(tmp_path):
    first = rank_values(run_local(w.checkpoint_then_resume, tmp_path, phase="first"))
    assert len(list_checkpoints(tmp_path / "ckpt")) == 1  # one file, by rank 0
    assert first[0]["path"] == first[1]["path"]
    resumed = rank_values(run_local(w.checkpoint_then_resume, tmp_path, phase="resume"))
    for r in range(2):
        assert_same({k: v for k, v in first[r].items() if k != "path"}, resumed[r])


@pytest.mark.slow
def test_another_world_size_is_refused_naming_both(tmp_path):
    rank_values(run_local(w.checkpoint_then_resume, tmp_path, phase="first"))
    with pytest.raises(CheckpointError, match=r"written by 2 process\(es\) and this run has 1"):
        LRwATrainer.load(tmp_path / "ckpt" / "ckpt-00000003.pt", *w.bn_models())


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_both_after_the_same_iteration_with_one_checkpoint(tmp_path):
    results = run_local(w.train_until_signalled, tmp_path, on_start=w.signal_rank_one(signal.SIGTERM))
    assert [r["error"] for r in results] == ["TrainingInterrupted"] * 2, results
    iterations = {r["message"].split("stopped after iteration ")[1].split(";")[0] for r in results}
    assert len(iterations) == 1
    assert [p.name for p in list_checkpoints(tmp_path / "ckpt")] == [f"ckpt-{int(iterations.pop()):08d}.pt"]


@pytest.mark.slow
def test_a_killed_rank_makes_the_other_exit_with_a_clear_error(tmp_path):
    results = run_local(w.train_until_signalled, tmp_path, on_start=w.kill_rank_one, timeout_s=20.0)
    assert results[1] is None  # killed before it could report
    assert results[0]["error"] == "PeerFailure", results[0]
    assert "rank 0 of 2" in results[0]["message"] and "peer process" in results[0]["message"]


@pytest.mark.slow
def test_no_trainer_keeps_a_reference_to_the_default_group(tmp_path):
    # a group kept alive past destroy_process_group() or into interpreter exit aborts the process (Gloo)
    a, b = rank_values(run_local(w.references_to_the_group, tmp_path))
    assert a["memory"] > 0  # the exact meta-gradient ran, through the differentiable all-reduce
    assert a["after"] == a["before"] and b["after"] == b["before"], (a, b)


def test_batch_sizes_not_divisible_by_the_world_are_refused(tmp_path):
    results = run_local(w.train_lrwa, tmp_path, iterations=1, mode="exact", batch_size=15)
    assert all(r["error"] == "ValueError" and "batch_size=15 is global" in r["message"] for r in results)


@pytest.mark.slow
def test_the_demo_runs_under_torchrun_and_rank_zero_writes_the_report(tmp_path):
    with TorchrunJob(["-m", "lrwa_fast", "demo", "--fast", "--quiet", "--out", str(tmp_path / "out"),
                      "--cache-dir", str(tmp_path / "cache")], tmp_path, deadline_s=60.0) as job:
        assert job.wait() == 0, job.output()
        assert job.running() == []
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [r["method"] for r in report["runs"]] == ["LRwA", "DFAD"]
    assert job.output().count("| LRwA |") == 1  # printed by rank 0 only


@pytest.mark.slow
def test_teacher_training_on_two_ranks_keeps_them_identical_and_rank_zero_writes(tmp_path):
    from lrwa_fast.testing.cifar_files import write_synthetic_cifar

    write_synthetic_cifar(tmp_path / "data", "cifar10", train=21, test=6)  # last batch of 5: ranks take 3 and 2
    a, b = rank_values(run_local(w.train_teacher_two_epochs, tmp_path))
    assert a["report"]["test_accuracy"] is not None and b["report"] == {}
    assert_same(a["model"], b["model"])
    written = torch.load(tmp_path / "teacher" / "teacher.pt", weights_only=True)["model"]
    assert_same(written, a["model"])  # the run is reproducible, and rank 0 wrote what the ranks hold


@pytest.mark.slow
def test_a_non_finite_gradient_on_one_rank_is_skipped_by_every_rank(tmp_path):
    a, b = rank_values(run_local(w.skip_on_one_rank, tmp_path))
    assert a["skipped"] == b["skipped"] == 2  # both student steps of iteration 1, on both ranks
    assert_same(a, b)
    assert all(torch.isfinite(v).all() for v in a["student"].values() if v.is_floating_point())
