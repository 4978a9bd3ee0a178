"""lrwa-fast study: clear errors before any work, paired differences and verdicts against a hand-made set of
runs, the bootstrap interval against scipy's, and an end-to-end smoke run that resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from lrwa_fast.apps.cli import main
from lrwa_fast.apps.study import (
    METHODS,
    StudySettings,
    bootstrap_interval,
    format_study,
    paired_differences,
    run_study,
    t_interval,
    verdict,
)


@pytest.mark.parametrize(("settings", "message"), [
    (StudySettings(seeds=1), "at least 2 seeds"),
    (StudySettings(methods=["dfad", "maml"]), r"unknown method\(s\) \['maml'\]"),
    (StudySettings(methods=["lrwa", "mad"]), "include it in --methods"),
    (StudySettings(benchmark="cifar10"), "unknown benchmark 'cifar10'"),
    (StudySettings(iterations=0), "iterations must be >= 1"),
])
def test_bad_studies_are_refused_before_any_work(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        run_study(settings, tmp_path / "out", tmp_path / "cache")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_the_cli_refuses_unknown_methods_with_exit_2(tmp_path, capsys):
    assert main(["study", "--methods", "dfad,nope", "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path)]) == 2
    assert "unknown method(s) ['nope']" in capsys.readouterr().err


def runs_of(values: dict[str, list[float]], forgetting: dict[str, list[float]]) -> list[dict]:
    return [{"method": m, "seed": s, "wall_time_s": 1.0 + s,
             "stats": {"final": v, "best": v, "mean": v, "variance": 0.0, "max_drop": 0.0,
                       "forgetting": forgetting[m][s]}}
            for m, vs in values.items() for s, v in enumerate(vs)]


def test_paired_differences_and_verdicts_follow_the_seeds():
    runs = runs_of({"dfad": [0.5, 0.6, 0.7, 0.55, 0.65], "good": [0.6, 0.72, 0.79, 0.66, 0.74],
                    "noisy": [0.55, 0.5, 0.8, 0.5, 0.7]},
                   {"dfad": [0.2] * 5, "good": [0.1, 0.12, 0.05, 0.11, 0.1], "noisy": [0.1, 0.3, 0.2, 0.25, 0.15]})
    good = paired_differences(runs, "good")
    assert good["mean"]["differences"] == pytest.approx([0.1, 0.12, 0.09, 0.11, 0.09])
    assert good["mean"]["mean"] == pytest.approx(0.102)
    assert good["mean"]["verdict"] == "better" and good["forgetting"]["verdict"] == "better"  # lower is better
    noisy = paired_differences(runs, "noisy")
    assert noisy["mean"]["verdict"] == "not distinguishable" and noisy["forgetting"]["verdict"] == "not distinguishable"
    assert "verdict" not in noisy["final"] and noisy["wall_time_s"]["mean"] == 0.0


def test_a_verdict_needs_the_t_interval_too():
    """Five small differences of one sign: the bootstrap interval excludes 0, the t interval does not."""
    runs = runs_of({"dfad": [0.5] * 5, "lucky": [0.501, 0.502, 0.501, 0.540, 0.501]}, {"dfad": [0.1] * 5,
                                                                                        "lucky": [0.1] * 5})
    row = paired_differences(runs, "lucky")["mean"]
    assert row["interval"][0] > 0 and row["t_interval"][0] < 0
    assert row["verdict"] == "not distinguishable"


def test_a_method_that_always_loses_is_worse():
    runs = runs_of({"dfad": [0.7, 0.72, 0.69], "bad": [0.6, 0.61, 0.58]},
                   {"dfad": [0.1, 0.1, 0.1], "bad": [0.3, 0.25, 0.35]})
    bad = paired_differences(runs, "bad")
    assert bad["mean"]["verdict"] == "worse" and bad["forgetting"]["verdict"] == "worse"


def test_the_bootstrap_interval_is_scipys_bca():
    values = list(np.random.default_rng(7).normal(0.03, 0.02, size=6))
    expected = stats.bootstrap((np.asarray(values),), np.mean, confidence_level=0.95, n_resamples=10_000,
                               method="BCa", rng=np.random.default_rng(0)).confidence_interval
    assert bootstrap_interval(values) == pytest.approx((expected.low, expected.high))
    assert bootstrap_interval([0.2, 0.2, 0.2]) == (0.2, 0.2)
    t = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert t_interval(values) == pytest.approx(t)
    assert verdict(-0.1, 0.2, 1) == "not distinguishable" and verdict(0.01, 0.2, -1) == "worse"


@pytest.mark.slow
def test_a_fast_study_runs_end_to_end_and_resumes(tmp_path):
    args = ["study", "--benchmark", "mnist1d", "--fast", "--seeds", "2", "--methods", "dfad,lrwa_fo,mad,joint",
            "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "study.json").read_text())
    assert list(report["summary"]) == ["dfad", "lrwa_fo", "mad", "joint"]
    assert {"lrwa_fo", "mad", "joint"} == set(report["paired_vs_dfad"])
    for row in report["paired_vs_dfad"].values():
        assert row["mean"]["verdict"] in ("better", "worse", "not distinguishable")
        assert len(row["mean"]["differences"]) == 2
    assert all(r["forgetting"] and r["stats"]["forgetting"] is not None for r in report["runs"])
    assert report["summary"]["mad"]["forgetting"]["n"] == 2
    assert all((tmp_path / "out" / name).stat().st_size > 0 for name in ("study.md", "curves.png", "forgetting.png"))
    runs = sorted(p.name for p in (tmp_path / "out" / "runs").iterdir())
    assert len(runs) == 8
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").iterdir()}
    assert main(args) == 0  # the finished runs are reused, not run again
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").iterdir()} == before
    assert main([*args[:-1], "--seeds", "3", "--quiet"]) == 2, "another study's runs are refused"
    assert "|" in format_study(report) and len(METHODS) >= 8
