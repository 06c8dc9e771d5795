"""The sidebar model selector (shipped model and finished training runs) and the caches behind it.

A model is identified by its folder plus a stamp (modification times of its files), so a run that
finishes again in the same folder is reloaded rather than served stale from the cache. The stamp is
a plain ``version`` argument of each cached function: Streamlit leaves ``_``-named arguments out of
the cache key, which would make it useless.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard import access, paths
from dashboard.ui import one_line
from galaxy_core import locations
from galaxy_core.errors import GalaxyError
from galaxy_core.evaluate.report import REPORT_FILE, load_report
from galaxy_core.model.store import META_FILE, WEIGHTS_FILE, LoadedModel, load_model, report_dir
from galaxy_core.train import run_folder

SELECT_KEY = "model_choice"
PATH_KEY = "model_path"


@dataclass(frozen=True)
class ModelChoice:
    label: str
    path: Path

    @property
    def key(self) -> str:
        """Cache key: folder and stamp."""
        return f"{self.path.resolve()}@{stamp(self.path)}"


def is_model_dir(folder: Path) -> bool:
    return (folder / META_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def stamp(folder: Path) -> float:
    total = 0.0
    for name in (META_FILE, WEIGHTS_FILE):
        try:
            total += (folder / name).stat().st_mtime
        except OSError:
            pass
    return total


def run_models(runs: Path) -> list[tuple[str, Path]]:
    """Finished runs: runs/<name>/model and, for multi-split runs, runs/<name>/split_k/model."""
    found: list[tuple[str, Path]] = []
    if not runs.is_dir():
        return found
    for run in sorted(p for p in runs.iterdir() if p.is_dir()):
        splits = sorted(run.glob(f"{run_folder.SPLIT_PREFIX}*"))
        candidates = [("", run_folder.model_dir(run))] + [(f"/{s.name}", run_folder.model_dir(s))
                                                          for s in splits]
        for suffix, folder in candidates:
            if is_model_dir(folder):
                found.append((f"{run.name}{suffix}", folder))
    return found


def discover() -> list[ModelChoice]:
    """Every model the selector offers, the default first."""
    choices: list[ModelChoice] = []
    default, shipped = locations.model_dir(), locations.SHIPPED_MODEL_DIR
    if is_model_dir(default):
        where = "shipped" if _same(default, shipped) else "GALAXY_MODEL_DIR"
        choices.append(ModelChoice(f"{default.name} ({where})", default))
    if not _same(default, shipped) and is_model_dir(shipped):
        choices.append(ModelChoice(f"{shipped.name} (shipped)", shipped))
    for name, folder in run_models(locations.runs_dir()):
        choices.append(ModelChoice(f"Run {name}", folder))
    unique: dict[Path, ModelChoice] = {}
    for choice in choices:
        unique.setdefault(choice.path.resolve(), choice)
    return list(unique.values())


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def sidebar_selector() -> ModelChoice | None:
    """Draw the selector in the sidebar and remember the choice for the pages."""
    choices = discover()
    with st.sidebar:
        if not choices:
            st.session_state.pop(PATH_KEY, None)
            st.warning("No shipped model yet: train one on the Train page.")
            st.caption(f"Looked for {access.shown_path(locations.model_dir(), 'a model')} "
                       "and finished runs in "
                       f"{access.shown_path(locations.runs_dir(), 'the runs folder')}.")
            return None
        labels = [c.label for c in choices]
        if st.session_state.get(SELECT_KEY) not in labels:
            st.session_state[SELECT_KEY] = labels[0]
        runs = access.shown_path(locations.runs_dir(), "the runs folder")  # path: local only
        label = st.selectbox("Model", labels, key=SELECT_KEY,
                             help=f"The shipped model and every finished run in {runs}.")
        choice = choices[labels.index(label)]
        st.session_state[PATH_KEY] = str(choice.path)
        meta = read_meta(choice)
        if meta:
            st.caption(model_caption(meta))
    return choice


def model_caption(meta: dict[str, Any]) -> str:
    parts = [str(meta.get("arch", "?")), f"{meta.get('input_size', '?')} px input"]
    test = (meta.get("metrics") or {}).get("test") or {}
    if test.get("accuracy") is not None:
        parts.append(f"test accuracy {test['accuracy']:.1%}")
    if test.get("macro_f1") is not None:
        parts.append(f"macro-F1 {test['macro_f1']:.3f}")
    return " · ".join(parts)


def current() -> ModelChoice | None:
    """The model selected in the sidebar on this run of the script."""
    raw = st.session_state.get(PATH_KEY)
    if not raw:
        return None
    folder = Path(raw)
    if not is_model_dir(folder):
        return None
    return ModelChoice(st.session_state.get(SELECT_KEY, folder.name), folder)


def no_model_message() -> None:
    st.info("No shipped model yet: train one on the Train page, then pick it in the sidebar.")
    st.page_link("pages/train.py", label="Go to the Train page", icon=":material/model_training:")


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _load(path: str, version: float) -> LoadedModel:
    return load_model(path)


@st.cache_resource(max_entries=8)
def _lock(path: str, version: float) -> threading.Lock:
    return threading.Lock()


def load(choice: ModelChoice | None) -> LoadedModel | None:
    """The loaded network, or None after showing why not (one line)."""
    if choice is None:
        no_model_message()
        return None
    try:
        return _load(str(choice.path.resolve()), stamp(choice.path))
    except Exception as exc:  # a corrupt or foreign folder must not take the page down
        if not access.is_local():  # the reason names the server's files
            st.error("The selected model cannot be loaded on the server; the computer running "
                     "the dashboard shows why.")
        elif isinstance(exc, GalaxyError):
            st.error(f"The model in {paths.show(choice.path)} cannot be loaded: {one_line(exc)}")
        else:
            st.error(f"The model in {paths.show(choice.path)} cannot be loaded "
                     f"({type(exc).__name__}: {one_line(exc)})")
    return None


def current_loaded() -> tuple[ModelChoice, LoadedModel]:
    """The selected model, loaded; stops the page (after saying why) when there is none."""
    choice = current()
    loaded = load(choice)
    if choice is None or loaded is None:
        st.stop()
    return choice, loaded


def lock(loaded: LoadedModel) -> threading.Lock:
    """One lock per model: inference and Grad-CAM change the network's memory layout and hooks,
    so two sessions must not run them on the same cached network at once."""
    return _lock(str(Path(loaded.path).resolve()), stamp(Path(loaded.path)))


def model_key(loaded: LoadedModel) -> str:
    return f"{Path(loaded.path).resolve()}@{stamp(Path(loaded.path))}"


@st.cache_data(max_entries=32, show_spinner=False)
def _read_json(path: str, version: float) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_meta(choice: ModelChoice) -> dict[str, Any]:
    """model.json without loading the weights ({} if unreadable)."""
    path = choice.path / META_FILE
    try:
        return _read_json(str(path), path.stat().st_mtime)
    except (OSError, ValueError):
        return {}


@st.cache_data(max_entries=16, show_spinner=False)
def _report(folder: str, version: float) -> dict[str, Any] | None:
    return load_report(Path(folder))


def report_version(folder: Path, part: str) -> float | None:
    """When the stored report of one part was written (None if there is none): the cache key for
    anything derived from it."""
    try:
        return (report_dir(folder, part) / REPORT_FILE).stat().st_mtime
    except OSError:
        return None


def report(choice: ModelChoice, part: str = "test") -> dict[str, Any] | None:
    """The stored evaluation report of one part (test or val); None if the model has none."""
    version = report_version(choice.path, part)
    if version is None:
        return None
    return _report(str(report_dir(choice.path, part)), version)


def report_parts(choice: ModelChoice) -> list[str]:
    return [p for p in ("test", "val") if (report_dir(choice.path, p) / REPORT_FILE).is_file()]


def splits_summary(choice: ModelChoice, meta: dict[str, Any]) -> dict[str, Any] | None:
    """Spread across splits: model.json's ``splits`` or the run's splits_summary.json."""
    if isinstance(meta.get("splits"), dict) and meta["splits"]:
        return meta["splits"]
    for folder in (choice.path.parent, choice.path.parent.parent):
        path = folder / run_folder.SPLITS_SUMMARY_FILE
        if path.is_file():
            try:
                data = _read_json(str(path), path.stat().st_mtime)
            except (OSError, ValueError):
                return None
            return data if isinstance(data, dict) and data else None
    return None
