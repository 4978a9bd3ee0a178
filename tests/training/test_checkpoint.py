"""Checkpoints: exact resume in a fresh process, atomic writes under SIGKILL, SIGINT handling,
refusal of corrupt or incompatible checkpoints."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lrwa_fast import LRwAConfig, LRwATrainer
from lrwa_fast.models import Generator, SmallCNN
from lrwa_fast.runtime.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    atomic_save,
    latest_checkpoint,
    list_checkpoints,
    read_checkpoint,
    save_rotating,
)
from tests.support import resume_in_a_fresh_process, subprocess_env

CONFIG = dict(batch_size=16, latent_dim=8, iterations=12, student_steps=2, device="cpu", seed=3,
              memory_capacity=20, memory_insert_size=6, log_every=2)

BUILD = "from lrwa_fast.testing import tiny_models\n"


def assert_same_state(a: dict, b: dict) -> None:
    for key in ("student", "generator"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    for name in ("x", "logits", "inserted_at"):
        assert torch.equal(a["memory"][name], b["memory"][name]), f"memory {name} differs"
    assert a["history"] == b["history"]
    assert a["iteration"] == b["iteration"]


@pytest.mark.slow
def test_resume_in_a_fresh_process_is_bit_exact(tmp_path, tiny_models):
    straight = LRwATrainer(*tiny_models(), LRwAConfig(**CONFIG))
    straight.train(progress=False)
    first = LRwATrainer(*tiny_models(), LRwAConfig(**CONFIG))
    first.train(5, progress=False)
    assert_same_state(straight.state_dict(), resume_in_a_fresh_process(first, tmp_path))


def test_rotation_keeps_the_newest(tmp_path, tiny_models):
    trainer = LRwATrainer(*tiny_models(), LRwAConfig(**CONFIG, checkpoint_dir=str(tmp_path), checkpoint_every=2,
                                               keep_checkpoints=2))
    trainer.train(7, progress=False)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000006.pt", "ckpt-00000007.pt"]
    assert read_checkpoint(latest_checkpoint(tmp_path))["iteration"] == 7


def _kill_during_a_write(folder: Path) -> bool:
    """Start a writer looping over checkpoints, SIGKILL it while a temporary file exists."""
    code = textwrap.dedent(f"""
        import torch
        from lrwa_fast.runtime.checkpoint import save_rotating
        big = {{"format_version": {FORMAT_VERSION}, "payload": torch.randn(8_000_000)}}
        print("ready", flush=True)
        for i in range(1, 1000):
            save_rotating(big, {str(folder)!r}, i, keep=3)
    """)
    env = subprocess_env()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    proc.stdout.readline()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(folder.glob(f".*.tmp-{proc.pid}")):
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return bool(list(folder.glob(f".*.tmp-{proc.pid}")))


def test_sigkill_during_a_write_leaves_the_last_good_checkpoint(tmp_path):
    big = {"format_version": FORMAT_VERSION, "payload": torch.randn(8_000_000)}
    save_rotating(big, tmp_path, 0, keep=3)
    caught = any(_kill_during_a_write(tmp_path) for _ in range(5))
    assert caught, "could not kill the writer in the middle of a write"
    good = list_checkpoints(tmp_path)
    assert good, "no checkpoint survived"
    for path in good:
        assert read_checkpoint(path)["payload"].shape == (8_000_000,)
    save_rotating(big, tmp_path, 5000, keep=3)  # the next writer removes dead writers' temporaries
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_atomic_save_never_exposes_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "state.pt"
    atomic_save({"format_version": FORMAT_VERSION, "v": torch.ones(3)}, target)

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"format_version": FORMAT_VERSION, "v": torch.zeros(3)}, target)
    monkeypatch.undo()
    assert torch.equal(read_checkpoint(target)["v"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_an_ignored_sigint_stays_ignored(tmp_path, tiny_models, tiny_run, sigint_after):
    """A run started with SIGINT ignored (nohup, a background job of a script) is not stopped by it."""
    trainer = LRwATrainer(*tiny_models(), LRwAConfig(**tiny_run, checkpoint_dir=str(tmp_path)))
    sigint_after(LRwATrainer, 2)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        trainer.train(progress=False)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert trainer.iteration == tiny_run["iterations"]


def test_sigint_finishes_the_step_writes_a_checkpoint_and_exits_non_zero(tmp_path, tiny_models, sigint_delivered):
    code = BUILD + textwrap.dedent(f"""
        import sys
        from lrwa_fast import LRwAConfig, LRwATrainer
        from lrwa_fast import TrainingInterrupted
        cfg = LRwAConfig(batch_size=16, latent_dim=8, iterations=100000, student_steps=2, device="cpu",
                         checkpoint_dir={str(tmp_path)!r})
        trainer = LRwATrainer(*tiny_models(), cfg)
        def evaluate(model):
            print("running", flush=True)
            return 0.0
        try:
            trainer.train(evaluate=evaluate, eval_every=1, progress=False)
        except TrainingInterrupted as err:
            print(err, file=sys.stderr)
            sys.exit(130)
    """)
    env = subprocess_env()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)  # inherits the fixture's SIGINT disposition: not ignored
    proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    stopped = int(re.search(r"SIGINT received: stopped after iteration (\d+)", err).group(1))
    assert stopped >= 1
    state = read_checkpoint(latest_checkpoint(tmp_path))
    assert state["iteration"] == stopped and "memory" in state
    resumed = LRwATrainer.load(latest_checkpoint(tmp_path), *tiny_models(), LRwAConfig(
        batch_size=16, latent_dim=8, iterations=100000, student_steps=2, device="cpu",
        checkpoint_dir=str(tmp_path)))
    assert resumed.iteration == stopped and resumed.step()["iteration"] == stopped + 1


def test_truncated_checkpoint_is_refused_and_the_previous_one_still_loads(tmp_path, tiny_models):
    trainer = LRwATrainer(*tiny_models(), LRwAConfig(**CONFIG, checkpoint_dir=str(tmp_path), checkpoint_every=3))
    trainer.train(6, progress=False)
    newest = latest_checkpoint(tmp_path)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        LRwATrainer.load(newest, *tiny_models())
    previous = list_checkpoints(tmp_path)[-2]
    assert LRwATrainer.load(previous, *tiny_models()).iteration == 3


def test_incompatible_checkpoints_say_what_differs(tmp_path, tiny_models):
    trainer = LRwATrainer(*tiny_models(), LRwAConfig(**CONFIG))
    trainer.train(2, progress=False)
    path = trainer.save(tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"inner_lr: checkpoint 0.05 vs given 0.3"):
        LRwATrainer.load(path, *tiny_models(), config=LRwAConfig(**CONFIG, inner_lr=0.3))
    expected = r"student.features.0.weight: checkpoint \(4, 1, 3, 3\) float32 vs model \(6, 1, 3, 3\)"
    with pytest.raises(CheckpointError, match=expected):
        LRwATrainer.load(path, *tiny_models(student_width=6))
    other_teacher = tiny_models()
    with torch.no_grad():
        next(other_teacher[0].parameters()).add_(1.0)
    with pytest.raises(CheckpointError, match="different teacher"):
        LRwATrainer.load(path, *other_teacher)
    from lrwa_fast import DFADTrainer

    with pytest.raises(CheckpointError, match="is for LRwATrainer, not DFADTrainer"):
        DFADTrainer.load(path, *tiny_models())
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        LRwATrainer.load(tmp_path / "junk.pt", *tiny_models())
    changed = dict(log_every=1, device="auto", nonfinite="skip", memory_backend="torch")
    resumed = LRwATrainer.load(path, *tiny_models(), config=LRwAConfig(**(CONFIG | changed)))
    assert resumed.iteration == 2


def test_dfad_trainer_round_trip(tmp_path, tiny_models):
    from lrwa_fast import DFADConfig, DFADTrainer

    cfg = {k: v for k, v in CONFIG.items() if not k.startswith("memory")}
    a = DFADTrainer(*tiny_models(), DFADConfig(**cfg))
    a.train(3, progress=False)
    b = DFADTrainer.load(a.save(tmp_path / "d.pt"), *tiny_models())
    a.train(2, progress=False)
    b.train(2, progress=False)
    for x, y in zip(a.student.parameters(), b.student.parameters()):
        assert torch.equal(x, y)


def test_model_fixture_is_deterministic(tiny_models):
    t1, s1, g1 = tiny_models()
    t2, s2, g2 = tiny_models()
    for m1, m2 in ((t1, t2), (s1, s2), (g1, g2)):
        assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert isinstance(s1, SmallCNN) and isinstance(g1, Generator)


def test_checkpoint_from_another_device_type_is_refused(tmp_path, tiny_models):
    trainer = LRwATrainer(*tiny_models(), LRwAConfig(**CONFIG))
    state = trainer.state_dict()
    state["device_type"] = "cuda"
    torch.save(state, tmp_path / "gpu.pt")
    with pytest.raises(CheckpointError, match="made on cuda and this trainer runs on cpu"):
        LRwATrainer.load(tmp_path / "gpu.pt", *tiny_models())


def test_resuming_from_an_earlier_checkpoint_supersedes_later_ones(tmp_path):
    for iteration in (2, 4, 6):
        save_rotating({"format_version": FORMAT_VERSION, "i": iteration}, tmp_path, iteration, keep=5)
    save_rotating({"format_version": FORMAT_VERSION, "i": 3}, tmp_path, 3, keep=5)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000002.pt", "ckpt-00000003.pt"]
    assert read_checkpoint(latest_checkpoint(tmp_path))["i"] == 3
    assert sorted(p.name for p in (tmp_path / "superseded").iterdir()) == ["ckpt-00000004.pt",
                                                                          "ckpt-00000006.pt"]


def test_cuda_rng_states_restore_onto_fewer_gpus(monkeypatch):
    """A checkpoint from a 3-GPU machine resumes on a 1-GPU one: GPU 0's state is restored."""
    from lrwa_fast.runtime import randomness

    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, index: restored.append((int(state[0]), index)))
    generator = torch.Generator()
    state = randomness.rng_state(generator)
    state["cuda"] = [torch.tensor([7], dtype=torch.uint8), torch.tensor([8], dtype=torch.uint8),
                     torch.tensor([9], dtype=torch.uint8)]
    randomness.set_rng_state(state, generator)
    assert restored == [(7, 0)]


def test_a_generic_trainers_checkpoint_loads_into_the_named_trainer_and_back(tmp_path, tiny_models):
    from lrwa_fast import DFADTrainer, Trainer

    trainer = Trainer(*tiny_models(), LRwAConfig(**CONFIG))
    trainer.train(3, progress=False)
    path = trainer.save(tmp_path / "t.pt")
    assert read_checkpoint(path)["trainer"] == "LRwATrainer"
    named, generic = LRwATrainer.load(path, *tiny_models()), Trainer.load(path, *tiny_models())
    assert isinstance(generic.config, LRwAConfig) and named.iteration == generic.iteration == 3
    for a, b in zip(named.student.parameters(), generic.student.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="is for LRwATrainer, not DFADTrainer"):
        DFADTrainer.load(path, *tiny_models())
