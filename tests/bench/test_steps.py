"""``lrwa-fast bench``'s meta-gradient table: errors on the configured loss and, for L1, on KL as well."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lrwa_fast.bench.cases import CASES, META_VARIANTS, alike
from lrwa_fast.bench.steps import format_results, meta_gradients

TINY = dataclasses.replace(CASES["cnn"], batch=8, memory_batch=4)
CPU = torch.device("cpu")


def result_of(case, alone) -> dict:
    return {"name": case.name, "case": dataclasses.asdict(case), "variants": {}, "meta_gradient": alone}


def test_an_l1_case_has_every_error_on_kl_too():
    alone = meta_gradients(TINY, CPU)
    on_kl = {name + " (kl)" for name in META_VARIANTS}
    assert set(alone) == set(META_VARIANTS) | on_kl
    assert alone["lrwa_exact (kl)"]["error_vs_exact"] == 0.0, "KL rows are measured against exact on KL"
    assert alone["lrwa_fd_central (kl)"]["error_vs_exact"] != pytest.approx(alone["lrwa_fd_central"]["error_vs_exact"])
    table = format_results([result_of(TINY, alone)])
    assert table.startswith("Student KD loss: l1")
    assert "| lrwa_fd_one_sided (kl) |" in table and "L1 is piecewise linear" in table


def test_a_smooth_case_has_no_second_loss_and_says_its_loss():
    case = dataclasses.replace(TINY, loss="js")
    alone = meta_gradients(case, CPU)
    assert set(alone) == set(META_VARIANTS)
    table = format_results([result_of(case, alone)])
    assert table.startswith("Student KD loss: js") and "piecewise" not in table


def test_rows_compare_with_their_own_kind():
    assert alike("kd_gradient", "lrwa_exact (kl)") == "kd_gradient (kl)"
    assert alike("dfad_step", "lrwa_exact+compile") == "dfad_step+compile"
    assert alike("dfad_step", "lrwa_exact") == "dfad_step"


def test_the_targets_are_judged_under_the_table():
    from lrwa_fast.bench.steps import target_verdicts

    result = {"name": "cnn", "variants": {"lrwa_first_order": {"vs_dfad_step": 1.2},
                                          "lrwa_fd_central": {"exact_speedup": 1.6},
                                          "lrwa_fd_one_sided+compile": {"exact_speedup": 1.9}},
              "meta_gradient": {"lrwa_fd_central": {"error_vs_exact": 1e-3, "gradient_exact_speedup": 1.4},
                                "lrwa_fd_one_sided+compile": {"error_vs_exact": 2e-3, "gradient_exact_speedup": 2.5}}}
    lines = target_verdicts(result)
    assert lines[0] == "cnn: lrwa_first_order = 1.20× DFAD step (misses the ≤ 1.15× target)"
    assert "1.60× faster than exact per student step (meets) and 1.40× per meta-gradient (misses)" in lines[1]
    assert "1.90× faster than exact per student step (misses) and 2.50× per meta-gradient (meets)" in lines[2]
    assert len(lines) == 3
