"""The trainer's parts: custom student updates, the updater, state of every part, progress in logs,
checkpoint format, and the rule that nothing outside the trainer's modules reaches into a trainer."""

from __future__ import annotations

import ast
import importlib.util
import io
from pathlib import Path

import pytest
import torch

from lrwa_fast import (
    DFADConfig,
    DFADTrainer,
    KDUpdate,
    LRwAConfig,
    LRwATrainer,
    StudentUpdate,
)
from lrwa_fast.runtime.checkpoint import CheckpointError, atomic_save
from lrwa_fast.training.progress import LineProgress, progress
from tests.support import ROOT


def anchored_kd_class():
    spec = importlib.util.spec_from_file_location("custom_update", ROOT / "docs" / "examples" / "custom_update.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AnchoredKD


def test_docs_example_update_is_short_and_uses_public_names_only():
    source = (ROOT / "docs" / "examples" / "custom_update.py").read_text()
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    assert cls.end_lineno - cls.lineno + 1 < 30
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "lrwa_fast"
                for a in n.names]
    assert imported and not any(name.startswith("_") for name in imported)
    assert "._" not in source.replace("__", ""), "no private attributes"


def distance_to_start(trainer, start):
    return float(torch.cat([(p.detach() - s).reshape(-1) for p, s in zip(trainer.student_params, start)]).norm())


def test_docs_example_update_pulls_the_student_towards_its_start(tiny_models, tiny_run):
    AnchoredKD = anchored_kd_class()
    plain = DFADTrainer(*tiny_models(), DFADConfig(**tiny_run))
    start = [p.detach().clone() for p in plain.student_params]
    plain.train(6, progress=False)
    teacher, student, gen = tiny_models()
    anchored = DFADTrainer(teacher, student, gen, DFADConfig(**tiny_run), update=AnchoredKD(student, 5.0))
    assert isinstance(anchored.update, StudentUpdate)
    anchored.train(6, progress=False)
    assert distance_to_start(anchored, start) < 0.5 * distance_to_start(plain, start)
    assert anchored.history["metrics"][-1]["anchor_distance"] > 0


def test_docs_example_update_state_resumes_bit_exactly(tmp_path, tiny_models, tiny_run):
    AnchoredKD = anchored_kd_class()
    teacher, student, gen = tiny_models()
    straight = DFADTrainer(teacher, student, gen, DFADConfig(**tiny_run), update=AnchoredKD(student, 5.0))
    straight.train(progress=False)
    teacher, student, gen = tiny_models()
    first = DFADTrainer(teacher, student, gen, DFADConfig(**tiny_run), update=AnchoredKD(student, 5.0))
    first.train(4, progress=False)
    path = first.save(tmp_path / "c.pt")
    teacher, student, gen = tiny_models(student_seed=7)  # other weights: the anchor must come from the checkpoint
    resumed = DFADTrainer.load(path, teacher, student, gen, update=AnchoredKD(student, 1.0))
    assert resumed.update.strength == 5.0
    resumed.train(progress=False)
    for a, b in zip(straight.student.parameters(), resumed.student.parameters()):
        assert torch.equal(a, b)


def test_an_object_without_the_protocol_is_refused(tiny_models, tiny_run):
    with pytest.raises(ValueError, match="StudentUpdate protocol"):
        DFADTrainer(*tiny_models(), DFADConfig(**tiny_run), update=lambda ctx, x, t: None)


def test_every_part_has_its_own_state(tiny_models, tiny_run):
    trainer = LRwATrainer(*tiny_models(), LRwAConfig(**tiny_run, memory_insert_size=4))
    trainer.train(3, progress=False)
    state = trainer.state_dict()
    assert set(trainer.parts()) == {"memory", "student", "generator", "student_updater", "generator_updater",
                                    "guard", "metrics", "random", "update"}
    for name, part in trainer.parts().items():
        assert name in state
        part.load_state_dict(state[name])  # each part restores its own state
    assert state["guard"] == {"skipped": 0} and state["memory"]["writer"]["seen"] == 12


def test_old_format_checkpoint_is_refused_naming_the_version(tmp_path, tiny_models, tiny_run):
    trainer = LRwATrainer(*tiny_models(), LRwAConfig(**tiny_run))
    old = {**trainer.state_dict(), "format_version": 1}
    atomic_save(old, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"format version 1 \(written by lrwa_fast 0\.1.*reads format "
                                              r"version 2"):
        LRwATrainer.load(tmp_path / "old.pt", *tiny_models())


def test_checkpoint_with_a_memory_does_not_load_into_a_trainer_without_one(tmp_path, tiny_models, tiny_run):
    trainer = LRwATrainer(*tiny_models(), LRwAConfig(**tiny_run))
    state = trainer.state_dict()
    state["trainer"] = "DFADTrainer"
    atomic_save(state, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="has a replay memory and this trainer has none"):
        DFADTrainer.load(tmp_path / "c.pt", *tiny_models(), config=DFADConfig(**tiny_run))


def test_progress_in_a_log_is_plain_lines_at_a_tenth_of_the_work():
    stream = io.StringIO()
    bar = progress(80, "LRwATrainer", stream=stream)
    assert isinstance(bar, LineProgress)
    for i in range(80):
        bar.update({"loss_student": f"{1 / (i + 1):.4g}"})
    bar.close()
    text = stream.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and len(lines) == 10
    assert lines[-1].startswith("LRwATrainer: 80/80 it (100%)") and "ETA 0s" in lines[-1]
    assert "loss_student=0.0125" in lines[-1]


def test_training_progress_written_to_a_pipe_is_plain(monkeypatch, capsys, tiny_models, tiny_run):
    trainer = DFADTrainer(*tiny_models(), DFADConfig(**(tiny_run | dict(iterations=40, student_steps=1))))
    trainer.train(progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and 1 <= len(err.splitlines()) <= 11


def _private_trainer_accesses(path: Path) -> list[str]:
    """``x._name`` where ``x`` is a name containing "trainer" (or ``tr``), in one source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and ("trainer" in owner.id or owner.id == "tr"):
                found.append(f"{path.name}:{node.lineno} {owner.id}.{node.attr}")
    return found


def test_nothing_outside_the_trainer_modules_uses_its_private_members():
    own = {"trainer.py", "loop.py"}
    files = [p for p in (ROOT / "lrwa_fast").rglob("*.py") if p.name not in own]
    files += list((ROOT / "benchmarks").glob("*.py")) + list((ROOT / "tests").rglob("*.py"))
    assert not [hit for f in files for hit in _private_trainer_accesses(f)]


def test_kd_update_is_the_default_student_update(tiny_models, tiny_run):
    trainer = DFADTrainer(*tiny_models(), DFADConfig(**tiny_run))
    assert isinstance(trainer.update, KDUpdate) and trainer.memory is None


def test_a_checkpoint_names_its_student_update(tmp_path, tiny_models, tiny_run):
    AnchoredKD = anchored_kd_class()
    teacher, student, gen = tiny_models()
    path = DFADTrainer(teacher, student, gen, DFADConfig(**tiny_run), update=AnchoredKD(student, 1.0)).save(
        tmp_path / "anchored.pt")
    with pytest.raises(CheckpointError, match="written with the student update AnchoredKD, and this trainer "
                                              "uses KDUpdate"):
        DFADTrainer.load(path, *tiny_models())
    plain = DFADTrainer(*tiny_models(), DFADConfig(**tiny_run)).save(tmp_path / "plain.pt")
    teacher, student, gen = tiny_models()
    with pytest.raises(CheckpointError, match="written with the student update KDUpdate"):
        DFADTrainer.load(plain, teacher, student, gen, update=AnchoredKD(student, 1.0))


def test_an_update_carrying_a_memory_brings_it_to_the_trainer(tiny_models, tiny_run):
    from lrwa_fast import BufferMemory, MetaSettings, MetaUpdate, ReplayBuffer

    teacher, student, gen = tiny_models()
    memory = BufferMemory(ReplayBuffer(64, (1, 8, 8), 10, seed=0), batch_size=8)
    update = MetaUpdate(memory, MetaSettings(inner_lr=0.05))
    trainer = DFADTrainer(teacher, student, gen, DFADConfig(**tiny_run), update=update)
    assert trainer.memory is memory
    metrics = trainer.train(3, progress=False)["metrics"][-1]
    assert metrics["memory_fill"] == 48 and "loss_retain" in metrics
    assert "memory" in trainer.state_dict()


def test_lrwa_trainer_takes_another_update_and_keeps_its_memory(tiny_models, tiny_run):
    AnchoredKD = anchored_kd_class()
    teacher, student, gen = tiny_models()
    trainer = LRwATrainer(teacher, student, gen, LRwAConfig(**tiny_run), update=AnchoredKD(student, 1.0))
    trainer.train(2, progress=False)
    assert isinstance(trainer.update, AnchoredKD) and len(trainer.memory) == 32


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["first_order", "exact", "finite_difference"])
def test_a_whole_cuda_iteration_never_synchronises(mode, tiny_models, tiny_run):
    """Between metric reads an iteration (generator, student meta-steps, memory draw and insert)
    leaves the host free: any implicit device sync raises under sync debug mode "error"."""
    cfg = LRwAConfig(**(tiny_run | dict(device="cuda", log_every=10**6, iterations=100)), meta_mode=mode,
                     memory_insert_size=8)
    trainer = LRwATrainer(*tiny_models(), cfg)
    trainer.step()
    trainer.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.iteration == 5 and len(trainer.memory) == 40
