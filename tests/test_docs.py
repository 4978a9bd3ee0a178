"""The documentation as a newcomer meets it: the README fits a few screens, every Python example of the README
and the getting-started page runs as written, the generated configuration reference lists every field, and
the error catalogue quotes the messages the library gives."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import runpy
import subprocess
import sys

import pytest

from lrwa_fast import DFADConfig, LRwAConfig, OptimizerConfig
from lrwa_fast.data import IMAGE_SETS
from lrwa_fast.training.settings import validate
from tests.support import ROOT, subprocess_env

PAGES = [ROOT / "README.md", ROOT / "docs" / "getting-started.md"]


def python_blocks(path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_readme_fits_a_few_screens():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


VERDICT = re.compile(r"^\**(better|worse|not distinguishable)\**$")


def test_every_verdict_in_the_readme_carries_its_detectable_difference():
    """A verdict without the difference the seeds could have detected reads as more than it is."""
    rows = [line.split("|")[1:-1] for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("|")]
    verdicts = 0
    for cells in rows:
        for i, cell in enumerate(c.strip() for c in cells):
            if VERDICT.match(cell):
                verdicts += 1
                assert re.fullmatch(r"±\d+\.\d+", cells[i - 1].strip()), cells
    assert verdicts >= 10


@pytest.mark.parametrize(("page", "index"), [(p, i) for p in PAGES for i in range(len(python_blocks(p)))],
                         ids=lambda v: v.name if hasattr(v, "name") else str(v))
def test_every_python_example_runs_as_written(tmp_path, page, index):
    """In a fresh interpreter, from an empty folder (files an example writes land there), the repository on the
    path as it is from the repository root."""
    code = python_blocks(page)[index]
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_configuration_reference_lists_every_field_with_its_comment():
    """Read from the tables' module, which needs no docs toolchain (the Sphinx directive renders the same lines)."""
    spec = importlib.util.spec_from_file_location("lrwa_tables", ROOT / "docs" / "_ext" / "lrwa_tables.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    table = "\n".join(reference.config_table(LRwAConfig))
    for f in dataclasses.fields(LRwAConfig):
        assert f"``{f.name}``" in table, f.name
    assert "λ of the inner step" in table and "``'exact'``" in table
    assert "``OptimizerConfig(name='adam', lr=0.001, weight_decay=0.0)``" in table
    assert "learning rate" in "\n".join(reference.config_table(OptimizerConfig))


@pytest.mark.parametrize("fields", [dict(inner_lr=-1, meta_mode="second"), dict(memory_draw="entry"),
                                    dict(bn_mode="joint"), dict(precision="fp8"),
                                    dict(ema_decay=1.0, ema_share=1.5, probe_every=-1)])
def test_the_error_catalogue_quotes_what_the_library_says(fields):
    catalogue = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    cls = LRwAConfig if set(fields) & {"inner_lr", "memory_draw", "bn_mode", "meta_mode"} else DFADConfig
    with pytest.raises(ValueError) as caught:
        validate(cls(**fields))
    assert f"`{caught.value}`" in catalogue


def _readme_command(which: str) -> str:
    reader = runpy.run_path(str(ROOT / ".ci" / "readme_command"))
    return reader["command"]((ROOT / "README.md").read_text(encoding="utf-8"), which)


def test_ci_runs_the_readmes_two_commands_as_written():
    """CI reads both set-up commands from the README (``.ci/readme_command``) and runs each in a fresh virtual
    environment: the test command as it is, the demo command with ``--fast``."""
    tests, demo = _readme_command("tests"), _readme_command("demo")
    assert '-e ".[test]"' in tests and tests.endswith("python -m pytest")
    assert " -e . " in demo and demo.endswith("lrwa-fast demo")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "readme tests .venv-ci" in ci and "readme demo .venv-demo --fast" in ci
    assert "python3 -m venv" in ci and "system-site-packages" not in ci.replace("no system site-packages", "")


def test_the_readme_command_reader_refuses_a_block_of_two_lines():
    reader = runpy.run_path(str(ROOT / ".ci" / "readme_command"))
    with pytest.raises(SystemExit, match="one command line"):
        reader["command"]("**Run the tests**\n\n```bash\npip install x\npython -m pytest\n```\n", "tests")
    with pytest.raises(SystemExit, match="no '\\*\\*Run the demo\\*\\*' heading"):
        reader["command"]("nothing here", "demo")


def test_the_datasets_page_quotes_every_image_set_as_the_library_has_it():
    rows = {cells[0].strip(" `"): cells for line in (ROOT / "docs" / "datasets.md").read_text(encoding="utf-8")
            .splitlines() if line.startswith("| `") for cells in [line.split("|")[1:-1]]}
    assert sorted(rows) == sorted(IMAGE_SETS)
    for name, spec in IMAGE_SETS.items():
        classes, size, stats = (cell.strip() for cell in rows[name][1:4])
        assert (int(classes), int(size)) == (spec.num_classes, spec.image_size), name
        assert [float(v) for v in re.findall(r"\d+\.\d+", stats)] == [*spec.mean, *spec.std], name
