"""``lrwa-fast study --preset NAME --data PATH --teacher FILE``: the study's methods on a CIFAR preset with the
user's files (small CIFAR-format files here), every method a complete config from the preset, paired by seed,
resumable, and refused clearly before any work when the preset, data or teacher is wrong."""

from __future__ import annotations

import json

import pytest
import torch

from lrwa_fast import DFADConfig
from lrwa_fast.apps.cifar_study import CifarPlan
from lrwa_fast.apps.cli import main
from lrwa_fast.apps.presets import get_preset
from lrwa_fast.apps.study import StudySettings
from lrwa_fast.apps.teacher import save_teacher
from lrwa_fast.models import build_model
from lrwa_fast.testing.cifar_files import write_synthetic_cifar

PRESET = "cifar10-wrn40_2-wrn16_1"
SMALL = {"batch_size": 2, "student_steps": 1, "latent_dim": 16, "device": "cpu", "memory_start": 0,
         "memory_insert_size": 2, "memory_batch_size": 2, "generator.img_size": 8, "generator.ngf": 8}


@pytest.fixture
def files(tmp_path):
    data = write_synthetic_cifar(tmp_path / "data", "cifar10", train=4, test=6)
    torch.manual_seed(0)
    teacher = save_teacher(tmp_path / "teacher.pt", build_model("wrn40_2", 10), "wrn40_2", "cifar10")
    return data, teacher


def settings(files, **fields) -> StudySettings:
    data, teacher = files
    defaults = dict(preset=PRESET, data=str(data), teacher=str(teacher), seeds=2, iterations=2, eval_every=1,
                    methods=["authors_dfad", "authors_released", "authors"], overrides=SMALL)
    return StudySettings(**defaults | fields)


def test_the_methods_are_the_preset_and_its_twin_with_their_own_fields(files):
    plan = settings(files).runs()
    lrwa, dfad = get_preset(PRESET).spec["trainer"], get_preset(f"{PRESET}-dfad").spec["trainer"]
    authors, released, twin = (plan.trainers[m] for m in ("authors", "authors_released", "authors_dfad"))
    assert authors.inner_lr == lrwa["inner_lr"] == 0.9 and authors.meta_mode == "exact"
    assert released.meta_mode == "none" and type(twin) is DFADConfig and plan.methods["authors_dfad"].method == "dfad"
    assert twin.loss == dfad["loss"] == "l1" and twin.probe_every == 1  # a probe every 1/20 of the 2 iterations
    assert all(c.batch_size == 2 for c in plan.trainers.values())
    assert all(m.generator.img_size == 8 and m.trainer == {} for m in plan.methods.values())
    assert plan.student_arch == "wrn16_1" and plan.iterations == 2
    assert CifarPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan  # what settings.json holds


@pytest.mark.parametrize(("fields", "message"), [
    (dict(preset="cifar10-nope"), "a study takes an LRwA preset"),
    (dict(preset=f"{PRESET}-dfad"), "a study takes an LRwA preset"),
    (dict(teacher="missing.pt"), "needs --teacher"),
    (dict(data=""), "needs --data"),
    (dict(overrides={"nope": 1}), r"unknown setting\(s\) \['nope'\]"),
    (dict(teacher_seed=1), "--teacher-seed goes with an embedded benchmark"),
])
def test_a_bad_preset_study_is_refused_before_any_work(files, tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        settings(files, **fields).check()


@pytest.mark.slow
def test_a_preset_study_runs_paired_by_seed_and_resumes(files, tmp_path, capsys):
    data, teacher = files
    out = tmp_path / "out"
    args = ["study", "--preset", PRESET, "--data", str(data), "--teacher", str(teacher), "--seeds", "2",
            "--methods", "authors_dfad,authors_released,authors", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
            "--quiet", "--iterations", "2", "--sweep", "student_optimizer.lr=0.1,0.05",
            *[a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]]
    assert main(args) == 0, capsys.readouterr().err
    for value in ("0.1", "0.05"):
        report = json.loads((out / f"student_optimizer.lr={value}" / "study.json").read_text())
        assert report["target"] == PRESET and report["student_arch"] == "wrn16_1"
        assert report["teacher"]["checkpoint"] == str(teacher.resolve())
        assert [(r["method"], r["reference"]) for r in report["comparisons"]] == [
            ("authors_released", "authors_dfad"), ("authors", "authors_dfad"), ("authors", "authors_released")]
        assert sorted((r["method"], r["seed"]) for r in report["runs"]) == sorted(
            (m, s) for m in ("authors_dfad", "authors_released", "authors") for s in (0, 1))
        assert all(r["iterations"] == [2] for r in report["runs"])  # the preset evaluates every 72 iterations
    before = {p.name: p.stat().st_mtime_ns for p in (out / "student_optimizer.lr=0.1" / "runs").iterdir()}
    assert main(args) == 0  # finished runs are read back, not run again
    assert {p.name: p.stat().st_mtime_ns for p in (out / "student_optimizer.lr=0.1" / "runs").iterdir()} == before
