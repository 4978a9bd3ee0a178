"""Smoke test of benchmarks/scaling_table.py (what CI runs): the all-reduce payload of each method on 2 gloo
processes follows from the models' sizes."""

from __future__ import annotations

import pytest
import scaling_table

from lrwa_fast.testing import rank_values, run_local


@pytest.mark.distributed
def test_scaling_bytes_smoke(tmp_path):
    (counted, _) = rank_values(run_local(scaling_table.count_bytes, tmp_path, world=2, timeout=120, case_name="cnn"))
    per_step = 4 * counted["student_params"]  # one fp32 all-reduce of the student's gradient
    b = counted["bytes"]
    assert b["dfad"] > 5 * per_step + 4 * counted["generator_params"]
    assert b["lrwa_first_order"] - b["dfad"] == pytest.approx(5 * per_step, abs=5 * 4 * 4)  # + logged values
    assert b["lrwa_exact"] == b["lrwa_first_order"]
    assert b["lrwa_fd_central"] - b["lrwa_first_order"] == 5 * per_step  # the global direction v
