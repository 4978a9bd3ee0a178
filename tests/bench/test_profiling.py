"""``lrwa-fast profile``: variants interleaved in rotated rounds of blocks, the configured schedule, medians
with quartiles, ratios to DFAD paired by round, the A/A column, and no profiler lines in the output."""

from __future__ import annotations

import dataclasses
import json
import os
import re

import pytest

from lrwa_fast.apps.cli import main
from lrwa_fast.bench import profiling
from lrwa_fast.bench.profiling import (
    VARIANTS,
    ProfilePlan,
    format_profile,
    profile,
    redirected_output,
    summarize_blocks,
)
from lrwa_fast.config import DFADConfig
from lrwa_fast.training import Trainer

TINY = {"batch": 8, "memory_batch": 4}
NAMES = ["DFAD", "DFAD (again)", *list(VARIANTS)[1:]]


def block(total: float, **phases: float) -> dict:
    return {"total_ms": total, "phases_ms": {**phases, "other": 0.0}, "calls": {}}


@pytest.mark.slow
def test_blocks_run_round_robin_in_rotated_order(monkeypatch):
    stepped: list[Trainer] = []
    original = Trainer.step

    def spy(self):
        stepped.append(self)
        return original(self)

    monkeypatch.setattr(Trainer, "step", spy)
    plan = ProfilePlan(rounds=3, block=2, block_warmup=1, warmup=1, student_steps=1)
    profile("cnn", "cpu", plan, overrides=TINY)
    trainers = list(dict.fromkeys(stepped))  # in the order of their first (warm-up) step
    n = len(trainers)
    assert n == len(NAMES) and stepped[:n] == trainers
    rounds = stepped[n:]
    assert len(rounds) == 3 * n * 3, "every block: 1 untimed + 2 timed iterations"
    blocks = [rounds[i:i + 3] for i in range(0, len(rounds), 3)]
    assert all(len(set(map(id, b))) == 1 for b in blocks), "a block is one trainer's iterations"
    order = [trainers.index(b[0]) for b in blocks]
    assert order == [*range(n), *range(1, n), 0, *range(2, n), 0, 1]


@pytest.mark.slow
def test_the_configured_schedule_by_default_and_as_told():
    default = profile("cnn", "cpu", ProfilePlan(rounds=1, block_warmup=0, warmup=0), overrides=TINY)
    cfg = DFADConfig()
    assert default["plan"]["student_steps"] == cfg.student_steps == 5
    assert default["plan"]["generator_steps"] == cfg.generator_steps == 1
    dfad, exact = default["variants"]["DFAD"]["calls"], default["variants"]["LRwA exact"]["calls"]
    assert dfad["generator step"] == cfg.generator_steps and dfad["student forward"] == cfg.student_steps
    assert exact["second-order backward"] == cfg.student_steps
    told = profile("cnn", "cpu", ProfilePlan(rounds=1, block_warmup=0, warmup=0, generator_steps=2, student_steps=1),
                   overrides=TINY)
    calls = told["variants"]["DFAD (again)"]["calls"]
    assert calls["generator step"] == 2 and calls["student forward"] == 1


@pytest.mark.slow
def test_the_report_has_medians_quartiles_and_the_a_a_pair():
    report = profile("cnn", "cpu", ProfilePlan(rounds=3, block_warmup=0, warmup=0, student_steps=1), overrides=TINY)
    assert list(report["variants"]) == NAMES, "the A/A twin right after DFAD"
    for v in report["variants"].values():
        for q in [*v["phases_ms"].values(), v["total_ms"], v["vs_dfad"]]:
            assert q["q1"] <= q["median"] <= q["q3"]
        assert len(v["blocks_ms"]) == 3 and list(v["phases_ms"])[-1] == "other"
        assert v["vs_dfad"]["within_spread"] == (v["vs_dfad"]["q1"] <= 1 <= v["vs_dfad"]["q3"])
    assert report["variants"]["DFAD"]["vs_dfad"]["median"] == 1.0
    assert set(report["variants"]["DFAD (again)"]["phases_ms"]) == set(report["variants"]["DFAD"]["phases_ms"])
    json.dumps(report)
    text = format_profile(report)
    assert "| DFAD | DFAD (again) |" in text and "DFAD (again) is the same variant measured again (A/A)" in text


def test_ratios_are_paired_by_round_and_missing_phases_count_as_zero():
    blocks = {"DFAD": [block(10, g=1), block(20, g=1), block(30, g=1)],
              "X": [block(30, g=1, extra=4), block(40, g=1), block(75, g=1)],
              "Y": [block(9), block(20), block(33)]}
    out = summarize_blocks(blocks)
    assert out["X"]["vs_dfad"]["median"] == 2.5, "the median of the ratios 3, 2, 2.5, not 40 / 20 (of the medians)"
    assert out["X"]["phases_ms"]["extra"]["median"] == 0.0 and out["X"]["phases_ms"]["extra"]["q3"] > 0
    assert not out["X"]["vs_dfad"]["within_spread"] and out["Y"]["vs_dfad"]["within_spread"]


def test_a_ratio_within_its_spread_is_marked():
    runs = {"DFAD": [block(10, g=5), block(10, g=5), block(10, g=5)],
            "DFAD (again)": [block(9, g=5), block(10, g=5), block(11, g=5)],
            "slow": [block(20, g=5), block(21, g=5), block(22, g=5)]}
    report = {"case": "c", "device": "cpu", "threads": 1, "load_average": [None, 0.5], "log": None,
              "plan": dataclasses.asdict(ProfilePlan()), "variants": summarize_blocks(runs)}
    ratio_row = next(line for line in format_profile(report).splitlines() if line.startswith("| **× DFAD**"))
    cells = [c.strip() for c in ratio_row.split("|")[2:-1]]
    assert cells[0] == "1" and cells[1].endswith("≈") and not cells[2].endswith("≈")
    assert cells[2].startswith("2.10 (")
    assert "busy" not in format_profile(report)
    busy = {**report, "load_average": [1.5, 2.0], "cpus": 2}
    assert "The machine was busy (load average 1.5 on 2 CPUs" in format_profile(busy)


def test_redirected_output_takes_file_descriptor_writes(tmp_path, capfd):
    log = tmp_path / "log.txt"
    with redirected_output(log):
        os.write(1, b"to stdout\n")
        os.write(2, b"to stderr\n")  # as C and C++ libraries write (Python's own streams: pytest's here)
    print("after")
    out, err = capfd.readouterr()
    assert out == "after\n" and err == ""
    assert log.read_text().splitlines() == ["to stdout", "to stderr"]


def test_the_command_prints_no_profiler_lines(tmp_path, capfd):
    out_dir = tmp_path / "prof"
    code = main(["profile", "--case", "cnn", "--batch", "8", "--memory-batch", "4", "--rounds", "1",
                 "--block-warmup", "0", "--student-steps", "1", "--out", str(out_dir)])
    out, err = capfd.readouterr()
    assert code == 0
    assert "USDT" not in out + err and "profiler_start" not in out + err
    log = out_dir / profiling.PROFILER_LOG
    if log.exists():  # where the profiler's messages went, said in one line
        assert f"went to {log}" in out
    assert len(list(out_dir.glob("trace_*.json"))) == len(VARIANTS)
    saved = json.loads((out_dir / "profile.json").read_text())
    assert set(saved["variants"]) == set(NAMES)
    assert saved["fast_paths"]["kd_loss"][-1]["used"] in ("torch", "triton")
    assert re.search(r"fast paths: .*kd_loss", out)
    assert all("median" in v["total_ms"] and "median" in v["phases_ms"]["other"] for v in saved["variants"].values())


def test_the_command_profiles_the_configured_schedule_and_refuses_bad_ones(monkeypatch, capfd):
    class Stop(Exception):
        pass

    seen = []

    def fake(case, device, plan, **kw):
        seen.append(plan)
        raise Stop

    monkeypatch.setattr(profiling, "profile", fake)
    with pytest.raises(Stop):
        main(["profile"])
    assert seen == [ProfilePlan()] and (seen[0].generator_steps, seen[0].student_steps) == (1, 5)
    assert main(["profile", "--rounds", "0"]) == 2
    assert "rounds=0" in capfd.readouterr().err
    with pytest.raises(ValueError, match="block_warmup=-1"):
        ProfilePlan(block_warmup=-1)
