"""What ``load_teacher`` refuses, and how: a pickled model (unless opted in), an unknown layout in a few lines, an
architecture its tensors contradict, a damaged file; nothing from the file runs. What it knows of a teacher's
normalisation and published accuracy, and when it does not know."""

from __future__ import annotations

import importlib
import json
import shlex
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lrwa_fast.models import TeacherFileError, build_model, load_teacher
from lrwa_fast.models.layouts import CIFAR100_DATAFREE, CIFAR_STD_2023
from tests.support import CallsAFunction, manifest, write_teacher_file

DATAFREE = manifest("datafree")["files"]


def test_a_pickled_model_is_refused_with_the_conversion_command(tmp_path):
    torch.save(build_model("resnet8", 10), tmp_path / "whole.pt")
    with pytest.raises(TeacherFileError) as err:
        load_teacher(tmp_path / "whole.pt")
    message = str(err.value)
    assert str(tmp_path / "whole.pt") in message and "whole pickled model" in message
    assert "lrwa_fast.models.resnet.ResNet" in message
    assert "python -c" in message and ".state_dict()" in message and "--allow-pickle" in message
    assert "RUNS CODE FROM THE FILE" in message and len(message.splitlines()) <= 6


def test_the_opt_in_loads_a_pickled_model_whose_class_is_importable(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet8", 10).eval()
    torch.save(model, tmp_path / "whole.pt")
    loaded = load_teacher(tmp_path / "whole.pt", allow_pickle=True)
    assert (loaded.arch, loaded.wrapper) == ("resnet8", "pickled module")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_the_opt_in_says_where_a_missing_class_must_come_from(tmp_path, monkeypatch):
    (tmp_path / "theirs.py").write_text("import torch\nclass Net(torch.nn.Linear):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    theirs = importlib.import_module("theirs")  # a code base's own module, importable here only
    torch.save(theirs.Net(3, 2), tmp_path / "net.pt")
    monkeypatch.delitem(sys.modules, "theirs")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    with pytest.raises(TeacherFileError, match=r"class cannot be imported here .*PYTHONPATH"):
        load_teacher(tmp_path / "net.pt", allow_pickle=True)


def test_a_file_that_calls_a_function_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"state_dict": build_model("resnet8", 10).state_dict(), "hook": CallsAFunction(marker)},
               tmp_path / "evil.pt")
    with pytest.raises(TeacherFileError, match=r"holds pickled objects \(posix\.system\), besides plain values"):
        load_teacher(tmp_path / "evil.pt")
    assert not marker.exists()


def test_an_unknown_layout_is_refused_in_a_few_lines(tmp_path):
    state = {k.replace("layer", "stage"): v for k, v in build_model("resnet110", 10).state_dict().items()}
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(TeacherFileError) as err:
        load_teacher(tmp_path / "odd.pt")
    message = str(err.value)
    lines = message.splitlines()
    assert str(tmp_path / "odd.pt") in lines[0] and len(lines) <= 6 and len(message) < 1000
    assert "nearest known layout: resnet110" in message
    assert "missing: layers.0.conv1.weight" in message and "more" in message
    assert "docs/teachers.md" in lines[-1]


def test_shapes_that_differ_are_named(tmp_path):
    entry = DATAFREE["checkpoint:resnet34"]
    state = write_teacher_file(tmp_path / "t.pt", entry)
    state["conv1.weight"] = torch.randn(64, 3, 7, 7)  # an ImageNet stem
    torch.save({"state_dict": state, "arch": "resnet34", "best_acc1": 0.9}, tmp_path / "t.pt")
    with pytest.raises(TeacherFileError, match=r"(?s)resnet34.*of another shape: conv1\.weight"):
        load_teacher(tmp_path / "t.pt")


def test_a_given_architecture_the_tensors_contradict_names_the_right_one(tmp_path):
    torch.save(build_model("resnet8", 10).state_dict(), tmp_path / "t.pt")
    with pytest.raises(TeacherFileError, match=r"holds a resnet8 .*not the given architecture 'resnet34'$"):
        load_teacher(tmp_path / "t.pt", arch="resnet34")


def test_a_files_own_architecture_the_tensors_contradict_is_refused(tmp_path):
    entry = dict(DATAFREE["checkpoint:wrn40_2"], arch="resnet34")
    write_teacher_file(tmp_path / "t.pt", entry)
    with pytest.raises(TeacherFileError, match=r"holds a wrn40_2 .*not the file's own architecture 'resnet34'"):
        load_teacher(tmp_path / "t.pt")


@pytest.mark.parametrize(("content", "match"), [
    (b"not a torch file at all", "corrupt or not a PyTorch weights file"),
    (None, "does not exist"),
])
def test_damaged_or_missing_files_are_named(tmp_path, content, match):
    if content is not None:
        (tmp_path / "t.pt").write_bytes(content)
    with pytest.raises(TeacherFileError, match=match) as err:
        load_teacher(tmp_path / "t.pt")
    assert str(tmp_path / "t.pt") in str(err.value)


def test_a_truncated_file_is_named(tmp_path):
    torch.save(build_model("resnet8", 10).state_dict(), tmp_path / "t.pt")
    data = (tmp_path / "t.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(TeacherFileError, match="corrupt or not a PyTorch weights file"):
        load_teacher(tmp_path / "t.pt")


def test_a_dict_without_weights_lists_what_it_holds(tmp_path):
    torch.save({"epoch": 3, "notes": "x"}, tmp_path / "t.pt")
    with pytest.raises(TeacherFileError, match=r"keys \['epoch', 'notes'\] \(0 tensors\)"):
        load_teacher(tmp_path / "t.pt")


def test_the_legacy_format_and_missing_batch_counters_load(tmp_path):
    """Files of PyTorch < 1.6 (not a zip archive) and < 0.4.1 (no num_batches_tracked)."""
    torch.manual_seed(0)
    model = build_model("resnet20", 10).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    loaded = load_teacher(tmp_path / "old.pt")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_what_is_known_of_normalisation_and_accuracy(tmp_path):
    write_teacher_file(tmp_path / "df.pt", DATAFREE["checkpoint:resnet34"])
    datafree = load_teacher(tmp_path / "df.pt")
    assert datafree.known_normalisation("cifar100")[0] == CIFAR100_DATAFREE
    assert "NORMALIZE_DICT" in datafree.known_normalisation("cifar100")[1]
    assert datafree.published_accuracy("cifar10")[0] == 95.70 and "CMI README" in datafree.published_accuracy(
        "cifar10")[1]
    assert datafree.meta == {"arch": "resnet34", "epoch": 200, "best_acc1": 0.95}
    write_teacher_file(tmp_path / "dfad.pt", manifest("dfad")["files"]["bare:resnet34"])
    bare = load_teacher(tmp_path / "dfad.pt")
    assert set(bare.layout.split(" | ")) == {"dfad", "spaceshipnet"}
    assert bare.known_normalisation("cifar10")[0] == CIFAR_STD_2023, "both code bases agree on CIFAR-10"
    assert bare.known_normalisation("cifar100") is None, "they differ on CIFAR-100: unknown"
    torch.save(build_model("resnet34", 10).state_dict(), tmp_path / "own.pt")
    own = load_teacher(tmp_path / "own.pt")
    assert own.layout == "lrwa_fast-state-dict" and own.known_normalisation("cifar10") is None
    assert own.published_accuracy("cifar10") is None


def test_numpy_values_pickled_by_numpy_1_are_read(tmp_path):
    """numpy 1.x names its scalars ``numpy.core.multiarray.scalar`` (2.x ``numpy._core``): both are plain values."""
    torch.save({"state_dict": build_model("resnet8", 10).state_dict(), "arch": "resnet8", "best_acc1": np.float64(0.9)},
               tmp_path / "t.pt")
    with zipfile.ZipFile(tmp_path / "t.pt") as old, zipfile.ZipFile(tmp_path / "np1.pt", "w") as new:
        for item in old.infolist():
            data = old.read(item)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core" in data
                data = data.replace(b"numpy._core", b"numpy.core")
            new.writestr(item, data)
    loaded = load_teacher(tmp_path / "np1.pt")
    assert loaded.arch == "resnet8" and float(loaded.meta["best_acc1"]) == 0.9


def test_a_legacy_pickled_model_is_refused_and_loads_with_the_opt_in(tmp_path):
    torch.save(build_model("resnet8", 10), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(TeacherFileError, match=r"holds a whole pickled model \(lrwa_fast\.models\.resnet\.ResNet"):
        load_teacher(tmp_path / "old.pt")
    assert load_teacher(tmp_path / "old.pt", allow_pickle=True).arch == "resnet8"


def test_pickled_objects_besides_weights_get_a_command_a_shell_takes_as_it_is(tmp_path):
    path = tmp_path / "odd $(touch x) 'name'.pt"
    torch.save({"state_dict": build_model("resnet8", 10).state_dict(), "where": Path("/somewhere")}, path)
    with pytest.raises(TeacherFileError) as err:
        load_teacher(path)
    command = next(line for line in str(err.value).splitlines() if line.strip().startswith("python -c"))
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-c"] and len(argv) == 3
    assert json.dumps(str(path)) in argv[2] and "['state_dict']" not in argv[2] and '["state_dict"]' in argv[2]
    assert "pathlib" in str(err.value).splitlines()[0]


@pytest.mark.parametrize(("content", "match"), [
    ({0: torch.zeros(2)}, r"no state dict \(names to tensors\)"),
    ({"state_dict": {}}, r"no state dict \(names to tensors\)"),
    ({"format": "lrwa_fast teacher 1", "model": build_model("resnet8", 10).state_dict(), "mean": 0.5, "std": [1, 1, 1]},
     "states a normalisation that cannot be used: mean must be 3 finite numbers, got 0.5"),
    ({"format": "lrwa_fast teacher 1", "model": build_model("resnet8", 10).state_dict(), "mean": [0.5] * 3,
      "std": [0.2, 0, 0.2]}, "std must be positive"),
])
def test_malformed_contents_are_refused_naming_the_file(tmp_path, content, match):
    torch.save(content, tmp_path / "t.pt")
    with pytest.raises(TeacherFileError, match=match) as err:
        load_teacher(tmp_path / "t.pt")
    assert str(tmp_path / "t.pt") in str(err.value)


def test_classes_and_channels_are_read_where_the_architecture_has_them(tmp_path):
    """A projection after the classifier is an unexpected tensor, not 128 classes; sorted keys change nothing."""
    state = build_model("resnet20", 10).state_dict()
    torch.save({**state, "proj.weight": torch.randn(128, 64)}, tmp_path / "head.pt")
    with pytest.raises(TeacherFileError) as err:
        load_teacher(tmp_path / "head.pt")
    assert "unexpected: proj.weight" in str(err.value) and "of another shape" not in str(err.value)
    wrn = build_model("wrn16_2", 7).state_dict()
    torch.save(dict(sorted(wrn.items())), tmp_path / "sorted.pt")
    loaded = load_teacher(tmp_path / "sorted.pt")
    assert (loaded.arch, loaded.num_classes, loaded.in_channels) == ("wrn16_2", 7, 3)


def test_a_published_accuracy_is_given_only_where_the_code_bases_agree(tmp_path):
    write_teacher_file(tmp_path / "bare.pt", manifest("dfad")["files"]["bare:resnet34"])
    assert load_teacher(tmp_path / "bare.pt").published_accuracy("cifar10") is None  # DFAD's or the DataFree bundle's
