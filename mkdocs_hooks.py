"""MkDocs hooks for the manual (mkdocs.yml ``hooks:``).

- The command-line reference is generated here from ``galaxy_core.cli.build_parser()`` every
  time the pages are built, so it cannot drift from the code: ``docs/cli.md`` holds the marker
  :data:`CLI_MARKER`, replaced by every command's ``--help``.
- Figures the model writes (the shipped model's coverage plot) are taken from the model folder
  at build time, so the manual shows the model that is shipped today.
- ``{{ version }}`` in a page becomes ``galaxy_core.__version__``, the one place the version is
  written.
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager
from pathlib import Path

from mkdocs.structure.files import File

CLI_MARKER = "<!-- galaxy-cli-reference -->"
HELP_WIDTH = 100
MODEL_FIGURES = {"model/coverage.png": ("report_test", "coverage.png")}
"""Site path -> file inside the shipped model folder."""


@contextmanager
def _columns(width: int):
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference() -> str:
    """Markdown: ``galaxy --help`` and each subcommand's ``--help``, as the parsers print them.
    Paths of the machine that builds the pages are shown relative to the project."""
    from galaxy_core import locations
    from galaxy_core.cli import build_parser

    with _columns(HELP_WIDTH):
        parser = build_parser()
        helps = {"galaxy": parser.format_help()}
        helps.update({f"galaxy {name}": sub.format_help()
                      for name, sub in _subcommands(parser).items()})
    root = locations.PROJECT_ROOT
    parts = ["Generated from the parsers in `galaxy_core/cli.py` when this manual was built, so "
             "it always matches the code. Defaults that depend on the machine (the number of "
             "CPUs, folders) are those of the machine that built it; `<project>` is the "
             "project folder.\n"]
    for title, text in helps.items():
        text = text.replace(str(root.parent / "shared"), "<project>/../shared")
        text = text.replace(str(root), "<project>")
        parts += [f"### `{title}`\n", "```text", text.rstrip(), "```\n"]
    return "\n".join(parts)


def on_files(files, config):
    from galaxy_core import locations

    for site_path, (folder, name) in MODEL_FIGURES.items():
        source = locations.SHIPPED_MODEL_DIR / folder / name
        if source.is_file():
            files.append(File.generated(config, site_path, abs_src_path=str(source)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    from galaxy_core import __version__

    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return markdown.replace("{{ version }}", __version__)


__all__ = ["cli_reference", "CLI_MARKER"]
