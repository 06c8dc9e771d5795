"""The manual and the front page.

- ``mkdocs build --strict`` passes (about 5 s, so not marked slow): a warning (a broken internal link or anchor, a page missing
  from the nav, a docstring mkdocstrings cannot read) fails ``make test``, so a broken page
  fails CI;
- the command-line reference in the built site holds every subcommand and every option of
  ``galaxy_core.cli.build_parser()`` (it is generated from it by ``mkdocs_hooks.py``);
- the README is a front page (at most about 200 lines) whose links into the manual, the
  screenshots the browser tests retake and the files beside it all exist, with the
  "Headline numbers" section the model's figures are kept in.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from galaxy_core.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
PAGES = ("index", "getting-started", "dashboard", "classroom", "cli", "data", "survey-scale",
         "training", "model", "refuses", "architecture", "benchmarks", "api")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                             str(out)], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    assert not re.search(r"^(WARNING|ERROR) ", result.stderr, re.M), result.stderr[-4000:]
    return out


def test_every_page_is_built(site: Path) -> None:
    for page in PAGES:
        built = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert built.is_file(), page
    assert (site / "model" / "coverage.png").is_file()  # taken from the shipped model folder


def test_cli_reference_is_generated_from_the_parsers(site: Path) -> None:
    text = html.unescape(re.sub(r"<[^>]+>", "", (site / "cli" / "index.html").read_text()))
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(sub.choices) >= 6
    for name, command in sub.choices.items():
        assert f"usage: galaxy {name}" in text, name
        for action in command._actions:
            for flag in action.option_strings:
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), \
                    f"galaxy {name} {flag} is not in the generated reference"
    assert "--version" in text


def test_api_page_is_made_from_the_docstrings(site: Path) -> None:
    text = (site / "api" / "index.html").read_text()
    for module in ("galaxy_core.locations", "galaxy_core.cli", "galaxy_core.predict",
                   "galaxy_core.model"):
        assert f'id="{module}"' in text, module


def test_readme_is_a_front_page() -> None:
    lines = README.splitlines()
    assert len(lines) <= 200, len(lines)
    for heading in ("## Quick start", "## Install with pip", "## Headline numbers",
                    "## How to cite", "## The manual"):
        assert any(line.startswith(heading) for line in lines), heading
    assert "make run" in README and "make test" in README and "pip install" in README


def test_readme_links_resolve() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if "://" not in t]
    assert len(local) >= 15
    for target in local:
        assert (REPO / target).exists(), f"README links to a missing {target}"
    linked_pages = {Path(t).stem for t in local if t.startswith("docs/") and t.endswith(".md")}
    assert set(PAGES) - {"index"} <= linked_pages | {"index"}, set(PAGES) - linked_pages


def test_screenshots_are_the_ones_the_browser_tests_retake() -> None:
    """Pages and README show docs/*.png in place: the browser tests write them there."""
    shown = set(re.findall(r"docs/(\w+\.png)", README))
    for page in (REPO / "docs").glob("*.md"):
        shown |= set(re.findall(r"\]\((\w+\.png)\)", page.read_text(encoding="utf-8")))
    assert {"classify.png", "evaluate.png", "failures.png", "phone.png",
            "classroom_teacher.png", "classroom_student.png"} <= shown
    for name in shown:
        assert (REPO / "docs" / name).is_file(), name
