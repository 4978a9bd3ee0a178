"""lrwa-fast study: clear errors before any work, paired differences, detectable differences and verdicts against
a hand-made set of runs, the bootstrap interval against scipy's, the authors' recipe fitted by its rules, and
end-to-end smoke runs (the library's methods, the authors' four, a sweep) that resume."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats

from lrwa_fast.apps import recipe
from lrwa_fast.apps.cli import main
from lrwa_fast.apps.embedded import benchmark
from lrwa_fast.apps.runs import method_dict
from lrwa_fast.apps.statistics import (
    bootstrap_interval,
    detectable_difference,
    paired_differences,
    seeds_needed,
    t_interval,
    verdict,
)
from lrwa_fast.apps.study import (
    METHODS,
    StudyIncomplete,
    StudySettings,
    collect_study,
    comparisons,
    method_fields,
    run_study,
)
from lrwa_fast.apps.study_report import format_study
from lrwa_fast.apps.sweep import Sweep, check_sweep, parse_sweep, run_sweep
from tests.support import ROOT


@pytest.mark.parametrize(("settings", "message"), [
    (StudySettings(seeds=1), "at least 2 seeds"),
    (StudySettings(methods=["dfad", "maml"]), r"unknown method\(s\) \['maml'\]"),
    (StudySettings(methods=["lrwa", "mad"]), "lrwa needs dfad; mad needs dfad"),
    (StudySettings(methods=["dfad", "authors"]), "authors needs authors_dfad"),
    (StudySettings(overrides={"generator_optimizer.lr": -1.0}), r"generator_optimizer.lr and generator_"),
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


def test_the_detectable_difference_is_the_power_formula():
    """(t_0.975 + t_0.80)·s/√n with n − 1 degrees of freedom: for n = 10 and s = 3 points about 3.0 points (the
    figure REFERENCE.md quotes), for n = 5 about 5.0."""
    for n, expected in ((10, 3.0), (5, 5.0)):
        values = list(np.random.default_rng(n).normal(0.0, 1.0, size=n))
        scaled = [3 * v / np.std(values, ddof=1) for v in values]  # spread exactly 3
        assert detectable_difference(scaled) == pytest.approx(expected, abs=0.1)
    runs = runs_of({"dfad": [0.5, 0.6, 0.7], "m": [0.52, 0.61, 0.74]}, {"dfad": [0.1] * 3, "m": [0.1] * 3})
    row = paired_differences(runs, "m")["mean"]
    assert row["detectable"] == pytest.approx(detectable_difference([0.02, 0.01, 0.04]))


def test_each_method_is_compared_with_its_twin_and_the_meta_steps_with_the_released_one():
    pairs = comparisons(["dfad", "lrwa", "authors_dfad", "authors", "authors_released", "authors_fo"])
    assert pairs == [("lrwa", "dfad"), ("authors", "authors_dfad"), ("authors_released", "authors_dfad"),
                     ("authors_fo", "authors_dfad"), ("authors", "authors_released"),
                     ("authors_fo", "authors_released")]


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_the_authors_recipe_is_fitted_by_its_rules(name):
    """Rules of lrwa_fast.apps.recipe: the benchmark's models, batch, latent, length, probes; the memory's writes
    at the same fractions of the run; everything else the recipe's. The twins differ only where they must."""
    bench = benchmark(name)
    shared = bench.shared(bench.iterations)
    twin, authors, released = (method_dict(method_fields(bench, m, bench.iterations))  # typed, read as dicts
                               for m in ("authors_dfad", "authors", "authors_released"))
    entry = shared["batch_size"] // 8
    assert (authors["batch_size"], authors["latent_dim"], authors["probe_every"]) == (
        shared["batch_size"], shared["latent_dim"], shared["probe_every"])
    assert (authors["memory_capacity"], authors["memory_insert_size"], authors["memory_batch_size"]) == (
        10 * entry, entry, entry)
    assert authors["memory_insert_every"] == int(bench.iterations / 80 + 0.5)
    assert authors["memory_start"] == int(bench.iterations / 400 + 0.5) - 1
    assert (authors["student_steps"], authors["loss"], authors["inner_lr"], authors["inner_weight_decay"],
            authors["acquire_weight"], authors["bn_mode"], authors["memory_draw"]) == (
        10, "l1", 0.9, 5e-4, 0.0, "joint", "entry")
    assert authors["generator_optimizer"]["lr"] == 0.02 and authors["student_optimizer"]["schedule"] == "cosine"
    shared_keys = set(recipe.shared()) - {"iterations"}
    assert {k: twin[k] for k in shared_keys} == {k: authors[k] for k in shared_keys}
    assert {k: v for k, v in released.items() if k != "meta_mode"} == {
        k: v for k, v in authors.items() if k != "meta_mode"}


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
    assert [(r["method"], r["reference"]) for r in report["comparisons"]] == [
        ("lrwa_fo", "dfad"), ("mad", "dfad"), ("joint", "dfad")]
    for row in report["comparisons"]:
        assert row["statistics"]["mean"]["verdict"] in ("better", "worse", "not distinguishable")
        assert len(row["statistics"]["mean"]["differences"]) == 2 and row["statistics"]["mean"]["detectable"] > 0
    assert all(r["forgetting"] and r["stats"]["forgetting"] is not None for r in report["runs"])
    assert report["summary"]["mad"]["forgetting"]["n"] == 2
    assert all((tmp_path / "out" / name).stat().st_size > 0 for name in ("study.md", "curves.png", "forgetting.png"))
    runs = sorted(p.name for p in (tmp_path / "out" / "runs").iterdir())
    assert len(runs) == 8
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").iterdir()}
    assert main(args) == 0  # the finished runs are reused, not run again
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").iterdir()} == before
    assert main([*args[:-1], "--seeds", "3", "--quiet"]) == 2, "another study's runs are refused"
    assert "| detectable |" in format_study(report) and len(METHODS) >= 12
    (tmp_path / "out" / "study.json").unlink()
    collected = collect_study(tmp_path / "out")  # from the folders alone, by another process or machine
    assert {k: collected[k] for k in ("summary", "comparisons", "runs", "teacher")} == \
        {k: report[k] for k in ("summary", "comparisons", "runs", "teacher")}
    assert json.loads((tmp_path / "out" / "study.json").read_text())["comparisons"] == report["comparisons"]


@pytest.mark.slow
def test_the_authors_methods_run_end_to_end(tmp_path):
    """The smoke version of the authors' study: the four methods, 2 seeds, 6 iterations on the digits."""
    out = tmp_path / "out"
    args = ["study", "--benchmark", "digits", "--fast", "--seeds", "2", "--methods",
            "authors_dfad,authors,authors_released,authors_fo", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
            "--quiet"]
    assert main(args) == 0
    report = json.loads((out / "study.json").read_text())
    assert [(r["method"], r["reference"]) for r in report["comparisons"]] == [
        ("authors", "authors_dfad"), ("authors_released", "authors_dfad"), ("authors_fo", "authors_dfad"),
        ("authors", "authors_released"), ("authors_fo", "authors_released")]
    assert report["runs_settings"]["methods"]["authors"]["memory_draw"] == "entry"
    assert all(len(r["accuracy"]) == 3 for r in report["runs"])


@pytest.mark.parametrize(("text", "message"), [
    ("generator_optimizer.lr", "must look like KEY=V1,V2"),
    ("generator_optimizer.lr=1e-3", "two values or more"),
    ("generator_optimizer.lr=1e-3,1e-3", "given twice"),
    ("iterations=10,20", "the study sets iterations itself"),
])
def test_a_malformed_sweep_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_sweep(text)


@pytest.mark.parametrize(("sweep", "message"), [
    (Sweep("generator_optimizer.learning_rate", (1e-3, 3e-3)), r"unknown config key\(s\)"),
    (Sweep("generator_optimizer.lr", (1e-3, "fast")), "generator_optimizer.lr=fast: .*must be a number"),
    (Sweep("student_optimizer.lr", (0.1, -1.0)), "student_optimizer.lr=-1.0: .*lr and student_optimizer.weight_decay"),
    (Sweep("memory_capacity", (64, 128)), r"unknown config key\(s\) \['memory_capacity'\] for DFADConfig"),
])
def test_bad_sweep_keys_and_values_are_refused_before_any_work(tmp_path, sweep, message):
    settings = StudySettings(benchmark="digits", methods=["dfad", "lrwa"], seeds=2)
    with pytest.raises(ValueError, match=message):
        check_sweep(settings, sweep)
    with pytest.raises(ValueError, match=message):
        run_sweep(settings, sweep, tmp_path / "out", tmp_path / "cache")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_the_cli_refuses_a_bad_sweep_with_exit_2(tmp_path, capsys):
    assert main(["study", "--sweep", "nope=1,2", "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path)]) == 2
    assert "--sweep nope=1" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_fast_sweep_runs_every_value_with_the_same_seeds_and_teacher(tmp_path):
    out = tmp_path / "out"
    args = ["study", "--benchmark", "digits", "--fast", "--seeds", "2", "--methods", "dfad,lrwa_fo",
            "--sweep", "generator_optimizer.lr=1e-3,3e-3", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
            "--quiet"]
    assert main(args) == 0
    report = json.loads((out / "sweep.json").read_text())
    assert report["values"] == [1e-3, 3e-3] and report["folders"] == ["generator_optimizer.lr=0.001",
                                                                       "generator_optimizer.lr=0.003"]
    studies = [json.loads((out / f / "study.json").read_text()) for f in report["folders"]]
    assert [s["runs_settings"]["methods"]["dfad"]["generator_optimizer"]["lr"] for s in studies] == [1e-3, 3e-3]
    assert studies[0]["teacher"] == studies[1]["teacher"]
    assert {r["seed"] for r in studies[0]["runs"]} == {r["seed"] for r in studies[1]["runs"]} == {0, 1}
    assert [(p["value"], p["method"], p["twin"]) for p in report["points"]] == [(1e-3, "lrwa_fo", True),
                                                                                (3e-3, "lrwa_fo", True)]
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 0.001 | lrwa_fo |" in (out / "sweep.md").read_text()


def _detectable_at(n: int, spread: float) -> float:
    return (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * spread / np.sqrt(n)


@pytest.mark.parametrize(("spread", "delta"), [(3.0, 2.0), (6.64, 2.0), (4.49, 2.5), (0.5, 4.0), (1.0, 0.1),
                                               (3.0, 1e9)])
def test_seeds_needed_is_the_fewest_the_power_formula_allows(spread, delta):
    n = seeds_needed(spread, delta)
    assert _detectable_at(n, spread) <= delta and (n == 2 or _detectable_at(n - 1, spread) > delta)


def test_seeds_needed_at_a_pilots_own_detectable_difference_is_the_pilots_seed_count():
    values = list(np.random.default_rng(5).normal(0.02, 0.05, size=10))
    assert seeds_needed(float(np.std(values, ddof=1)), detectable_difference(values) * (1 + 1e-9)) == 10
    assert seeds_needed(3.0, 2.0) == 20  # REFERENCE: s = 3 points, 20 seeds detect about 2.0


def test_the_plan_of_the_mnist1d_authors_study_follows_the_power_formula_on_its_spreads(capsys):
    pilot = ROOT / "docs" / "results" / "authors_mnist1d.json"
    assert main(["study", "--plan", str(pilot), "--delta", "2,2.5", "--jobs", "2"]) == 0
    shown = capsys.readouterr().out
    report = json.loads(pilot.read_text())
    hours = {m: report["summary"][m]["wall_time_s"]["mean"] / 3600 for m in report["summary"]}
    for row in report["comparisons"]:
        spread = 100 * float(np.std(row["statistics"]["mean"]["differences"], ddof=1))
        for delta in (2.0, 2.5):
            n = next(k for k in range(2, 10_000) if _detectable_at(k, spread) <= delta)
            cost = math.ceil(2 * n / 2) * (hours[row["method"]] + hours[row["reference"]]) / 2  # 2 at a time
            assert (f"| {row['method']} | {row['reference']} | μ[acc] | {spread:.2f} | {delta:g} | {n} | {n - 10} | "
                    f"{2 * n} | {cost:.2f} |") in shown


@pytest.mark.parametrize(("argv", "message"), [
    (["--plan", "nowhere"], "nowhere is missing"), (["--collect", "nowhere"], "holds no study"),
    (["--plan", str(ROOT / "docs" / "results" / "authors_mnist1d.json"), "--delta", "0"], "--delta must be positive"),
])
def test_plan_and_collect_refuse_what_is_not_a_study(argv, message, capsys):
    assert main(["study", *argv]) == 2
    assert message in capsys.readouterr().err


def test_collecting_an_unfinished_local_study_lists_what_is_missing(tmp_path):
    settings = StudySettings(benchmark="digits", methods=["dfad", "joint"], seeds=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "settings.json").write_text(json.dumps(settings.runs().to_dict()))
    (out / "study_settings.json").write_text(json.dumps(dataclasses.asdict(settings)))
    with pytest.raises(StudyIncomplete, match="5 not run") as caught:
        collect_study(out)
    assert caught.value.failed and "dfad-seed1: not run" in str(caught.value)
