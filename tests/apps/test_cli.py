"""The command line: the demo end to end in its fast mode, distill from a config file, resume, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from lrwa_fast.apps.cli import main
from lrwa_fast.runtime.checkpoint import list_checkpoints, read_checkpoint
from tests.support import ROOT, write_distill_config


def test_demo_fast_mode_writes_report_and_plot(tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    code = main(["demo", "--fast", "--out", str(out), "--cache-dir", str(cache), "--quiet"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["summary"]) == {"LRwA", "DFAD"}
    for run in report["runs"]:
        assert run["iterations"] == [2, 4, 6]
        assert all(0.0 <= a <= 1.0 for a in run["accuracy"])
        assert set(run["stats"]) == {"final", "best", "mean", "variance", "max_drop", "forgetting"}
        assert len(run["forgetting"]) == 3 and run["forgetting"][0] is None, "no forgetting before a second look"
        assert run["stats"]["forgetting"] == run["average_forgetting"] == run["forgetting"][-1]
    assert report["summary"]["LRwA"]["forgetting"]["n"] == 1
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(cache.glob("digits_teacher_*.pt")), "the teacher is cached"
    printed = capsys.readouterr().out
    assert "| LRwA |" in printed and "| DFAD |" in printed and "Teacher (cnn) test accuracy" in printed
    assert "avg forgetting %" in printed


@pytest.mark.slow
def test_demo_runs_on_mnist1d(tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert main(["demo", "--benchmark", "mnist1d", "--fast", "--out", str(out), "--cache-dir", str(cache),
                 "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["benchmark"] == "mnist1d" and report["student_arch"] == "cnn1d_small"
    assert list(cache.glob("mnist1d_teacher_cnn1d_*.pt")) and list(cache.glob("mnist1d_10000_42.pt"))
    assert "Teacher (cnn1d) test accuracy" in capsys.readouterr().out


def test_demo_resume_reuses_finished_runs(tmp_path):
    args = ["demo", "--fast", "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "--quiet"]
    assert main(args) == 0
    first = json.loads((tmp_path / "o" / "report.json").read_text())
    assert main([*args, "--resume"]) == 0
    second = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [r["wall_time_s"] for r in first["runs"]] == [r["wall_time_s"] for r in second["runs"]]


def test_demo_override_validation(tmp_path, capsys):
    code = main(["demo", "--fast", "--out", str(tmp_path), "--set", "LRwA.inner_lr=-1", "--quiet"])
    assert code == 2
    assert "inner_lr=-1" in capsys.readouterr().err


def test_distill_from_config_and_resume(tmp_path, capsys):
    config = write_distill_config(tmp_path)
    assert main(["distill", "--config", str(config), "--quiet"]) == 0
    assert "trained 4 iterations" in capsys.readouterr().out
    run = tmp_path / "run"
    straight = torch.load(run / "student.pt")
    history = json.loads((run / "history.json").read_text())
    assert [e["iteration"] for e in history["evaluations"]] == [2, 4]
    checkpoints = list_checkpoints(run / "checkpoints")
    assert [read_checkpoint(p)["iteration"] for p in checkpoints] == [2, 4]
    checkpoints[-1].unlink()
    (run / "student.pt").unlink()
    assert main(["distill", "--config", str(config), "--resume", str(run / "checkpoints"), "--quiet"]) == 0
    resumed = torch.load(run / "student.pt")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight), "resume must be bit-exact"
    assert json.loads((run / "history.json").read_text())["metrics"] == history["metrics"]


def test_cli_reports_missing_files_and_bad_yaml(tmp_path, capsys):
    assert main(["distill", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "No such file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: {batch_size: [1,\n")
    assert main(["distill", "--config", str(bad)]) == 2
    assert "lrwa-fast: error" in capsys.readouterr().err
    assert main(["demo", "--fast", "--iterations", "0", "--out", str(tmp_path)]) == 2
    assert "iterations, eval_every and seeds must be >= 1" in capsys.readouterr().err


def test_distill_refuses_bad_configs(tmp_path, capsys):
    config = write_distill_config(tmp_path, inner_lr="fast")
    assert main(["distill", "--config", str(config)]) == 2
    assert "trainer.inner_lr must be a number" in capsys.readouterr().err
    config = write_distill_config(tmp_path, unknown_key=1)
    assert main(["distill", "--config", str(config)]) == 2
    assert "unknown config key(s) ['trainer.unknown_key']" in capsys.readouterr().err
    spec = json.loads(config.read_text())
    spec["trainer"].pop("unknown_key")
    spec["student"]["num_classes"] = 7
    config.write_text(json.dumps(spec))
    assert main(["distill", "--config", str(config)]) == 2
    assert "teacher gives 10 logits, the student 7" in capsys.readouterr().err


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "lrwa_fast", "--help"], capture_output=True, text=True,
                            cwd=ROOT, check=False)
    assert result.returncode == 0 and "demo" in result.stdout and "distill" in result.stdout


def test_bench_says_why_the_higher_column_is_empty(monkeypatch, capsys):
    from lrwa_fast.bench import steps as bench

    monkeypatch.setattr(bench, "bench", lambda *args, **kwargs: [])
    monkeypatch.setattr(bench, "higher_available", lambda: False)
    assert main(["bench", "--cases", "cnn"]) == 0
    assert "the `higher` package is not installed" in capsys.readouterr().out


def test_one_way_to_choose_the_trainer():
    from lrwa_fast import DFADTrainer, LRwATrainer
    from lrwa_fast.apps.demo import demo_plan
    from lrwa_fast.apps.runs import method_config, method_dict
    from lrwa_fast.training.trainer import trainer_class

    assert trainer_class("lrwa") is LRwATrainer and trainer_class("dfad") is DFADTrainer
    methods = demo_plan().methods
    assert [method_config(method_dict(m))[0] for m in methods.values()] == [LRwATrainer, DFADTrainer]
    assert [method_config(method_dict(m))[1] for m in methods.values()] == list(methods.values())  # typed both ways
    with pytest.raises(ValueError, match="method must be one of \\['dfad', 'lrwa'\\], got 'maml'"):
        trainer_class("maml")
    with pytest.raises(ValueError, match="needs a 'method' key"):
        method_config({"batch_size": 8})
