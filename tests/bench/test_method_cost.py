"""``lrwa-fast bench --methods`` and ``lrwa-fast profile --methods``: every method's iteration on the same case,
its ratio to DFAD's from the same run, and each method's own phases (a synthesis round broken down)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lrwa_fast.apps.cli import main
from lrwa_fast.bench.cases import CASES, METHOD_VARIANTS
from lrwa_fast.bench.method_cost import format_methods, run_methods
from lrwa_fast.bench.profiling import METHOD_LABELS, ProfilePlan, build_trainer
from lrwa_fast.training.methods import COMPARED_METHODS

TINY = dataclasses.replace(CASES["cnn"], batch=8, memory_batch=4)

def test_every_method_is_timed_against_dfad_in_the_same_run():
    result = run_methods(TINY, torch.device("cpu"), repeats=1, warmup=0,
                         methods=("dfad", "zskt", "deepinv", "fast"))
    rows = result["methods"]
    assert list(rows) == ["dfad", "zskt", "deepinv", "fast"]
    assert rows["dfad"]["vs_dfad_iteration"] == 1.0
    for name in ("zskt", "deepinv", "fast"):
        assert rows[name]["vs_dfad_iteration"] == pytest.approx(rows[name]["median_ms"] / rows["dfad"]["median_ms"])
    assert rows["deepinv"]["synthesis"] == "inversion" and rows["deepinv"]["synthesis_steps"] == 10
    table = format_methods([result])
    assert "inversion round, 10 steps" in table and "| zskt | generator, 1 step |" in table

def test_methods_must_include_dfad():
    with pytest.raises(ValueError, match="must include 'dfad'"):
        run_methods(TINY, torch.device("cpu"), 1, 0, methods=("cmi",))

def test_every_compared_method_has_a_bench_variant_and_a_profile_label():
    assert set(COMPARED_METHODS) <= set(METHOD_VARIANTS)
    assert set(METHOD_LABELS.values()) == set(METHOD_VARIANTS)

def test_profiled_methods_keep_their_own_round_steps():

    plan = ProfilePlan(generator_steps=1, student_steps=2)
    cmi = build_trainer("CMI", TINY, torch.device("cpu"), plan, methods=True)
    assert cmi.settings.loop.generator_steps == 10 and cmi.settings.loop.student_steps == 2
    assert len(cmi.synthesis.pool) == 8  # one round made before timing
    dafl = build_trainer("DAFL", TINY, torch.device("cpu"), plan, methods=True)
    assert dafl.settings.loop.generator_steps == 1

@pytest.mark.slow
def test_the_cli_writes_the_methods_table(tmp_path, capsys):
    out = tmp_path / "methods.json"
    assert main(["bench", "--methods", "--cases", "cnn", "--batch", "8", "--repeats", "1", "--warmup", "0",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all(f"| {name} |" in printed for name in METHOD_VARIANTS)
    saved = json.loads(out.read_text())
    assert saved["command"] == "lrwa-fast bench --methods" and set(saved["results"][0]["methods"]) == \
        set(METHOD_VARIANTS)
