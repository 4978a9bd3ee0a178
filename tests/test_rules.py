"""The rule helpers every settings class states its checks with: problems name fields as ``{field}``, rendered
with the owner's names or renamed to the flat config's keys."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lrwa_fast.rules import (
    Problem,
    SettingsError,
    check,
    in_interval,
    nested,
    non_negative,
    one_of,
    positive,
    positive_finite,
)


@dataclass(frozen=True)
class Odd:
    size: int = 0
    rate: float = float("nan")
    kind: str = "x"
    share: float = 1.0


def test_each_helper_names_its_field_and_value():
    odd = Odd()
    assert [p.render() for p in positive(odd, "size")] == ["size=0 (must be > 0)"]
    assert [p.render() for p in non_negative(odd, "rate")] == ["rate=nan (must be >= 0)"]  # NaN breaks the rule
    assert [p.render() for p in positive_finite(odd, "rate")] == ["rate=nan (must be a positive finite number)"]
    assert [p.render() for p in one_of(odd, kind=("a", "b"))] == ["kind='x' (expected one of ('a', 'b'))"]
    assert [p.render() for p in in_interval(odd, "share", 0, 1, closed=False)] == ["share=1.0 (must lie in [0, 1))"]
    assert in_interval(odd, "share", 0, 1, closed=True) == [] and positive(Odd(size=1), "size") == []


def test_a_problem_is_renamed_whole_then_by_its_first_part():
    problem = Problem("{optimizer.lr} and {size} and {other} ({'not': 'a field'})")
    renamed = problem.renamed({"optimizer": "student_optimizer", "size": "memory_capacity"})
    assert renamed.render() == "student_optimizer.lr and memory_capacity and other ({'not': 'a field'})"
    assert Problem("{loop.batch_size}").renamed({"loop.batch_size": "batch_size"}).render() == "batch_size"


def test_nested_problems_are_named_through_their_holder():
    inner = positive(Odd(), "size")
    assert [p.render() for p in nested("memory", inner)] == ["memory.size=0 (must be > 0)"]


def test_check_raises_every_problem_at_once_as_a_value_error():
    odd = Odd()
    with pytest.raises(ValueError, match=r"^invalid Odd: size=0 \(must be > 0\); kind='x' \(expected") as caught:
        check(odd, [*positive(odd, "size"), *one_of(odd, kind=("a",))])
    assert isinstance(caught.value, SettingsError) and len(caught.value.problems) == 2
    check(odd, [])  # nothing to say: nothing raised


def test_a_value_with_braces_is_not_taken_for_a_field():
    odd = Odd(kind="{size}")
    problem = one_of(odd, kind=("a",))[0]
    assert problem.render() == "kind='{size}' (expected one of ('a',))"
    assert problem.renamed({"kind": "loss", "size": "batch_size"}).render() == "loss='{size}' (expected one of ('a',))"
