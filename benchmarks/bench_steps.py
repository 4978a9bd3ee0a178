"""pytest-benchmark timings of whole training steps, plus CPU smoke tests of bench and profile.

    pytest benchmarks/bench_steps.py --benchmark-group-by=param:case    # all cases (CPU: minutes)
    pytest benchmarks/bench_steps.py -k smoke                           # what CI runs

Variants: a DFAD student step, LRwA meta-steps (first order, exact, finite differences) and the same meta-step written
with ``higher`` (as the authors' code, but with ``copy_initial_weights=False``); whole iterations.
For ratios measured in one run use ``lrwa-fast bench`` (round-robin, medians).
"""

from __future__ import annotations

import pytest
import torch

from lrwa_fast.bench.cases import CASES, COMPILED_VARIANTS, ITERATION_VARIANTS, STEP_VARIANTS
from lrwa_fast.bench.profiling import ProfilePlan, format_profile, profile
from lrwa_fast.bench.steps import bench, format_results, higher_available, step_functions
from lrwa_fast.runtime.distributed import resolve_device
from lrwa_fast.training.compiling import compile_unavailable_reason

DEVICE = resolve_device("auto")
CASE_NAMES = ["cnn", "wrn16_1"] + (["resnet18"] if DEVICE.type == "cuda" else [])
TINY = {"batch": 8, "memory_batch": 4}
NO_COMPILE = compile_unavailable_reason(DEVICE)


@pytest.mark.parametrize("case", CASE_NAMES)
@pytest.mark.parametrize("variant", STEP_VARIANTS + COMPILED_VARIANTS + ITERATION_VARIANTS)
def test_step(benchmark, case, variant):
    if variant == "higher_exact" and not higher_available():
        pytest.skip("higher is not installed")
    if variant in COMPILED_VARIANTS and NO_COMPILE:
        pytest.skip(NO_COMPILE)
    fn = step_functions(CASES[case], DEVICE, (variant,))[variant]
    sync = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)

    def run():
        fn()
        sync()

    benchmark.pedantic(run, rounds=10, warmup_rounds=2)


def test_bench_smoke():
    (result,) = bench(["cnn"], "cpu", repeats=2, warmup=1, overrides=TINY)
    variants = result["variants"]
    assert {"dfad_step", "lrwa_first_order", "lrwa_exact", "dfad_iteration", "lrwa_iteration",
            "lrwa_generative_iteration"} <= set(variants)
    assert all(v["median_ms"] > 0 for v in variants.values())
    assert variants["dfad_step"]["vs_dfad_step"] == 1.0
    assert ("higher_speedup" in variants["lrwa_exact"]) == higher_available()
    for name in ("lrwa_first_order", "lrwa_fd_central", "lrwa_fd_one_sided"):  # accuracy: tests/test_meta_*
        assert variants[name]["exact_speedup"] > 0 and 0 < variants[name]["error_vs_exact"] < float("inf")
    assert variants["dfad_iteration"]["vs_dfad_iteration"] == 1.0  # iterations compare with the DFAD iteration
    assert variants["lrwa_iteration"]["vs_dfad_iteration"] > 0 and "vs_dfad_step" not in variants["lrwa_iteration"]
    alone = result["meta_gradient"]  # the meta-gradients alone, against a KD gradient and the exact mode
    timed = {"kd_gradient", "lrwa_first_order", "lrwa_exact", "lrwa_fd_central", "lrwa_fd_one_sided"}
    on_kl = {"lrwa_first_order (kl)", "lrwa_exact (kl)", "lrwa_fd_central (kl)", "lrwa_fd_one_sided (kl)"}
    assert set(alone) == timed | on_kl  # the case's loss is L1: every error also on KL, untimed
    assert alone["kd_gradient"]["gradient_vs_kd"] == 1.0 and alone["lrwa_exact"]["gradient_exact_speedup"] == 1.0
    assert all(alone[name]["gradient_ms"] > 0 for name in timed)
    assert all("gradient_ms" not in alone[name] and alone[name]["error_vs_exact"] >= 0 for name in on_kl)
    table = format_results([result])
    assert table.startswith("Student KD loss: l1") and "The meta-gradient alone" in table
    assert "| lrwa_fd_central (kl) |" in table


@pytest.mark.skipif(NO_COMPILE is not None, reason=str(NO_COMPILE))
def test_bench_compiled_smoke():
    (result,) = bench(["cnn"], "cpu", repeats=2, warmup=2, iterations=False, overrides=TINY, compiled=True)
    variants = result["variants"]
    assert set(COMPILED_VARIANTS) <= set(variants)
    assert variants["dfad_step+compile"]["vs_dfad_step"] == 1.0, "compiled steps compare with the compiled DFAD step"
    assert variants["lrwa_first_order+compile"]["vs_dfad_step"] > 0
    for name in ("lrwa_fd_central+compile", "lrwa_fd_one_sided+compile"):  # finite differences run compiled
        assert variants[name]["exact_speedup"] > 0 and 0 < variants[name]["error_vs_exact"] < float("inf")
        assert result["meta_gradient"][name]["gradient_ms"] > 0
    assert "lrwa_exact+compile" not in result["meta_gradient"], "exact cannot run compiled"


def test_compiled_variant_refuses_to_time_an_eager_student_smoke(monkeypatch):
    from lrwa_fast.runtime import warn_once
    from lrwa_fast.training import compiling

    monkeypatch.setattr(compiling, "compile_unavailable_reason", lambda device: "no C++ compiler found")
    monkeypatch.setattr(warn_once, "_issued", set())
    with pytest.raises(RuntimeError, match=r"needs torch\.compile"), pytest.warns(RuntimeWarning):
        step_functions(CASES["cnn"], torch.device("cpu"), ("dfad_step+compile",))


def test_profile_smoke(tmp_path):
    report = profile("cnn", "cpu", ProfilePlan(rounds=2, warmup=1), out_dir=str(tmp_path), overrides=TINY)
    median = {name: {p: q["median"] for p, q in v["phases_ms"].items()} for name, v in report["variants"].items()}
    exact, dfad = median["LRwA exact"], median["DFAD"]
    assert {"second-order backward", "retention forward", "memory sample", "memory insert"} <= set(exact)
    assert "second-order backward" not in median["LRwA first_order"]
    for name in ("LRwA fd central", "LRwA fd one_sided"):
        assert "finite-difference passes" in median[name] and "second-order backward" not in median[name]
    assert {"student forward", "teacher forward", "generator step", "optimizer (student)", "optimizer (generator)",
            "finite check (student)"} <= set(dfad)
    assert set(median["DFAD (again)"]) == set(dfad)
    generative = median["LRwA exact generative"]
    assert {"vae sample", "memory teacher forward", "vae forward/backward", "second-order backward",
            "optimizer (vae)"} <= set(generative)
    assert "optimizer (vae)" not in exact, "each updater's optimiser step is its own phase"
    assert len(list(tmp_path.glob("trace_*.json"))) == 6
    assert "DFAD (again)" in format_profile(report)
