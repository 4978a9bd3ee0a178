"""Run reports: report.json statistics, metrics.jsonl as the run goes and after a resume, plots, compare."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from lrwa_fast.apps.cli import main
from lrwa_fast.apps.reports import METRICS, MetricsLog, format_comparison, load_run
from tests.support import ROOT, write_distill_config

PNG = b"\x89PNG\r\n\x1a\n"


def run_config(tmp_path, name, **trainer):
    config = write_distill_config(tmp_path, **trainer)
    spec = json.loads(config.read_text())
    spec["output_dir"] = str(tmp_path / name)
    spec["eval_every"] = 1
    config.write_text(json.dumps(spec))
    return config


def test_distill_writes_report_metrics_and_plot(tmp_path):
    assert main(["distill", "--config", str(run_config(tmp_path, "run")), "--quiet"]) == 0
    out = tmp_path / "run"
    report = json.loads((out / "report.json").read_text())
    history = json.loads((out / "history.json").read_text())
    lines = [json.loads(line) for line in (out / METRICS).read_text().splitlines()]
    assert [r["iteration"] for r in lines] == [1, 2, 3, 4] == report["iterations"]
    assert lines == history["evaluations"]
    curve = np.array([r["accuracy"] for r in lines])
    assert report["accuracy"] == curve.tolist()
    stats = report["stats"]
    assert stats["final"] == curve[-1] and stats["best"] == curve.max()
    assert stats["mean"] == pytest.approx(curve.mean()) and stats["variance"] == pytest.approx(curve.var())
    # the forgetting probes are on by default (one every 1/20 of the run: here every iteration)
    assert report["forgetting_probes"]["iterations"] == [0, 1, 2, 3]
    assert report["forgetting"] == [r["forgetting"] for r in lines] and report["forgetting"][0] is None
    assert stats["forgetting"] == report["average_forgetting"] == report["forgetting"][-1]
    assert [len(r["probe_agreement"]) for r in lines] == [1, 2, 3, 4]
    assert stats["max_drop"] == pytest.approx(max(0.0, *(curve[:-1] - curve[1:])))
    assert report["label"] == "lrwa" and report["seed"] == 0 and report["iterations_run"] == 4
    assert report["images_per_second"] > 0 and 0 < report["eval_fraction"] < 1
    assert report["config"]["trainer"]["batch_size"] == 8 and report["versions"]["torch"]
    assert (out / "accuracy.png").read_bytes()[:8] == PNG


def test_metrics_jsonl_after_resume_equals_a_straight_run(tmp_path):
    config = run_config(tmp_path, "run", checkpoint_every=2)
    assert main(["distill", "--config", str(config), "--quiet"]) == 0
    straight = (tmp_path / "run" / METRICS).read_text()
    (tmp_path / "run" / "checkpoints" / "ckpt-00000004.pt").unlink()  # as if stopped after iteration 3
    with open(tmp_path / "run" / METRICS, "a") as fh:
        fh.write('{"iteration": 3, "accuracy": 0.0}\n')
    assert main(["distill", "--config", str(config), "--resume", str(tmp_path / "run" / "checkpoints"),
                 "--quiet"]) == 0
    assert (tmp_path / "run" / METRICS).read_text() == straight


def test_metrics_log_appends_and_flushes_each_record(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl", [{"iteration": 1, "accuracy": 0.5}])
    log({"iteration": 2, "accuracy": 0.25})
    assert (tmp_path / "m.jsonl").read_text().splitlines()[-1] == '{"iteration": 2, "accuracy": 0.25}'
    log.close()


def test_compare_two_runs_table_and_plot(tmp_path, capsys):
    for name, seed in (("a", 0), ("b", 1)):
        assert main(["distill", "--config", str(run_config(tmp_path, name, seed=seed)), "--quiet"]) == 0
    plot = tmp_path / "both.png"
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    runs = [load_run(tmp_path / n) for n in ("a", "b")]
    assert printed.strip().startswith(format_comparison(runs))
    assert str(tmp_path / "a") in printed and str(tmp_path / "b") in printed
    mu = [100 * r["stats"]["mean"] for r in runs]
    summary_row = next(line for line in printed.splitlines() if line.startswith("| lrwa | 2 |"))
    assert f"{np.mean(mu):.2f} ± {np.std(mu):.2f}" in summary_row
    forgetting = [100 * r["stats"]["forgetting"] for r in runs]
    assert "avg forgetting %" in printed and f"{np.mean(forgetting):.2f} ± {np.std(forgetting):.2f}" in summary_row
    assert plot.read_bytes()[:8] == PNG


def test_compare_names_a_folder_without_report(tmp_path):
    result = subprocess.run([sys.executable, "-m", "lrwa_fast", "compare", str(tmp_path)], capture_output=True,
                            text=True, cwd=ROOT, check=False)
    assert result.returncode == 2
    assert f"{tmp_path / 'report.json'!s}' does not exist" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "report.json").write_text("{not json")
    assert main(["compare", str(tmp_path)]) == 2


def test_one_seed_shows_its_value_without_a_spread():
    from lrwa_fast.apps.reports import mean_std, summarize

    runs = [{"method": "m", "seed": 0, "wall_time_s": 3.0, "stats": {"final": 0.5, "best": 0.6, "mean": 0.55,
                                                                      "variance": 0.0, "max_drop": 0.1}}]
    one = summarize(runs)["m"]
    assert mean_std(one["mean"], 100) == "55.00" and mean_std(one["forgetting"]) == "—"
    two = summarize([*runs, {**runs[0], "seed": 1, "stats": {**runs[0]["stats"], "mean": 0.65}}])["m"]
    assert mean_std(two["mean"], 100) == "60.00 ± 5.00"


def test_the_demo_table_gives_the_reference_no_difference_with_itself():
    from lrwa_fast.apps.demo import format_table
    from lrwa_fast.apps.reports import summarize

    stats = {"final": 0.5, "best": 0.6, "mean": 0.55, "variance": 0.0, "max_drop": 0.1}
    runs = [{"method": "DFAD", "seed": 0, "wall_time_s": 1.0, "stats": stats},
            {"method": "LRwA", "seed": 0, "wall_time_s": 2.0, "stats": {**stats, "mean": 0.5625}}]
    report = {"teacher": {"arch": "cnn", "test_accuracy": 0.99}, "student_arch": "cnn_small",
              "stats_from_fraction": 0.5, "summary": summarize(runs)}
    rows = {line.split(" | ")[0]: line.split(" | ")[-2] for line in format_table(report).splitlines()
            if line.startswith("| DFAD") or line.startswith("| LRwA")}
    assert rows == {"| DFAD": "—", "| LRwA": "+1.25"}
