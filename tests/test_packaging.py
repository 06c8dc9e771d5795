"""What pyproject.toml promises, checked against the code and the files beside it:

- every third-party module the code imports is a declared requirement (core, or an extra for
  what is optional), and the dashboard's imports are in core or ``app``;
- the versions requirements.txt pins (the ones every test runs with) satisfy every bound;
- one version: galaxy_core.__version__ (which pyproject reads), ``galaxy --version``, the
  shipped model's card and model.json, CITATION.cff and the CHANGELOG's latest release.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from galaxy_core import __version__, locations

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
CODE = {"galaxy_core": REPO / "galaxy_core", "dashboard": REPO / "dashboard",
        "pages": REPO / "pages", "app": REPO / "app.py"}


def _requirements(group: str | None) -> list[Requirement]:
    texts = PROJECT["dependencies"] if group is None else \
        PROJECT["optional-dependencies"][group]
    return [Requirement(t) for t in texts]


def _names(reqs: list[Requirement]) -> set[str]:
    return {_canon(r.name) for r in reqs}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_levels(path: Path) -> set[str]:
    files = [path] if path.is_file() else sorted(path.rglob("*.py"))
    found = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in CODE}


@functools.cache
def _installed_modules() -> dict[str, list[str]]:
    return md.packages_distributions()


def _distribution_of(module: str) -> str:
    dists = _installed_modules().get(module)
    assert dists, f"{module} is imported but no installed distribution provides it"
    return _canon(dists[0])


def test_every_import_is_a_declared_requirement() -> None:
    core = _names(_requirements(None))
    extras = {name: _names(_requirements(name)) for name in PROJECT["optional-dependencies"]}
    anywhere = core.union(*extras.values())
    missing = {}
    for part, path in CODE.items():
        allowed = anywhere if part == "galaxy_core" else core | extras["app"]
        for module in _imported_top_levels(path):
            if _distribution_of(module) not in allowed:
                missing.setdefault(part, []).append(module)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_core_requirements_are_all_used() -> None:
    """No core dependency that nothing imports (plotly was one: only the dashboard draws)."""
    used = {_distribution_of(m) for m in _imported_top_levels(REPO / "galaxy_core")}
    assert _names(_requirements(None)) <= used, _names(_requirements(None)) - used


def test_the_required_extras_exist() -> None:
    assert {"app", "onnx", "ray", "parquet", "test", "docs"} <= set(
        PROJECT["optional-dependencies"])


def test_every_bound_holds_for_the_pinned_versions() -> None:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (version,) = [s.version for s in req.specifier if s.operator == "=="]
            pins[_canon(req.name)] = version
    checked, bad = 0, []
    for group in [None, *PROJECT["optional-dependencies"]]:
        for req in _requirements(group):
            if _canon(req.name) == _canon(PROJECT["name"]):
                continue  # the test extra names the other extras
            assert req.specifier, f"{req} has no version bounds"
            assert any(s.operator == "<" for s in req.specifier), f"{req} has no upper bound"
            pinned = pins.get(_canon(req.name))
            assert pinned, f"{req.name} is required but requirements.txt does not pin it"
            checked += 1
            if not req.specifier.contains(pinned, prereleases=True):
                bad.append(f"{req} excludes the pinned {pinned}")
    assert checked >= 25 and not bad, bad


def test_version_is_read_from_galaxy_core() -> None:
    assert "version" in PROJECT["dynamic"] and "version" not in PROJECT
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "galaxy_core.__version__"}


def test_cli_version_agrees() -> None:
    out = subprocess.run([sys.executable, "-m", "galaxy_core.cli", "--version"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == f"galaxy {__version__}", out


def test_shipped_model_records_the_same_version() -> None:
    import json
    folder = locations.SHIPPED_MODEL_DIR
    card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert re.search(rf"galaxy_core {re.escape(__version__)}\b", card), \
        "the model card's 'Versions: galaxy_core X' differs from galaxy_core.__version__"
    meta = json.loads((folder / "model.json").read_text())
    assert meta["versions"]["galaxy_core"] == __version__


def test_citation_and_changelog_carry_the_version() -> None:
    cff = (REPO / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(rf'^version: "?{re.escape(__version__)}"?$', cff, re.M)
    for needed in ("Lintott", "Willett", "Sloan Digital Sky Survey", "ESA/Hubble"):
        assert needed in cff, needed
    releases = re.findall(r"^## \[([^\]]+)\]", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert releases and releases[0] in (__version__, "Unreleased"), releases
    assert __version__ in releases


@pytest.mark.parametrize("name", ["LICENSE", "CITATION.cff", "CHANGELOG.md"])
def test_the_files_the_ecosystem_expects_exist(name: str) -> None:
    assert (REPO / name).stat().st_size > 200
    if name == "LICENSE":
        assert (REPO / name).read_text().startswith("MIT License")
        assert PROJECT["license"] == "MIT"
