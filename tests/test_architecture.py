"""The layout a newcomer reads: subpackages by concept in layers, one name per module, docstrings that
say what each part owns, the test harness kept out of the library, no test module importing another."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest
from helpers import ROOT

PACKAGE = ROOT / "lrwa_fast"
# Lowest first: a module may import from its own layer and the layers below it, never from one above.
LAYERS: list[set[str]] = [
    {"choices", "config"},
    {"runtime"},
    {"ops", "models", "data", "kernels"},
    {"optim"},
    {"replay"},
    {"updates"},
    {"training"},
    {"bench"},
    {"apps"},
]
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}
API = len(LAYERS)  # the package's public names (``from lrwa_fast import DFADTrainer``): above every layer


def library_modules() -> list[Path]:
    """Every module of the installed package: ``lrwa_fast/`` and ``kernels/`` (installed as lrwa_fast.kernels)."""
    return sorted([*PACKAGE.rglob("*.py"), *(ROOT / "kernels").glob("*.py")])


def dotted(path: Path) -> str:
    if path.is_relative_to(ROOT / "kernels"):
        return "lrwa_fast.kernels" + ("" if path.stem == "__init__" else f".{path.stem}")
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """The ``lrwa_fast`` modules (or their attributes) a file imports, anywhere in it, as dotted names."""
    here = dotted(path).split(".")
    package = here if path.stem == "__init__" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found |= {f"{base}.{a.name}" for a in node.names} | {base}
    return {name for name in found if name.split(".")[0] == "lrwa_fast"}


def layer_of(name: str) -> int | None:
    """The layer of a dotted lrwa_fast name: its subpackage's or top module's; a public name of the package
    itself is the API, above every layer (``__version__`` aside); ``None`` for the package's own
    ``__init__``/``__main__``."""
    parts = name.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return None
    if parts[1] == "__version__":
        return 0
    return LAYER.get(parts[1], API)


def test_at_most_eight_modules_stay_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top


def test_every_subpackage_is_in_a_layer():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")} | {"kernels"}
    assert subpackages - {"testing"} <= set(LAYER), subpackages - set(LAYER)
    assert {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"} <= set(LAYER)


def test_no_module_name_appears_twice():
    names = Counter(p.stem for p in library_modules() if p.stem not in ("__init__", "base"))
    assert not [name for name, count in names.items() if count > 1]


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: dotted(p))
def test_every_module_opens_with_a_docstring(path):
    assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), "no docstring says what it owns"


@pytest.mark.parametrize("path", [p for p in library_modules() if layer_of(dotted(p)) is not None],
                         ids=lambda p: dotted(p))
def test_nothing_imports_from_a_layer_above_it(path):
    mine = layer_of(dotted(path))
    above = sorted(name for name in imported(path) if (layer_of(name) or -1) > mine)
    assert not above, f"{dotted(path)} (layer {mine}) imports {above}"


def test_the_test_harness_is_imported_by_no_library_module():
    users = [dotted(p) for p in library_modules() if not dotted(p).startswith("lrwa_fast.testing")
             and any(name.startswith("lrwa_fast.testing") for name in imported(p))]
    assert not users


def test_the_configs_import_no_implementation_module():
    assert imported(PACKAGE / "config.py") <= {"lrwa_fast", "lrwa_fast.choices"}


def test_no_test_module_imports_another():
    tests = {p.stem for p in (ROOT / "tests").rglob("test_*.py")}
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not set(names) & tests, f"{path.relative_to(ROOT)} imports {set(names) & tests}"


def test_test_files_follow_the_subpackages():
    folders = {p.parent.name for p in (ROOT / "tests").rglob("test_*.py") if p.parent != ROOT / "tests"}
    assert folders <= set(LAYER), folders - set(LAYER)
