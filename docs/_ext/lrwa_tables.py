"""The reference tables generated from the code, as reStructuredText lines, so they cannot drift from it: the
configuration dataclasses (every field, its type, default and the comment written beside it) and the command
line (every command and option from the argparse parser). Plain Python, no Sphinx: the tests read these tables
without the docs toolchain; ``lrwa_reference`` turns them into pages."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from typing import Any


def field_comments(cls: type) -> dict[str, str]:
    """The comment written on (or continuing after) each field's line in the class body."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    found = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            found[node.target.id] = " ".join(comments[i] for i in lines if i in comments)
    return found


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _default(f: dataclasses.Field) -> str:
    """The default as code; a nested config shows only what differs from its own defaults."""
    value = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
    if dataclasses.is_dataclass(value):
        own = dataclasses.asdict(type(value)())
        changed = {k: v for k, v in dataclasses.asdict(value).items() if v != own[k]}
        return f"{type(value).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"
    return repr(value)


def _cell(text: str) -> str:
    """Plain text for a table cell: reStructuredText's inline markup characters escaped."""
    for char in "\\|*`_":
        text = text.replace(char, "\\" + char)
    return text.replace("\n", " ") or " "


def config_table(cls: type) -> list[str]:
    """A list-table of every field of ``cls`` (inherited ones included), in declaration order."""
    comments: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base):
            comments |= field_comments(base)
    hints = typing.get_type_hints(cls)
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 28 24 48", "",
             "   * - field: type", "     - default", "     - meaning"]
    for f in dataclasses.fields(cls):
        lines += [f"   * - ``{f.name}``: {_type_name(hints[f.name])}", f"     - ``{_default(f)}``",
                  f"     - {_cell(comments.get(f.name, ''))}"]
    return lines


def _option_row(action: argparse.Action) -> list[str]:
    flags = ", ".join(f"``{o}``" for o in action.option_strings) or f"``{action.dest}``"
    if action.choices is not None:
        flags += " {" + ", ".join(str(c) for c in action.choices) + "}"
    default = "" if action.default in (None, argparse.SUPPRESS, False, [], "") else f"``{action.default}``"
    return [f"   * - {flags}", f"     - {default or ' '}", f"     - {_cell(action.help or '')}"]


def cli_lines(parser: argparse.ArgumentParser) -> list[str]:
    """A section per command of ``parser``: its one-line purpose, usage and a table of its options."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    lines = []
    for name, command in sub.choices.items():
        title = f"lrwa-fast {name}"
        usage = ["   " + line for line in command.format_usage().strip().splitlines()]
        lines += [title, "-" * len(title), "", _cell(helps.get(name, "")), "", "::", "", *usage, "",
                  ".. list-table::", "   :header-rows: 1", "   :widths: 30 15 55", "",
                  "   * - option", "     - default", "     - meaning"]
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                lines += _option_row(action)
        lines.append("")
    return lines
