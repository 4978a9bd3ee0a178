"""Declared dependencies match the imports: every third-party module the code imports is declared where it is
needed, so a fresh virtual environment made by the README's commands has it. The package (``lrwa_fast/``,
``kernels/``) needs ``install_requires``, or an extra when the import is optional (guarded, and a message
names ``lrwa_fast[EXTRA]``); the tests and benchmarks need ``install_requires`` and the ``test`` extra; the
docs' extensions and theme need ``install_requires`` and the ``docs`` extra. Imports are read from the source
(module level and inside functions, ``pytest.importorskip`` included), so a dependency nobody installed is
found here, not on a newcomer's machine."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Import names that differ from the name of the distribution that provides them.
DISTRIBUTION_OF = {"sklearn": "scikit-learn", "yaml": "pyyaml", "myst_parser": "myst-parser", "PIL": "pillow"}
FIRST_PARTY = {"lrwa_fast", "setuptools"}  # setuptools: the build backend, in pyproject's build requires


def setup_requirements() -> dict[str, set[str]]:
    """``install_requires`` (key ``""``) and each extra of setup.py, as normalised distribution names."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "EXTRAS":
            found |= {k: {_name(r) for r in v} for k, v in ast.literal_eval(node.value).items()}
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            found[""] = {_name(r) for r in ast.literal_eval(node.value)}
    return found


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (``"scipy>=1.15"`` → ``"scipy"``)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0)).lower()


def distribution(module: str) -> str:
    return _name(DISTRIBUTION_OF.get(module, module))


def imports(path: Path, *, top: bool = True) -> dict[str, bool]:
    """Module (its top-level name unless ``top=False``) → whether every import of it in ``path`` is optional
    (inside a function body or a ``try`` block); read from ``import``, ``from ... import`` and
    ``pytest.importorskip("name")``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, bool] = {}

    def visit(node: ast.AST, guarded: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = guarded or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Try)
            for name in _imported(child):
                name = name.split(".")[0] if top else name
                found[name] = found.get(name, True) and inner
            visit(child, inner)

    visit(tree, False)
    return found


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return [node.module] if node.module and node.level == 0 else []
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "importorskip"
            and node.args and isinstance(node.args[0], ast.Constant)):
        return [str(node.args[0].value)]
    return []


def third_party(folders: list[Path]) -> dict[str, dict[str, bool]]:
    """Per file under ``folders``: its third-party imports (not the standard library, not this project's
    package, not a module of the same tree such as ``tests.support``)."""
    files = [f for folder in folders for f in ([folder] if folder.is_file() else sorted(folder.rglob("*.py")))]
    local = {f.stem for f in files} | {f.parent.name for f in files}
    out = {}
    for f in files:
        mine = {m: g for m, g in imports(f).items()
                if m not in sys.stdlib_module_names and m not in FIRST_PARTY and m not in local}
        if mine:
            out[str(f.relative_to(ROOT))] = mine
    return out


def undeclared(folders: list[Path], allowed: set[str]) -> list[str]:
    return sorted(f"{path}: {module} ({distribution(module)})" for path, mods in third_party(folders).items()
                  for module in mods if distribution(module) not in allowed)


def test_the_package_needs_only_its_install_requires_or_a_named_extra():
    """An import outside ``install_requires`` is optional: guarded wherever ``lrwa_fast/`` makes it (the
    ``kernels/`` are loaded only through a guard of their own), its extra declared, and the message shown
    when it is missing names ``lrwa_fast[EXTRA]``."""
    declared = setup_requirements()
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "lrwa_fast").rglob("*.py"))
    problems = []
    for path, mods in third_party([ROOT / "lrwa_fast", ROOT / "kernels"]).items():
        for module, guarded in mods.items():
            dist = distribution(module)
            if dist in declared[""]:
                continue
            extras = [name for name, reqs in declared.items() if name and dist in reqs]
            if not extras:
                problems.append(f"{path}: {module} is declared nowhere")
            elif path.startswith("lrwa_fast") and not guarded:
                problems.append(f"{path}: {module} (extra {extras}) is imported unguarded")
            elif not any(f"lrwa_fast[{e}]" in source for e in extras):
                problems.append(f"{path}: no message names lrwa_fast[{extras[0]}] for {module}")
    assert not problems


def test_the_kernels_are_imported_by_the_package_only_behind_a_guard():
    """What makes a ``kernels/`` import of Triton optional: no module of ``lrwa_fast/`` imports the kernels
    unguarded (the dispatch imports them by name, inside a ``try``)."""
    unguarded = [f"{p.relative_to(ROOT)}: {name}" for p in (ROOT / "lrwa_fast").rglob("*.py")
                 for name, guarded in imports(p, top=False).items()
                 if name.startswith(("lrwa_fast.kernels", "kernels")) and not guarded]
    assert not unguarded


def test_the_tests_and_benchmarks_need_only_the_test_extra():
    declared = setup_requirements()
    assert not undeclared([ROOT / "tests", ROOT / "benchmarks"], declared[""] | declared["test"])


def test_the_docs_need_only_the_docs_extra():
    """The docs' own extensions, the Sphinx extensions named in ``conf.py`` and its theme."""
    declared = setup_requirements()
    allowed = declared[""] | declared["docs"]
    assert not undeclared([ROOT / "docs" / "_ext", ROOT / "docs" / "conf.py"], allowed)
    conf = ast.parse((ROOT / "docs" / "conf.py").read_text(encoding="utf-8"))
    named = [value.value for node in conf.body if isinstance(node, ast.Assign)
             and getattr(node.targets[0], "id", "") in ("extensions", "html_theme")
             for value in ast.walk(node.value) if isinstance(value, ast.Constant)]
    local = {p.stem for p in (ROOT / "docs" / "_ext").glob("*.py")}
    missing = [n for n in named if n.split(".")[0] not in local | {"sphinx"} | FIRST_PARTY
               and distribution(n.split(".")[0]) not in allowed]
    assert named and not missing, missing


@pytest.mark.parametrize(("source", "expected"), [
    ("import numpy.linalg\n", {"numpy": False}),
    ("def f():\n    import scipy\n", {"scipy": True}),
    ("try:\n    import triton\nexcept ImportError:\n    pass\n", {"triton": True}),
    ("import yaml\ndef f():\n    import yaml\n", {"yaml": False}),
    ("from . import x\nfrom .y import z\n", {}),
    ("import pytest\npytest.importorskip('higher')\n", {"pytest": False, "higher": False}),
])
def test_imports_are_read_at_module_level_inside_functions_and_through_importorskip(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source, encoding="utf-8")
    assert imports(path) == expected


def test_an_undeclared_import_is_found(tmp_path, monkeypatch):
    """The check can fail: a file importing a module nobody declares is reported with its distribution."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "test_x.py").write_text("import sklearn\nimport helpers\n", encoding="utf-8")
    (tmp_path / "t" / "helpers.py").write_text("import os\n", encoding="utf-8")
    assert undeclared([tmp_path / "t"], {"numpy"}) == ["t/test_x.py: sklearn (scikit-learn)"]
    assert undeclared([tmp_path / "t"], {"scikit-learn"}) == []
