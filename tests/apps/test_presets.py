"""Presets: every one runs 2 iterations at reduced batch through the CLI; listing; overrides; errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lrwa_fast import DFADConfig, LRwAConfig
from lrwa_fast.apps import recipe
from lrwa_fast.apps.cli import main
from lrwa_fast.apps.method_presets import COLUMNS, METHOD_PRESETS
from lrwa_fast.apps.presets import PRESETS, get_preset, resolve_preset, resolved_dict
from lrwa_fast.apps.teacher import save_teacher
from lrwa_fast.config import from_dict, to_dict
from lrwa_fast.data.images import image_set
from lrwa_fast.models import build_model
from lrwa_fast.models.layouts import layout
from lrwa_fast.testing import write_svhn_files, write_synthetic_cifar, write_tiny_imagenet

SMALL = ["trainer.batch_size=2", "generator.img_size=8", "trainer.student_steps=1", "trainer.iterations=2",
         "eval_every=1",
         "trainer.memory_start=0", "trainer.memory_insert_size=2", "trainer.memory_batch_size=2",
         "trainer.latent_dim=16", "generator.ngf=8", "trainer.device=cpu"]


def teacher_file(tmp_path, arch, dataset):
    torch.manual_seed(0)
    classes = image_set(dataset).num_classes
    return save_teacher(tmp_path / f"{arch}-{dataset}.pt", build_model(arch, classes), arch, dataset)


def write_data(root, dataset):
    """Six test images of ``dataset`` in its distributed format."""
    if dataset == "svhn":
        return write_svhn_files(root, train=4, test=6)
    if dataset == "tiny_imagenet":
        return write_tiny_imagenet(root, classes=3, per_class=1, val=6)
    return write_synthetic_cifar(root, dataset, train=4, test=6)


# every kind of preset in the fast suite (each dataset, architecture family, method, memory); the rest under -m slow
FAST = {"cifar10-resnet34-resnet18", "cifar10-resnet34-resnet18-dfad", "cifar100-resnet34-resnet18-generative",
        "cifar10-wrn40_2-wrn16_1", "cifar100-vgg11-resnet18-dfad", "svhn-resnet34-resnet18",
        "tiny_imagenet-resnet34-resnet18-dfad"}


# the methods papers compare against: each runs on one pair (DeepInversion's in the fast suite), every pair resolves
COMPARED = {p.name for p in METHOD_PRESETS}
RUN_COMPARED = {n for n in COMPARED if n.startswith("cifar10-wrn40_2-wrn16_1-")}
FAST |= {"cifar10-wrn40_2-wrn16_1-deepinv"}
ROUNDS = ["trainer.generator_steps=2", "trainer.synthesis_pool=8", "trainer.contrastive_bank=8",
          "trainer.contrastive_negatives=4"]


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in sorted(PRESETS)
                                  if n not in COMPARED or n in RUN_COMPARED])
def test_every_preset_runs_two_iterations_through_the_cli(tmp_path, name):
    spec = get_preset(name).spec
    data = tmp_path / "data"
    write_data(data, spec["dataset"])
    teacher = teacher_file(tmp_path, spec["teacher"]["arch"], spec["dataset"])
    out = tmp_path / "run"
    args = ["distill", "--preset", name, "--data", str(data), "--teacher", str(teacher), "--out", str(out), "--quiet"]
    small = SMALL if spec["method"] == "lrwa" else [s for s in SMALL if "memory" not in s]
    for item in small + (ROUNDS if spec["trainer"].get("synthesis") else []):
        args += ["--set", item]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["preset"] == name and report["label"] == name and report["iterations"] == [1, 2]
    assert all(a in (0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1) for a in report["accuracy"])
    assert report["normalisation"]["from"].startswith("the teacher file (")
    assert report["fast_paths"]["kd_loss"][-1]["used"] in ("torch", "triton") and \
        report["fast_paths"]["kd_loss"][-1]["why"]
    if spec["method"] == "lrwa" and not name.endswith("generative"):  # the buffer memory's backend too
        assert report["fast_paths"]["replay"][-1]["requested"] == "auto"
    assert report["config"]["trainer"]["inner_lr" if spec["method"] == "lrwa" else "loss"] is not None
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2]
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    history = json.loads((out / "history.json").read_text())
    if spec["method"] == "lrwa":
        first, second = history["metrics"]
        filled = first["memory_vae_updates"] > 0 if name.endswith("generative") else first["memory_fill"] == 2
        assert filled and "loss_retain" not in first, "memory filled after iteration 1"
        assert "loss_retain" in second and "loss_joint" in second, "iteration 2 retains on memory samples"


@pytest.mark.parametrize("name", sorted(COMPARED))
def test_every_method_preset_resolves_with_its_published_accuracy(name):
    preset = get_preset(name)
    config = resolve_preset(name)
    method = name.rsplit("-", 1)[1]
    column = COLUMNS[method]
    assert config.method == "dfad" and preset.published.methods[column] > 0
    assert any(note.startswith(f"published {column} student: ") for note in preset.notes)
    assert all(source for source in preset.sources.values())


def test_method_presets_carry_their_releases_settings():
    cmi = resolve_preset("cifar10-wrn40_2-wrn16_1-cmi").trainer
    assert (cmi["synthesis"], cmi["generator_steps"], cmi["generator_weights"]["contrastive"]) == ("reinit", 200, 0.8)
    fast = resolve_preset("cifar100-resnet34-resnet18-fast").trainer
    assert (fast["synthesis"], fast["generator_steps"], fast["generator_weights"]["adversarial"]) == ("meta", 10, 1.33)
    zskt = resolve_preset("cifar100-wrn40_2-wrn16_2-zskt").trainer
    assert zskt["attention_weight"] == 250.0 * 100 and zskt["student_steps"] == 10
    dafl = resolve_preset("cifar100-vgg11-resnet18-dafl").trainer
    assert math.isclose(dafl["generator_weights"]["balance"] * math.log(10), 20.0)


def test_deepinversion_presets_clip_under_datafrees_normalisation(recwarn, monkeypatch):
    from lrwa_fast.apps.distill import check_clip
    from lrwa_fast.runtime import warn_once

    monkeypatch.setattr(warn_once, "_issued", set())

    for dataset in ("cifar10", "cifar100"):
        config = from_dict(DFADConfig, resolve_preset(f"{dataset}-resnet34-resnet18-deepinv").trainer)
        assert (config.synthesis_clip_mean, config.synthesis_clip_std) == layout("datafree").normalisation[dataset]
    same = {"mean": list(config.synthesis_clip_mean), "std": list(config.synthesis_clip_std), "from": "a file"}
    check_clip(config, same)
    check_clip(config, {"from": "eval_data (used as stored)"})  # no normalisation known: nothing to compare
    assert not [w for w in recwarn if "clipped" in str(w.message)]
    other = {"mean": [0.5071, 0.4867, 0.4408], "std": [0.3, 0.3, 0.3], "from": "the config (teacher.mean, teacher.std)"}
    with pytest.warns(RuntimeWarning, match=r"clipped to the image range .* but the teacher's normalisation is "
                                            r"mean=\[0.5071, 0.4867, 0.4408\] std=\[0.3, 0.3, 0.3\]"):
        check_clip(config, other)


def test_lrwa_presets_express_the_authors_schedule():
    cfg = resolved_dict(resolve_preset("cifar100-resnet34-resnet18"))
    t = cfg["trainer"]
    assert (t["batch_size"], t["latent_dim"], t["generator_steps"], t["student_steps"]) == (512, 1000, 1, 10)
    assert t["iterations"] == 400 * 72 and cfg["eval_every"] == 72
    assert (t["loss"], t["adversarial_loss"], t["adversarial_temperature"]) == ("l1", "js", 3.0)
    assert t["student_optimizer"] | {} == {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                                           "betas": [0.5, 0.999], "schedule": "cosine"}
    assert (t["generator_optimizer"]["name"], t["generator_optimizer"]["lr"]) == ("adam", 0.02)
    assert t["inner_lr"] == 0.9 and t["joint_replay"] and t["meta_mode"] == "exact"
    # FIFO of 10 batches of 64, one pushed after epochs 0, 5, 10, ... (end of iteration 71, 431, ...)
    assert (t["memory_policy"], t["memory_capacity"], t["memory_insert_size"]) == ("fifo", 640, 64)
    assert (t["memory_start"], t["memory_insert_every"], t["memory_batch_size"]) == (71, 360, 64)
    # one whole stored batch per draw, the inner SGD's weight decay, no separate acquisition term, BatchNorm
    # statistics from the joint pass only
    assert (t["memory_draw"], t["inner_weight_decay"], t["acquire_weight"], t["bn_mode"]) == ("entry", 5e-4, 0.0,
                                                                                              "joint")
    notes = " ".join(get_preset("cifar100-resnet34-resnet18").notes)
    assert "weight decay" not in notes and "whole stored batch" not in notes and "objective" not in notes
    from_recipe = to_dict(from_dict(LRwAConfig, recipe.lrwa()))
    assert {k: t[k] for k in recipe.lrwa()} == {k: from_recipe[k] for k in recipe.lrwa()}  # defined once
    w = t["generator_weights"]
    assert (w["one_hot"], w["activation"], w["adversarial"]) == (1.0, 0.1, 1.0)
    assert w["balance"] == pytest.approx(5 / math.log(10))
    assert cfg["generator"] == {"img_size": 32, "ngf": 64}
    dfad = resolved_dict(resolve_preset("cifar100-resnet34-resnet18-dfad"))
    shared = ("batch_size", "iterations", "generator_steps", "student_steps", "generator_weights", "loss")
    assert dfad["method"] == "dfad" and all(dfad["trainer"][k] == t[k] for k in shared)


def test_balance_weight_matches_the_authors_log10_term_in_gradient():
    from lrwa_fast.ops.losses import class_balance_loss

    logits = torch.randn(16, 10, dtype=torch.float64, requires_grad=True)
    ours = (5 / math.log(10)) * class_balance_loss(logits)
    p = torch.softmax(logits, dim=1).mean(0)
    theirs = 5 * (p * torch.log10(p)).sum()
    g_ours, = torch.autograd.grad(ours, logits)
    g_theirs, = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-10, atol=1e-12)


def test_presets_command_lists_sources_and_full_config(capsys):
    assert main(["presets"]) == 0
    printed = capsys.readouterr().out
    for name in PRESETS:
        assert f"## {name}\n" in printed
    assert "Ours-1.json" in printed and "not expressed exactly" in printed and '"fd_scheme"' in printed


def test_overrides_and_errors(tmp_path, capsys):
    cfg = resolve_preset("cifar10-wrn40_2-wrn16_1", overrides=["teacher.arch=resnet34", "trainer.iterations=7",
                                                                "eval_every=3"])
    assert (cfg.teacher.arch, cfg.trainer["iterations"], cfg.eval_every) == ("resnet34", 7, 3)
    with pytest.raises(ValueError, match="unknown preset 'cifar10'"):
        resolve_preset("cifar10")
    with pytest.raises(ValueError, match="inner_lr=-1"):
        resolve_preset("cifar10-resnet34-resnet18", overrides=["trainer.inner_lr=-1"])
    assert main(["distill", "--preset", "cifar10-resnet34-resnet18", "--config", "x.yaml"]) == 2
    assert "exactly one of --config FILE and --preset NAME" in capsys.readouterr().err
    assert main(["distill", "--config", "x.yaml", "--data", "d"]) == 2
    assert "--data, --teacher and --out go with --preset" in capsys.readouterr().err
    teacher = teacher_file(tmp_path, "resnet18", "cifar100")
    write_synthetic_cifar(tmp_path / "data", "cifar10", train=2, test=2)
    base = ["distill", "--preset", "cifar10-resnet34-resnet18", "--data", str(tmp_path / "data"), "--out",
            str(tmp_path / "o")]
    assert main([*base, "--teacher", str(teacher)]) == 2
    assert "holds a resnet18 (its tensors' names and shapes), not the given architecture 'resnet34'; set " \
           "teacher.arch=resnet18" in capsys.readouterr().err
    assert main([*base, "--teacher", str(teacher), "--set", "teacher.arch=resnet18"]) == 2
    assert "holds a resnet18 with num_classes=100, the config says teacher.num_classes=10" in capsys.readouterr().err
    assert main([*base, "--teacher", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt' does not exist" in capsys.readouterr().err
