"""The layout a newcomer reads: subpackages by concept in layers, one name per module, docstrings that
say what each part owns, the test harness kept out of the library, no test module importing another."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGE = ROOT / "lrwa_fast"
# Lowest first: a module may import from its own layer and the layers below it, never from one above.
LAYERS: list[set[str]] = [
    {"choices", "config", "rules"},
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


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every import of a file, anywhere in it, as (absolute module, names taken from it; empty for
    ``import module``)."""
    here = dotted(path).split(".")
    package = here if path.stem == "__init__" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            found.append((base, [a.name for a in node.names]))
    return found


def imported(path: Path) -> set[str]:
    """The ``lrwa_fast`` modules (or their attributes) a file imports, anywhere in it, as dotted names."""
    found = {f"{base}.{name}" for base, names in imports(path) for name in names} | {b for b, _ in imports(path)}
    return {name for name in found if name.split(".")[0] == "lrwa_fast"}


def module_graph() -> dict[str, set[str]]:
    """Each library module's imports of other library modules, as edges between modules: ``from P import n``
    goes to ``P.n`` when that is a module, else to ``P`` (imports inside functions and under
    ``TYPE_CHECKING`` included; a package is its ``__init__``)."""
    modules = {dotted(p): p for p in library_modules()}

    def target(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def edges(path: Path) -> set[str]:
        names = {f"{base}.{n}" if f"{base}.{n}" in modules else base for base, taken in imports(path)
                 for n in taken or [""]}
        return {t for t in map(target, names) if t is not None and t != dotted(path)}

    return {name: edges(path) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, edges = work[-1]
            nxt = next((e for e in edges if e not in index or e in stack), None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif nxt in index:
                low[node] = min(low[node], index[nxt])
            else:
                index[nxt] = low[nxt] = len(index)
                stack.append(nxt)
                work.append((nxt, iter(sorted(graph[nxt]))))
    return found


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


def test_cycles_are_found_in_a_graph_that_has_them():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["d", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_anywhere_in_the_library():
    """Imports inside functions and under TYPE_CHECKING count: a cycle hidden there is still a cycle."""
    graph = module_graph()
    assert "lrwa_fast.training.trainer" in graph["lrwa_fast.training"]  # the graph sees the package imports
    assert not cycles(graph)


def defined_names(path: Path) -> set[str]:
    """The names a module defines at its top level (functions, classes, assignments), not those it imports."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def test_benchmarks_import_names_from_the_modules_that_define_them():
    """A package's ``__init__`` is its public API; from a module, a name is taken where it is written."""
    modules = {dotted(p): p for p in library_modules()}
    borrowed = []
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
            path = modules.get(node.module) if isinstance(node, ast.ImportFrom) and node.module else None
            if path is None or path.stem == "__init__":
                continue
            defined = defined_names(path)
            borrowed += [f"{script.name}: {node.module}.{a.name}" for a in node.names
                         if a.name not in defined and f"{node.module}.{a.name}" not in modules]
    assert not borrowed


def test_the_test_harness_is_imported_by_no_library_module():
    users = [dotted(p) for p in library_modules() if not dotted(p).startswith("lrwa_fast.testing")
             and any(name.startswith("lrwa_fast.testing") for name in imported(p))]
    assert not users


def test_the_configs_import_no_implementation_module():
    assert imported(PACKAGE / "config.py") <= {"lrwa_fast", "lrwa_fast.choices"}


SUPPORT = "tests.support"  # the one package of the tests that test modules may import


def foreign_test_imports(path: Path, tests: Path) -> list[str]:
    """What ``path``, a file of the test package in folder ``tests``, imports of the tests other than
    ``tests.support``: another test module (``tests.apps.test_cli``, relative ones resolved) or a module of
    the tree by its bare name (``import helpers``, found through a folder pytest put on ``sys.path``)."""
    local = {p.stem for p in tests.rglob("*.py")} | {p.name for p in tests.rglob("*") if p.is_dir()}
    package = ("tests", *path.relative_to(tests).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = [*package[: len(package) - node.level + 1], *(node.module or "").split(".")] if node.level \
                else (node.module or "").split(".")
            found += [".".join(filter(None, [*base, a.name])) for a in node.names]
    return [name for name in found if (name.split(".")[0] == "tests" and name != SUPPORT
                                       and not name.startswith(SUPPORT + ".")) or name.split(".")[0] in local]


@pytest.mark.parametrize(("source", "wrong"), [
    ("import helpers\nfrom helpers import ROOT\nimport workers as w\n", ["helpers", "helpers.ROOT", "workers"]),
    ("from tests.apps import test_cli\nfrom tests.apps.test_cli import x\nfrom tests import conftest\n",
     ["tests.apps.test_cli", "tests.apps.test_cli.x", "tests.conftest"]),
    ("from . import test_y\nfrom .test_y import x\nfrom ..support import ROOT\n",
     ["tests.a.test_y", "tests.a.test_y.x"]),
    ("from tests.support import ROOT, workers as w\nfrom tests import support\nimport tests.support.files\n"
     "import torch\nfrom lrwa_fast import testing\n", []),
])
def test_imports_of_other_test_modules_are_found(tmp_path, source, wrong):
    for name in ("a/test_x.py", "a/test_y.py", "helpers.py", "workers.py", "support/files.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("", encoding="utf-8")
    (tmp_path / "a" / "test_x.py").write_text(source, encoding="utf-8")
    assert foreign_test_imports(tmp_path / "a" / "test_x.py", tmp_path) == wrong


def test_no_test_module_imports_another():
    """Test modules share ``tests.support`` and the fixtures of ``conftest.py``, nothing else of each other."""
    found = {str(p.relative_to(ROOT)): foreign_test_imports(p, ROOT / "tests") for p in (ROOT / "tests").rglob("*.py")}
    assert not {path: names for path, names in found.items() if names}


def test_the_tests_are_a_package_and_their_helpers_are_in_its_support():
    """Every folder of the tests is a package, so each test module has a name of its own (``tests.ops.test_x``)
    and the repository root is on ``sys.path``; a file that is no test module, ``conftest.py`` or
    ``__init__.py`` lives in ``tests/support/``."""
    tests = ROOT / "tests"
    folders = {p.parent for p in tests.rglob("*.py")}
    assert not sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").exists())
    others = [str(p.relative_to(ROOT)) for p in tests.rglob("*.py") if not p.is_relative_to(tests / "support")
              and p.name not in ("conftest.py", "__init__.py") and not p.name.startswith(("test_", "bench_"))]
    assert not others


def test_test_files_follow_the_subpackages():
    folders = {p.parent.name for p in (ROOT / "tests").rglob("test_*.py") if p.parent != ROOT / "tests"}
    assert folders <= set(LAYER), folders - set(LAYER)
