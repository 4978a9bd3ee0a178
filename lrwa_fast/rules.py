"""How settings state their rules, once: each part's settings check their own fields in ``__post_init__``
with these helpers and raise :class:`SettingsError` with every problem found. A problem names fields as
``{field}``; the part's message names them as its own fields, and the flat config's check
(:func:`lrwa_fast.training.settings.part_settings`) renames them to the config keys they come from, so one
rule gives both messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][\w.]*)\}")  # a literal brace is doubled, as in str.format


@dataclass(frozen=True)
class Problem:
    """One broken rule: ``text`` with the fields it concerns written ``{field}``."""

    text: str

    def render(self) -> str:
        """The message, each ``{field}`` written as its name."""
        return _TOKEN.sub(lambda m: m[0][0] if m[1] is None else m[1], self.text)

    def renamed(self, names: Mapping[str, str]) -> Problem:
        """The same problem with its fields named as ``names`` says: a field is looked up whole, then by its
        first part (``optimizer.lr`` with ``{"optimizer": "student_optimizer"}`` is ``student_optimizer.lr``)."""
        def rename(name: str) -> str:
            head, dot, rest = name.partition(".")
            return names[name] if name in names else names.get(head, head) + dot + rest
        return Problem(_fields_sub(self.text, rename))


def _fields_sub(text: str, rename: Callable[[str], str]) -> str:
    """``text`` with each ``{field}`` replaced by ``{rename(field)}``; doubled braces kept."""
    return _TOKEN.sub(lambda m: m[0] if m[1] is None else "{" + rename(m[1]) + "}", text)


def shown(value: object) -> str:
    """``repr(value)`` for a problem's text (its braces doubled, so they are not taken for fields)."""
    return repr(value).replace("{", "{{").replace("}", "}}")


class SettingsError(ValueError):
    """Settings that break rules: ``owner`` and every :class:`Problem` found, in one message."""

    def __init__(self, owner: str, problems: Sequence[Problem]) -> None:
        self.owner, self.problems = owner, list(problems)
        super().__init__(f"invalid {owner}: " + "; ".join(p.render() for p in self.problems))


def check(settings: object, problems: Sequence[Problem]) -> None:
    """Raise :class:`SettingsError` for ``settings`` when ``problems`` is not empty."""
    if problems:
        raise SettingsError(type(settings).__name__, problems)


def one_of(settings: object, **choices: Sequence[Any]) -> list[Problem]:
    """A problem for each field whose value is not among its choices."""
    return [Problem(f"{{{name}}}={shown(getattr(settings, name))} (expected one of {tuple(allowed)})")
            for name, allowed in choices.items() if getattr(settings, name) not in allowed]


def positive(settings: object, *names: str) -> list[Problem]:
    """A problem for each field that is not > 0."""
    return [Problem(f"{{{n}}}={shown(getattr(settings, n))} (must be > 0)") for n in names
            if not getattr(settings, n) > 0]


def non_negative(settings: object, *names: str) -> list[Problem]:
    """A problem for each field that is not >= 0 (NaN included)."""
    return [Problem(f"{{{n}}}={shown(getattr(settings, n))} (must be >= 0)") for n in names
            if not getattr(settings, n) >= 0]


def positive_finite(settings: object, *names: str) -> list[Problem]:
    """A problem for each field that is not a positive finite number."""
    return [Problem(f"{{{n}}}={shown(getattr(settings, n))} (must be a positive finite number)") for n in names
            if not (getattr(settings, n) > 0 and math.isfinite(getattr(settings, n)))]


def in_interval(settings: object, name: str, low: float, high: float, *, closed: bool) -> list[Problem]:
    """A problem when the field lies outside ``[low, high]`` (``closed``) or ``[low, high)``."""
    value = getattr(settings, name)
    inside = low <= value <= high if closed else low <= value < high
    bracket = "]" if closed else ")"
    return [] if inside else [Problem(f"{{{name}}}={shown(value)} (must lie in [{low}, {high}{bracket})")]


def nested(name: str, problems: Sequence[Problem]) -> list[Problem]:
    """``problems`` of the settings object held in field ``name``, their fields named through it."""
    return [Problem(_fields_sub(p.text, lambda field: f"{name}.{field}")) for p in problems]
