"""Sphinx directives for the reference pages generated from the code (the tables come from
:mod:`lrwa_tables`): ``config-fields MODULE.CLASS`` and ``cli-reference``."""

from __future__ import annotations

import importlib
import io
from typing import Any

from docutils import nodes
from docutils.core import publish_doctree
from lrwa_tables import cli_lines, config_table
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


class ConfigFields(SphinxDirective):
    """``config-fields MODULE.CLASS``: the table of a config dataclass's fields."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module, _, name = self.arguments[0].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return self._parsed(config_table(cls))

    def _parsed(self, lines: list[str]) -> list[nodes.Node]:
        """The generated reStructuredText as nodes (parsed on its own: the page around it is MyST Markdown);
        any docutils warning fails the build as Sphinx's would."""
        document = publish_doctree("\n".join(lines), settings_overrides={"halt_level": 2, "report_level": 2,
                                                                          "warning_stream": io.StringIO()})
        return list(document.children)


class CliReference(ConfigFields):
    """``cli-reference``: every command and option of ``lrwa-fast``, from its parser."""

    required_arguments = 0

    def run(self) -> list[nodes.Node]:
        from lrwa_fast.apps.cli import build_parser

        return self._parsed(cli_lines(build_parser()))


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("config-fields", ConfigFields)
    app.add_directive("cli-reference", CliReference)
    return {"parallel_read_safe": True, "version": "1"}
