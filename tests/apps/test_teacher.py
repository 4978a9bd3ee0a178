"""Teacher training: one short epoch end to end, the written files, bit-exact resume, bad input via the CLI."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from lrwa_fast.apps.cli import main
from lrwa_fast.apps.distill import ModelSpec, load_model
from lrwa_fast.data import Normalize, load_cifar
from lrwa_fast.runtime.metrics import accuracy
from lrwa_fast.testing.cifar_files import write_synthetic_cifar
from tests.support import ROOT, CallsAFunction, subprocess_env


def teacher_args(data, out, *extra):
    return ["teacher", "--dataset", "cifar10", "--data", str(data), "--arch", "cnn_small", "--out", str(out),
            "--epochs", "1", "--batch-size", "8", "--set", "device=cpu", "--set", "eval_batch_size=5", "--quiet",
            *extra]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_short_epoch_writes_a_loadable_teacher_and_report(tmp_path, capsys, precision):
    write_synthetic_cifar(tmp_path / "data", "cifar10", train=20, test=12)
    assert main(teacher_args(tmp_path / "data", tmp_path / "t", "--set", f"precision={precision}")) == 0
    assert "cnn_small on cifar10: test accuracy" in capsys.readouterr().out
    saved = torch.load(tmp_path / "t" / "teacher.pt", weights_only=True)
    assert (saved["arch"], saved["dataset"], saved["num_classes"]) == ("cnn_small", "cifar10", 10)
    assert saved["mean"] == [0.4914, 0.4822, 0.4465] and saved["recipe"]["precision"] == precision
    model, loaded = load_model(ModelSpec(arch="cnn_small", checkpoint=str(tmp_path / "t" / "teacher.pt")), "teacher")
    (mean, std), source = loaded.known_normalisation("cifar10")
    assert loaded.layout == "lrwa_fast" and source.startswith("the teacher file")
    data = load_cifar("cifar10", tmp_path / "data")
    measured = accuracy(model.eval(), data.x_test, data.y_test, transform=Normalize(mean, std))
    report = json.loads((tmp_path / "t" / "report.json").read_text())
    assert report["test_accuracy"] == saved["test_accuracy"] == measured
    assert [e["epoch"] for e in report["epochs"]] == [1] and report["train_images"] == 20
    assert report["recipe"]["lr"] == 0.1 and report["recipe"]["weight_decay"] == 5e-4 and "DFAD" in \
        report["recipe_source"]
    assert report["images_per_second"] > 0 and report["machine"]["cpus"] and report["versions"]["torch"]
    assert [p.name for p in (tmp_path / "t" / "checkpoints").iterdir()] == ["ckpt-00000001.pt"]


def test_resume_is_bit_exact(tmp_path, capsys):
    write_synthetic_cifar(tmp_path / "data", "cifar10", train=20, test=4)
    args = teacher_args(tmp_path / "data", tmp_path / "t")
    args[args.index("--epochs") + 1] = "2"
    assert main(args) == 0
    straight = torch.load(tmp_path / "t" / "teacher.pt", weights_only=True)["model"]
    (tmp_path / "t" / "checkpoints" / "ckpt-00000002.pt").unlink()
    (tmp_path / "t" / "teacher.pt").unlink()
    assert main([*args, "--resume"]) == 0
    resumed = torch.load(tmp_path / "t" / "teacher.pt", weights_only=True)["model"]
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    report = json.loads((tmp_path / "t" / "report.json").read_text())
    assert report["resumed_from"].endswith("ckpt-00000001.pt") and len(report["epochs"]) == 2
    capsys.readouterr()
    assert main([*args, "--resume", "--set", "lr=0.05"]) == 2  # another recipe is refused, naming its file
    error = capsys.readouterr().err
    assert "cannot resume from" in error and "ckpt-00000002.pt" in error and "lr" in error, error


def damage(folder, kind):
    """Spoil the written CIFAR-10 folder in one way; returns the text the error must contain."""
    if kind == "missing_folder":
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
        return "expected the folder 'cifar-10-batches-py'"
    if kind == "missing_file":
        (folder / "data_batch_4").unlink()
        return "lacks data_batch_4"
    target = folder / "test_batch"
    if kind == "truncated":
        target.write_bytes(target.read_bytes()[:100])
        return "test_batch: truncated or not a CIFAR pickle"
    if kind == "calls_a_function":
        target.write_bytes(pickle.dumps({b"data": CallsAFunction(folder.parent / "called")}, protocol=2))
        return "test_batch: refused to load"
    if kind == "wrong_shape":
        target.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2))
        return "test_batch: 'data' must be a uint8 array of shape (N, 3072)"
    target.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, protocol=2))
    return "test_batch: labels must lie in [0, 10)"


@pytest.mark.parametrize("kind", ["missing_folder", "missing_file", "truncated", "calls_a_function",
                                  "wrong_shape", "label_range"])
def test_bad_data_through_the_cli(tmp_path, capsys, kind):
    folder = write_synthetic_cifar(tmp_path / "data", "cifar10", train=5, test=2)
    expected = damage(folder, kind)
    assert main(teacher_args(tmp_path / "data", tmp_path / "t")) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrwa-fast: error: ") and expected in err and str(tmp_path / "data") in err


def test_bad_data_exits_without_traceback_and_bad_recipe_is_named(tmp_path, capsys):
    folder = write_synthetic_cifar(tmp_path / "data", "cifar10", train=5, test=2)
    damage(folder, "calls_a_function")
    env = subprocess_env()
    result = subprocess.run([sys.executable, "-m", "lrwa_fast", *teacher_args(tmp_path / "data", tmp_path / "t")],
                            capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(folder / "test_batch") in result.stderr
    args = teacher_args(tmp_path / "data", tmp_path / "t", "--set", "schedule=step")
    assert main(args) == 2
    assert "schedule='step'" in capsys.readouterr().err
    assert main(teacher_args(tmp_path / "data", tmp_path / "t", "--set", "precision=fp8")) == 2
    assert "precision='fp8' (expected one of ('fp32', 'bf16'))" in capsys.readouterr().err
