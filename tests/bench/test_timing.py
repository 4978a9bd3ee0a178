"""The benchmarks' timing: round-robin order (rotated or not), medians and quartiles, seconds to ms."""

from __future__ import annotations

import pytest
import torch

from lrwa_fast.bench.timing import measure, quartiles, round_robin, summarize_times


def recorder(calls: list[str], name: str):
    def call() -> str:
        calls.append(name)
        return f"{name}{sum(c == name for c in calls)}"
    return call


def test_quartiles_of_known_values():
    assert quartiles([5.0, 1.0, 3.0, 2.0, 4.0]) == {"median": 3.0, "q1": 2.0, "q3": 4.0}  # within the data
    assert quartiles([7.0]) == {"median": 7.0, "q1": 7.0, "q3": 7.0}
    even = quartiles([1.0, 2.0, 3.0, 10.0])
    assert even["median"] == 2.5 and even["q1"] <= even["median"] <= even["q3"]


def test_round_robin_calls_every_function_once_per_round_in_order():
    calls: list[str] = []
    results = round_robin({n: recorder(calls, n) for n in "abc"}, rounds=2)
    assert calls == list("abcabc")
    assert results == {"a": ["a1", "a2"], "b": ["b1", "b2"], "c": ["c1", "c2"]}


def test_rotated_rounds_start_one_further_so_each_takes_every_place():
    calls: list[str] = []
    results = round_robin({n: recorder(calls, n) for n in "abc"}, rounds=3, rotate=True)
    assert calls == list("abc" "bca" "cab")
    assert results["b"] == ["b1", "b2", "b3"], "results stay in round order"
    places = {name: sorted(calls[3 * r:3 * r + 3].index(name) for r in range(3)) for name in "abc"}
    assert places == {name: [0, 1, 2] for name in "abc"}


def test_measure_warms_up_then_times_round_robin():
    calls: list[str] = []
    times = measure({n: recorder(calls, n) for n in "ab"}, torch.device("cpu"), repeats=3, warmup=2)
    assert calls == list("aabb" "ababab")
    assert [len(v) for v in times.values()] == [3, 3] and all(t >= 0 for v in times.values() for t in v)


def test_summarize_times_gives_milliseconds():
    stats = summarize_times({"x": [0.001, 0.002, 0.003]})["x"]
    assert stats["median_ms"] == pytest.approx(2.0) and stats["repeats"] == 3
    assert stats["q1_ms"] <= stats["median_ms"] <= stats["q3_ms"]
