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
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL_DIR = PROJECT_ROOT / "models" / "resnet50_gz1"


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else default


def default_data_root() -> Path:
    """Where the real data lives: ``$GALAXY_DATA`` if set, else ``../shared/data`` beside the repo."""
    return _env_path("GALAXY_DATA", PROJECT_ROOT.parent / "shared" / "data")


def model_dir() -> Path:
    """The model used when none is named: ``$GALAXY_MODEL_DIR``, else the shipped one."""
    return _env_path("GALAXY_MODEL_DIR", SHIPPED_MODEL_DIR)


def runs_dir() -> Path:
    return _env_path("GALAXY_RUNS_DIR", PROJECT_ROOT / "runs")


def prepared_dir() -> Path:
    return _env_path("GALAXY_PREPARED", PROJECT_ROOT / "data" / "gz1")


def classroom_db() -> Path:
    """The classroom's one SQLite file (classes, students, answers): under the project's
    writable, git-ignored data folder unless ``$GALAXY_CLASSROOM_DB`` says otherwise."""
    return _env_path("GALAXY_CLASSROOM_DB", PROJECT_ROOT / "data" / "classroom.sqlite3")
