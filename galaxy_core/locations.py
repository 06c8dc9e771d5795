"""Default locations of models, runs and data, for the CLI and the dashboard alike.

One base for every default, the project checkout, so ``galaxy train`` run from any folder and the
dashboard started from any folder look in the same places; every location can be overridden
with an environment variable, so the same code serves a fresh clone, CI and a survey team's own
data:

==================  =========================================  =================================
variable            meaning                                    default
==================  =========================================  =================================
GALAXY_MODEL_DIR    model used when none is named              models/resnet50_gz1 (shipped)
GALAXY_RUNS_DIR     training runs (runs/<name>/model)          <repo>/runs
GALAXY_DATA         real data root (gz1_sdss/, seed_examples/) ../shared/data beside the repo
GALAXY_PREPARED     prepared dataset (``galaxy prepare``)       <repo>/data/gz1
GALAXY_CLASSROOM_DB the classroom's SQLite file                <repo>/data/classroom.sqlite3
==================  =========================================  =================================

Installed from a wheel rather than run from a checkout, the shipped model comes from the
package itself and ``<repo>`` above means ``~/.local/share/galaxy-morphology``
(``$XDG_DATA_HOME``); see :data:`WORK_ROOT`.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: What a wheel (``pip install``) carries beside the code: the shipped model under
#: ``models/resnet50_gz1`` and the dashboard (app.py, pages/, dashboard/, .streamlit/), copied
#: there by ``setup.py`` when the wheel is built. A checkout has no such folder.
BUNDLE_DIR = Path(__file__).resolve().parent / "_bundle"
#: Running from a checkout (``make run``, an editable install) rather than an installed wheel.
IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file()
SHIPPED_MODEL_DIR = (PROJECT_ROOT if IN_CHECKOUT else BUNDLE_DIR) / "models" / "resnet50_gz1"
#: Base of the writable defaults (runs, prepared data, the classroom file): the checkout, or for
#: an installed package (whose folder may not be writable) ``$XDG_DATA_HOME/galaxy-morphology``,
#: by default ``~/.local/share/galaxy-morphology``.
WORK_ROOT = PROJECT_ROOT if IN_CHECKOUT else Path(
    os.environ.get("XDG_DATA_HOME", "").strip() or Path.home() / ".local" / "share"
) / "galaxy-morphology"


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else default


def default_data_root() -> Path:
    """Where the real data lives: ``$GALAXY_DATA`` if set, else ``../shared/data`` beside the repo."""
    base = PROJECT_ROOT.parent if IN_CHECKOUT else WORK_ROOT
    return _env_path("GALAXY_DATA", base / "shared" / "data")


def model_dir() -> Path:
    """The model used when none is named: ``$GALAXY_MODEL_DIR``, else the shipped one."""
    return _env_path("GALAXY_MODEL_DIR", SHIPPED_MODEL_DIR)


def runs_dir() -> Path:
    return _env_path("GALAXY_RUNS_DIR", WORK_ROOT / "runs")


def prepared_dir() -> Path:
    return _env_path("GALAXY_PREPARED", WORK_ROOT / "data" / "gz1")


def classroom_db() -> Path:
    """The classroom's one SQLite file (classes, students, answers): under the project's
    writable, git-ignored data folder unless ``$GALAXY_CLASSROOM_DB`` says otherwise."""
    return _env_path("GALAXY_CLASSROOM_DB", WORK_ROOT / "data" / "classroom.sqlite3")
