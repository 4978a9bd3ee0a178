"""The commands that take a teacher file (``distill``, ``study``, ``check-teacher``) with the community's files as
their code bases save them: they run, evaluate with the normalisation the teacher was trained with, report the
layout and the published accuracy; what cannot be loaded stops them before anything is written."""

from __future__ import annotations

import json
import re
import warnings

import pytest
import torch

from lrwa_fast.apps.cli import main
from lrwa_fast.apps.study import StudySettings
from lrwa_fast.apps.teacher import save_teacher
from lrwa_fast.data import load_cifar
from lrwa_fast.models import build_model, load_teacher
from lrwa_fast.models.layouts import CIFAR_STD_2023
from lrwa_fast.testing import write_synthetic_cifar
from tests.support import manifest, manifest_entries, write_teacher_file

SMALL = ["trainer.batch_size=2", "generator.img_size=8", "trainer.student_steps=1", "trainer.iterations=2",
         "eval_every=1", "trainer.memory_start=0", "trainer.memory_insert_size=2", "trainer.memory_batch_size=2",
         "trainer.latent_dim=16", "generator.ngf=8", "trainer.device=cpu"]
PRESET = "cifar10-wrn40_2-wrn16_1"


@pytest.fixture
def data(tmp_path):
    return write_synthetic_cifar(tmp_path / "data", "cifar10", train=4, test=6)


def datafree_teacher(tmp_path, arch="wrn40_2", prefix="module."):
    """A DataFree checkpoint ({'epoch', 'arch', 'state_dict', 'best_acc1', ...}) trained under DataParallel."""
    write_teacher_file(tmp_path / f"cifar10_{arch}.pth", manifest("datafree")["files"][f"checkpoint:{arch}"],
                       prefix=prefix)
    return tmp_path / f"cifar10_{arch}.pth"


def distill(data, teacher, out, *extra):
    args = ["distill", "--preset", PRESET, "--data", str(data), "--teacher", str(teacher), "--out", str(out),
            "--quiet", *extra]
    for item in SMALL:
        args += ["--set", item]
    return main(args)


def test_distill_takes_a_datafree_teacher_with_its_normalisation(tmp_path, data, recwarn):
    teacher = datafree_teacher(tmp_path)
    assert distill(data, teacher, tmp_path / "run") == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["teacher"]["layout"] == "datafree" and report["teacher"]["arch"] == "wrn40_2"
    assert report["teacher"]["published_accuracy"] == 94.87 and report["teacher"]["best_acc1"] == 0.95
    norm = report["normalisation"]
    assert (tuple(norm["mean"]), tuple(norm["std"])) == CIFAR_STD_2023 and "NORMALIZE_DICT" in norm["from"]
    assert not [w for w in recwarn if "normalisation" in str(w.message)], "a known normalisation warns not"


def test_an_unknown_normalisation_warns_once_and_can_be_stated(tmp_path, data):
    torch.manual_seed(0)
    torch.save(build_model("wrn40_2", 10).state_dict(), tmp_path / "bare.pt")
    with pytest.warns(RuntimeWarning, match=r"not known .*assumed cifar10's mean=\[0.4914, 0.4822, 0.4465\] "
                                            r"std=\[0.247, 0.2435, 0.2616\].*--set teacher.mean") as caught:
        assert distill(data, tmp_path / "bare.pt", tmp_path / "a") == 0
    assert sum("normalisation" in str(w.message) for w in caught) == 1
    assert json.loads((tmp_path / "a" / "report.json").read_text())["normalisation"]["from"].startswith("assumed")
    torch.save(build_model("wrn40_2", 10).state_dict(), tmp_path / "bare2.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert distill(data, tmp_path / "bare2.pt", tmp_path / "b", "--set", "teacher.mean=[0.5,0.5,0.5]",
                       "--set", "teacher.std=[0.25,0.25,0.25]") == 0
    norm = json.loads((tmp_path / "b" / "report.json").read_text())["normalisation"]
    assert norm == {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                    "from": "the config (teacher.mean, teacher.std)"}


def test_what_cannot_be_loaded_stops_distill_before_anything_is_written(tmp_path, data, capsys):
    odd = {k.replace("block", "group"): v for k, v in build_model("wrn40_2", 10).state_dict().items()}
    torch.save(odd, tmp_path / "odd.pt")
    assert distill(data, tmp_path / "odd.pt", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "layout this library does not know" in err and "nearest known layout: wrn40_2" in err
    assert len(err.splitlines()) <= 6 and "docs/teachers.md" in err
    torch.save(build_model("wrn40_2", 10), tmp_path / "whole.pt")
    assert distill(data, tmp_path / "whole.pt", tmp_path / "run") == 2
    assert "whole pickled model" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert distill(data, tmp_path / "whole.pt", tmp_path / "run", "--allow-pickle") == 0


def test_check_teacher_scores_a_community_file_beside_its_published_accuracy(tmp_path, data, capsys):
    teacher = datafree_teacher(tmp_path, "wrn16_1", prefix="")
    assert main(["check-teacher", "--teacher", str(teacher), "--dataset", "cifar10", "--data", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{teacher}: wrn16_1, 10 classes; layout datafree (checkpoint wrapper")
    assert "std [0.2023, 0.1994, 0.201]" in lines[1]
    model, test = load_teacher(teacher).model.double(), load_cifar("cifar10", data, train=False)
    mean, std = (torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1) for v in CIFAR_STD_2023)
    with torch.no_grad():
        expected = (model((test.x_test.double() / 255 - mean) / std).argmax(1) == test.y_test).double().mean()
    assert lines[2] == f"test accuracy on cifar10 (6 images): {100 * float(expected):.2f}%"
    assert lines[3].startswith("published: 91.12% (zju-vipa/CMI README")
    assert main(["check-teacher", "--teacher", str(teacher), "--dataset", "cifar10", "--data", str(data),
                 "--json", "--set", "mean=[0.5,0.5,0.5]", "--set", "std=[0.5,0.5,0.5]"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["normalisation"]["from"].startswith("the config") and report["teacher"]["layout"] == "datafree"


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "cifar100"], "is a 10-class wrn16_1 of 3 input channels; cifar100 has 100 classes"),
    (["--set", "lr=1"], "takes mean=\\[r,g,b\\] and std=\\[r,g,b\\], not \\['lr'\\]"),
    (["--arch", "resnet34"], "not the given architecture 'resnet34'; leave --arch out, or give --arch wrn16_1"),
])
def test_check_teacher_refuses_clearly(tmp_path, data, capsys, args, message):
    teacher = datafree_teacher(tmp_path, "wrn16_1", prefix="")
    base = ["check-teacher", "--teacher", str(teacher), "--dataset", "cifar10", "--data", str(data)]
    assert main([*base, *args]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_study_checks_the_teacher_file_before_any_work(tmp_path, data):
    odd = {k.replace("block", "group"): v for k, v in build_model("wrn40_2", 10).state_dict().items()}
    torch.save(odd, tmp_path / "odd.pt")
    settings = StudySettings(preset=PRESET, data=str(data), teacher=str(tmp_path / "odd.pt"), seeds=2, iterations=2,
                             methods=["authors_dfad", "authors"])
    with pytest.raises(ValueError, match="layout this library does not know"):
        settings.check()
    good = StudySettings(preset=PRESET, data=str(data), teacher=str(datafree_teacher(tmp_path)), seeds=2,
                         iterations=2, methods=["authors_dfad", "authors"])
    good.check()


@pytest.mark.slow
def test_a_preset_study_with_a_community_teacher_reports_the_published_table(tmp_path, data, capsys):
    teacher = datafree_teacher(tmp_path)
    out = tmp_path / "out"
    args = ["study", "--preset", PRESET, "--data", str(data), "--teacher", str(teacher), "--seeds", "2",
            "--methods", "authors_dfad,authors_released", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
            "--quiet", "--iterations", "2", *[a for s in SMALL if s.split("=")[0] not in (
                "trainer.iterations", "eval_every") for a in ("--set", s.removeprefix("trainer."))]]
    assert main(args) == 0, capsys.readouterr().err
    recorded = json.loads((out / "teacher.json").read_text())
    assert recorded["layout"] == "datafree" and recorded["published_accuracy"] == 94.87
    assert "NORMALIZE_DICT" in recorded["normalisation"]["from"]
    study = (out / "study.md").read_text()
    assert "Published for this pair (zju-vipa/CMI README tables" in study and "CMI 90.01" in study
    study_report = json.loads((out / "study.json").read_text())
    assert study_report["published"]["teacher"] == 94.87
    assert study_report["fast_paths"]["kd_loss"] and all(r["fast_paths"]["kd_loss"] for r in study_report["runs"])


ENTRIES = list(manifest_entries())
# One file per model class as a teacher (and its variants: ImageNet / CIFAR strides, bottlenecks, the x4 stem) in the
# fast suite or under -m slow; every file loads in tests/models/test_layouts.py
QUICK = {"datafree-checkpoint:resnet8", "datafree-checkpoint:mobilenetv2", "datafree-checkpoint:shufflenetv2",
         "chenyaofo-bare:vgg11_bn", "chenyaofo-bare:shufflenetv2_x0_5", "zskt-state_dict:wrn16_1",
         "repdistiller-repdistiller_best:vgg8"}
SLOW = {"dfad-bare:resnet50", "chenyaofo-bare:mobilenetv2_x0_5", "repdistiller-repdistiller_best:resnet32x4"}
STUDENTS_QUICK = ("wrn22_4", "vgg13_bn", "mobilenetv2_x0_5", "shufflenetv2")
STUDENTS_SLOW = ("resnet50", "resnet110", "vgg8", "mobilenetv2", "shufflenetv2_x2_0")


def run_config(tmp_path, teacher: dict, student: dict) -> int:
    config = {"method": "dfad", "teacher": teacher, "student": student, "generator": {"img_size": 32, "ngf": 8},
              "trainer": {"batch_size": 4, "latent_dim": 8, "iterations": 2, "student_steps": 1, "device": "cpu"},
              "output_dir": str(tmp_path / "run")}
    (tmp_path / "run.json").write_text(json.dumps(config))
    return main(["distill", "--config", str(tmp_path / "run.json"), "--quiet"])


@pytest.mark.parametrize(("base", "name", "entry"), [
    pytest.param(*e, marks=() if f"{e[0]}-{e[1]}" in QUICK else pytest.mark.slow, id=f"{e[0]}-{e[1]}")
    for e in ENTRIES if f"{e[0]}-{e[1]}" in QUICK | SLOW])
def test_every_community_teacher_file_trains_two_iterations(tmp_path, base, name, entry):
    write_teacher_file(tmp_path / "t.pt", entry)
    classes = entry["num_classes"]
    teacher = {"arch": entry["arch"], "checkpoint": str(tmp_path / "t.pt"), "num_classes": classes}
    assert run_config(tmp_path, teacher, {"arch": "resnet8", "num_classes": classes}) == 0
    assert json.loads((tmp_path / "run" / "history.json").read_text())["metrics"][-1]["iteration"] == 2


@pytest.mark.parametrize("arch", [*STUDENTS_QUICK, *(pytest.param(a, marks=pytest.mark.slow) for a in STUDENTS_SLOW)])
def test_every_architecture_of_the_zoo_trains_as_a_student(tmp_path, arch):
    torch.manual_seed(0)
    torch.save(build_model("resnet8", 10).state_dict(), tmp_path / "t.pt")
    teacher = {"arch": "resnet8", "checkpoint": str(tmp_path / "t.pt"), "num_classes": 10}
    assert run_config(tmp_path, teacher, {"arch": arch, "num_classes": 10}) == 0
    assert (tmp_path / "run" / "student.pt").exists()


def test_the_configs_normalisation_and_sections_are_checked_before_anything_is_written(tmp_path, data, capsys):
    teacher = datafree_teacher(tmp_path)
    assert distill(data, teacher, tmp_path / "run", "--set", "teacher.mean=[0.5,0.5,0.5]") == 2
    assert "teacher.mean and teacher.std are set together, 3 values each: std must be 3 finite numbers, got None" \
        in capsys.readouterr().err
    assert distill(data, teacher, tmp_path / "run", "--set", "teacher.mean=[0.5,0.5,0.5]",
                   "--set", "teacher.std=[0.2,0,0.2]") == 2
    assert "std must be positive" in capsys.readouterr().err
    torch.save(build_model("resnet20", 10).state_dict(), tmp_path / "student.pt")
    assert distill(data, teacher, tmp_path / "run", "--set", f"student.checkpoint={tmp_path / 'student.pt'}") == 2
    assert "not the given architecture 'wrn16_1'; set student.arch=resnet20" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=r"--allow-pickle and teacher\.\* settings go with --preset"):
        StudySettings(benchmark="digits", overrides={"teacher.allow_pickle": True}).check()


def test_check_teacher_refuses_a_teacher_of_another_dataset_and_bad_statistics(tmp_path, data, capsys):
    torch.manual_seed(0)
    save_teacher(tmp_path / "svhn.pt", build_model("resnet8", 10), "resnet8", "svhn")
    base = ["check-teacher", "--dataset", "cifar10", "--data", str(data)]
    assert main([*base, "--teacher", str(tmp_path / "svhn.pt")]) == 2
    assert "was trained on svhn, and this run evaluates on cifar10" in capsys.readouterr().err
    teacher = datafree_teacher(tmp_path, "wrn16_1", prefix="")
    assert main([*base, "--teacher", str(teacher), "--set", "mean=[0.5]", "--set", "std=[0.5]"]) == 2
    assert "mean must be 3 finite numbers, got [0.5]" in capsys.readouterr().err
