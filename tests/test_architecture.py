"""The stage order, checked on the source: which module may import which (docs/architecture.md).

Every ``.py`` under ``galaxy_core/``, ``dashboard/``, ``pages/`` and ``app.py`` is parsed with
``ast``; every import counts, at module level or hidden inside a function, ``import x`` or
``from x import y``, relative ones resolved, and ``importlib.import_module("x")`` with a literal
name. Three rules:

(a) a galaxy_core stage imports only foundation modules and the same or earlier stages; the
    foundation imports no stage; the shell (``galaxy_core/cli.py``) may import any of them;
(b) galaxy_core never imports the UI toolkits or the dashboard (``FORBIDDEN_IN_CORE``);
(c) no import cycles among the project's modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# --- the single table: docs/architecture.md states the same order ---------------------------
CORE = "galaxy_core"
STAGES: tuple[str, ...] = ("data", "model", "train", "evaluate", "release", "explain", "predict",
                           "classroom")
"""galaxy_core's stages in pipeline order: each may import only itself and the stages before."""
FOUNDATION: tuple[str, ...] = ("galaxy_core", "galaxy_core.config", "galaxy_core.errors",
                               "galaxy_core.io_utils", "galaxy_core.locations")
"""Modules every stage may import; they import no stage."""
CORE_SHELLS: tuple[str, ...] = ("galaxy_core.cli", "galaxy_core.dashboard_launcher")
"""Command-line shell and the ``galaxy dashboard`` launcher: may import any galaxy_core module."""
FORBIDDEN_IN_CORE: tuple[str, ...] = ("streamlit", "plotly", "dashboard", "pages", "app")
"""Top-level packages galaxy_core must never import (the dashboard's world)."""
SCANNED: tuple[str, ...] = ("galaxy_core", "dashboard", "pages", "app.py")
"""What is parsed, relative to the repository root."""

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Import:
    source: str
    """Importing module, dotted."""
    target: str
    """Imported module, dotted: the deepest project module it names, else the name as written."""
    path: Path
    line: int
    text: str
    """The statement as written, for messages."""

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}: {self.text}"


# --- parsing ---------------------------------------------------------------------------------
def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for everything in ``SCANNED`` under ``root``."""
    found: dict[str, Path] = {}
    for entry in SCANNED:
        top = root / entry
        files = [top] if top.is_file() else sorted(top.rglob("*.py")) if top.is_dir() else []
        for path in files:
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve_relative(module: str, path: Path, level: int, name: str | None) -> str:
    package = module.split(".") if _is_package(path) else module.split(".")[:-1]
    if level > 1:
        package = package[:len(package) - (level - 1)]
    return ".".join(package + ([name] if name else []))


def _deepest_module(name: str, modules: Iterable[str]) -> str:
    """The longest prefix of ``name`` that is a project module (``name`` itself if none)."""
    known = set(modules)
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return name


def imports_of(module: str, path: Path, modules: Iterable[str]) -> Iterator[Import]:
    """Every import in one file, wherever it sits in the file."""
    modules = set(modules)
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    for node in ast.walk(tree):
        text = " ".join((ast.get_source_segment(source, node) or "").split()) \
            if isinstance(node, (ast.Import, ast.ImportFrom)) else None
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, _deepest_module(alias.name, modules), path, node.lineno,
                             text or f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, path, node.level, node.module) if node.level
                    else node.module or "")
            if base == "__future__":
                continue
            for alias in node.names:
                # "from pkg import sub" imports the submodule when there is one, else a name
                # defined in pkg's __init__.
                candidate = f"{base}.{alias.name}"
                target = candidate if candidate in modules else _deepest_module(base, modules)
                yield Import(module, target, path, node.lineno, text or f"from {base} import")
        elif isinstance(node, ast.Call) and _is_import_module_call(node):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield Import(module, _deepest_module(arg.value, modules), path, node.lineno,
                             f"import_module({arg.value!r})")


def _is_import_module_call(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in {"import_module", "__import__"} and bool(node.args)


def all_imports(root: Path) -> list[Import]:
    modules = module_files(root)
    return [imp for module, path in modules.items() for imp in imports_of(module, path, modules)]


# --- the rules -------------------------------------------------------------------------------
def room(module: str) -> tuple[str, int]:
    """(kind, rank) of a galaxy_core module: foundation -1, stages 0..6 in order, shell 99;
    ('outside', 0) for anything that is not galaxy_core."""
    if module in FOUNDATION:
        return "foundation", -1
    if module in CORE_SHELLS:
        return "shell", 99
    parts = module.split(".")
    if parts[0] != CORE:
        return "outside", 0
    if len(parts) >= 2 and parts[1] in STAGES:
        return "stage", STAGES.index(parts[1])
    return "unplaced", 0


def stage_order_violations(imports: Iterable[Import], root: Path) -> list[str]:
    problems = []
    for imp in imports:
        kind, rank = room(imp.source)
        if kind in ("outside", "shell") or imp.target.split(".")[0] != CORE:
            continue
        target_kind, target_rank = room(imp.target)
        if kind == "unplaced":
            problems.append(f"{imp.where(root)}  ({imp.source} is in no room: add it to the "
                            "table in tests/test_architecture.py and docs/architecture.md)")
        elif target_kind == "shell":
            problems.append(f"{imp.where(root)}  ({imp.source} imports the shell {imp.target})")
        elif target_kind == "unplaced":
            problems.append(f"{imp.where(root)}  ({imp.target} is in no room)")
        elif kind == "foundation" and target_kind != "foundation":
            problems.append(f"{imp.where(root)}  (foundation module {imp.source} imports the "
                            f"{STAGES[target_rank]} stage)")
        elif kind == "stage" and target_kind == "stage" and target_rank > rank:
            problems.append(f"{imp.where(root)}  ({STAGES[rank]} stage imports the later "
                            f"{STAGES[target_rank]} stage: {imp.target})")
    return problems


def forbidden_in_core(imports: Iterable[Import], root: Path) -> list[str]:
    return [f"{imp.where(root)}  (galaxy_core imports {imp.target.split('.')[0]})"
            for imp in imports
            if imp.source.split(".")[0] == CORE and imp.target.split(".")[0] in FORBIDDEN_IN_CORE]


def import_cycles(imports: Iterable[Import], root: Path) -> list[str]:
    """Strongly connected components of more than one module, and modules importing
    themselves, each reported with the imports that close the loop."""
    imports = list(imports)
    modules = set(module_files(root))
    edges: dict[str, list[Import]] = {m: [] for m in modules}
    for imp in imports:
        if imp.target in modules:
            edges[imp.source].append(imp)
    components = _strongly_connected(sorted(modules), lambda m: [i.target for i in edges[m]])
    problems = []
    for comp in components:
        members = set(comp)
        inner = [i for m in sorted(members) for i in edges[m] if i.target in members]
        if len(members) > 1 or inner:
            lines = "\n    ".join(f"{i.where(root)}  ({i.source} -> {i.target})" for i in inner)
            problems.append(f"import cycle among {', '.join(sorted(members))}:\n    {lines}")
    return problems


def _strongly_connected(nodes: list[str], successors) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(successors(start)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors(child))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp.append(member)
                        if member == node:
                            break
                    result.append(comp)
    return result


# --- the tests on this repository ------------------------------------------------------------
@pytest.fixture(scope="module")
def project_imports() -> list[Import]:
    return all_imports(REPO)


def test_every_galaxy_core_module_has_a_room() -> None:
    """A new subpackage or top-level module must be placed in the table, not slip past it."""
    unplaced = [m for m in module_files(REPO) if room(m)[0] == "unplaced"]
    assert not unplaced, f"modules in no room: {unplaced}"
    packages = {p.name for p in (REPO / CORE).iterdir()
                if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == set(STAGES), f"galaxy_core packages {sorted(packages)} vs {STAGES}"


def test_stages_import_only_earlier_stages(project_imports) -> None:
    problems = stage_order_violations(project_imports, REPO)
    assert not problems, "imports against the stage order:\n" + "\n".join(problems)


def test_galaxy_core_never_imports_the_dashboard_world(project_imports) -> None:
    problems = forbidden_in_core(project_imports, REPO)
    assert not problems, "galaxy_core imports UI code:\n" + "\n".join(problems)


def test_no_import_cycles(project_imports) -> None:
    problems = import_cycles(project_imports, REPO)
    assert not problems, "\n".join(problems)


def test_docs_state_the_same_order() -> None:
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert " -> ".join(STAGES) in doc
    for module in FOUNDATION[1:] + CORE_SHELLS:
        assert module.split(".")[-1] + ".py" in doc, module
    assert "tests/test_architecture.py" in doc


# --- the checker itself, on a planted tree: it must catch what it claims to -------------------
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_planted_violations(tmp_path: Path) -> None:
    _write(tmp_path, {
        "galaxy_core/__init__.py": "",
        "galaxy_core/config.py": "",
        "galaxy_core/errors.py": "def f():\n    from galaxy_core.train import loop\n",
        "galaxy_core/cli.py": "from galaxy_core.predict import classify\n",
        "galaxy_core/data/__init__.py": "",
        "galaxy_core/data/a.py": "from . import b\nfrom ..config import X\n",
        "galaxy_core/data/b.py": "def g():\n    from galaxy_core.data.a import h\n",
        "galaxy_core/model/__init__.py": "",
        "galaxy_core/model/m.py": "import galaxy_core.data.a\nfrom galaxy_core.evaluate import r\n",
        "galaxy_core/evaluate/__init__.py": "",
        "galaxy_core/evaluate/r.py": "import importlib\n"
                                     "def p():\n    import plotly.graph_objects as go\n"
                                     "    importlib.import_module('streamlit')\n",
        "galaxy_core/train/__init__.py": "",
        "galaxy_core/train/loop.py": "from galaxy_core.cli import main\n",
        "galaxy_core/predict/__init__.py": "",
        "galaxy_core/predict/classify.py": "from dashboard.ui import x\n",
        "galaxy_core/extra.py": "",
        "dashboard/__init__.py": "",
        "dashboard/ui.py": "from dashboard import models\n",
        "dashboard/models.py": "import streamlit\nfrom dashboard.ui import one_line\n",
        "app.py": "from dashboard import models\n",
    })
    imports = all_imports(tmp_path)
    order = "\n".join(stage_order_violations(imports, tmp_path))
    assert "galaxy_core/model/m.py:2" in order and "later evaluate stage" in order
    assert "galaxy_core/errors.py:2" in order and "foundation module" in order
    assert "galaxy_core/train/loop.py:1" in order and "imports the shell" in order
    assert "galaxy_core/model/m.py:1" not in order  # data is earlier than model
    assert "galaxy_core/cli.py" not in order  # the shell may import any stage
    assert "galaxy_core/data/a.py" not in order  # relative imports of its own stage/foundation
    forbidden = "\n".join(forbidden_in_core(imports, tmp_path))
    assert "galaxy_core/evaluate/r.py:3" in forbidden and "plotly" in forbidden
    assert "galaxy_core/evaluate/r.py:4" in forbidden and "streamlit" in forbidden
    assert "galaxy_core/predict/classify.py:1" in forbidden
    assert "dashboard/models.py" not in forbidden  # the dashboard may use streamlit
    cycles = import_cycles(imports, tmp_path)
    assert len(cycles) == 2, cycles
    joined = "\n".join(cycles)
    assert "galaxy_core.data.a, galaxy_core.data.b" in joined  # closed inside a function
    assert "galaxy_core/data/b.py:2" in joined
    assert "dashboard.models, dashboard.ui" in joined
    assert room("galaxy_core.extra") == ("unplaced", 0)


def test_checker_reports_self_import(tmp_path: Path) -> None:
    _write(tmp_path, {"galaxy_core/__init__.py": "",
                      "galaxy_core/config.py": "def f():\n    import galaxy_core.config\n"})
    (cycle,) = import_cycles(all_imports(tmp_path), tmp_path)
    assert "galaxy_core/config.py:2" in cycle
