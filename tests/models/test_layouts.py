"""Teacher files as the community's code bases save them (rebuilt from the manifests of their own definitions)
load into the library's models: the architecture and classes recognised from names and shapes, every tensor
landing in exactly one place with its value, the code base recognised from the wrapper; a DataParallel or
torch.compile prefix changes nothing. The logits were compared with the originals outside the repository
(``benchmarks/RESULTS.md``)."""

from __future__ import annotations

import pytest
import torch

from lrwa_fast.models import build_model, load_teacher
from tests.support import EXPECTED_LAYOUT, manifest, manifest_entries, write_teacher_file

ENTRIES = list(manifest_entries())


def test_the_manifests_cover_every_code_base_and_architecture_asked_for():
    archs = {entry["arch"] for _, _, entry in ENTRIES}
    asked = {*(f"resnet{d}" for d in (8, 14, 20, 32, 44, 56, 110)), "resnet8x4", "resnet32x4", "resnet18", "resnet34",
             "resnet50", "wrn16_1", "wrn16_2", "wrn40_1", "wrn40_2", *(f"vgg{d}" for d in (8, 11, 13, 16, 19)),
             "mobilenetv2", "shufflenetv2"}
    assert asked <= archs
    assert set(EXPECTED_LAYOUT) == {base for base, _, _ in ENTRIES}
    assert all(len(manifest(base)["commit"]) == 40 for base in EXPECTED_LAYOUT)


@pytest.mark.parametrize(("base", "name", "entry"), ENTRIES, ids=[f"{b}-{n}" for b, n, _ in ENTRIES])
def test_a_community_file_loads_with_every_tensor_in_its_place(tmp_path, base, name, entry):
    state = write_teacher_file(tmp_path / "teacher.pt", entry, seed=len(name))
    loaded = load_teacher(tmp_path / "teacher.pt")
    assert (loaded.arch, loaded.num_classes, loaded.in_channels) == (entry["arch"], entry["num_classes"], 3)
    # the LRwA authors' Wide ResNets are students, saved as ZSKT saves its teachers: read as ZSKT's
    expected = "zskt" if base == "lra" and entry["arch"].startswith("wrn") else EXPECTED_LAYOUT[base]
    assert expected in loaded.layout.split(" | ")
    mine = loaded.model.state_dict()
    assert len(mine) == len(state)
    for key, value in state.items():  # values are distinct: each lands in exactly one tensor of the same shape
        hits = [k for k, v in mine.items() if v.shape == value.shape and torch.equal(v, value)]
        assert len(hits) == 1, (key, hits)
    assert not loaded.model.training
    with torch.no_grad():
        logits = loaded.model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, entry["num_classes"])


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_a_prefix_on_every_key_is_taken_off(tmp_path, prefix):
    entry = manifest("datafree")["files"]["checkpoint:wrn40_2"]
    state = write_teacher_file(tmp_path / "t.pt", entry, prefix=prefix)
    loaded = load_teacher(tmp_path / "t.pt")
    assert loaded.arch == "wrn40_2" and loaded.layout == "datafree"
    assert torch.equal(loaded.model.state_dict()["linear.weight"], state["fc.weight"])


def test_the_same_names_and_shapes_resolve_by_who_saves_them(tmp_path):
    """MobileNetV2 with ImageNet strides (DataFree) and with CIFAR strides (pytorch-cifar-models) have the same
    tensors: the wrapper decides, and an explicit architecture too."""
    datafree = manifest("datafree")["files"]["checkpoint:mobilenetv2"]
    chenyaofo = manifest("chenyaofo")["files"]["bare:mobilenetv2_x1_0"]
    assert [t for t in datafree["tensors"]] == [t for t in chenyaofo["tensors"]]
    write_teacher_file(tmp_path / "a.pt", datafree)
    write_teacher_file(tmp_path / "b.pt", chenyaofo)
    assert load_teacher(tmp_path / "a.pt").arch == "mobilenetv2"
    assert load_teacher(tmp_path / "b.pt").arch == "mobilenetv2_x1_0"
    assert load_teacher(tmp_path / "b.pt", arch="mobilenetv2").arch == "mobilenetv2"


@pytest.mark.parametrize("arch", ["resnet34", "resnet8x4", "wrn40_2", "wrn22_4", "vgg11", "vgg13_bn",
                                  "mobilenetv2_x0_5", "shufflenetv2", "shufflenetv2_x1_5", "cnn"])
def test_the_librarys_own_state_dicts_round_trip(tmp_path, arch):
    torch.manual_seed(0)
    model = build_model(arch, 7, in_channels=1 if arch == "cnn" else 3).eval()
    torch.save(model.state_dict(), tmp_path / "own.pt")
    loaded = load_teacher(tmp_path / "own.pt")
    assert (loaded.arch, loaded.num_classes) == (arch, 7)
    x = torch.randn(3, loaded.in_channels, 8 if arch == "cnn" else 32, 8 if arch == "cnn" else 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_every_name_of_the_zoo_builds_with_its_classes_and_channels():
    """On the meta device (shapes only): every architecture by name, and any WRN-depth-width."""
    from lrwa_fast.models import model_names

    for name in [n for n in model_names() if n != "wrnD_W"] + ["wrn22_4", "wrn10_3"]:
        channels = 1 if name.startswith(("cnn", "cnn1d")) else 3
        with torch.device("meta"):
            model = build_model(name, 17, in_channels=channels)
            x = torch.empty(2, 40) if name.startswith("cnn1d") else torch.empty(2, channels, 32, 32)
            assert model.eval()(x).shape == (2, 17), name
    with pytest.raises(ValueError, match=r"WRN depth must be 6n \+ 4"):
        build_model("wrn21_2", 10)
    with pytest.raises(ValueError, match=r"unknown model 'resnet9'; available: .*wrnD_W"):
        build_model("resnet9", 10)
