"""Where the dashboard looks for models, runs and data. Every location can be overridden with an
environment variable, so the same app serves a fresh clone, CI and a survey team's own data:

==================  =========================================  =================================
variable            meaning                                    default
==================  =========================================  =================================
GALAXY_MODEL_DIR    model folder selected at start             models/resnet50_gz1 (shipped)
GALAXY_RUNS_DIR     training runs (runs/<name>/model)          <repo>/runs
GALAXY_DATA         real data root (gz1_sdss/, seed_examples/) ../shared/data
GALAXY_PREPARED     prepared dataset (``galaxy prepare``)       <repo>/data/gz1
==================  =========================================  =================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from galaxy_core.locations import SHIPPED_MODEL_DIR, default_data_root

REPO = Path(__file__).resolve().parent.parent

PREPARE_COMMAND = "galaxy prepare --labels {labels} --images {images} --out {out} --splits {splits}"
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".fits", ".fit", ".fts")


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else default


def model_dir() -> Path:
    """The model selected when the app opens."""
    return _env_path("GALAXY_MODEL_DIR", SHIPPED_MODEL_DIR)


def shipped_model_dir() -> Path:
    return SHIPPED_MODEL_DIR


def runs_dir() -> Path:
    return _env_path("GALAXY_RUNS_DIR", REPO / "runs")


def data_root() -> Path:
    return default_data_root()


def prepared_dir() -> Path:
    return _env_path("GALAXY_PREPARED", REPO / "data" / "gz1")


def gz1_images() -> Path:
    return data_root() / "gz1_sdss" / "images"


def gz1_labels() -> Path:
    return data_root() / "gz1_sdss" / "gz1_classes.csv"


def show(path: Path | str) -> str:
    """A path as people should read it: relative to the repository when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO))
    except (ValueError, OSError):
        return str(path)


def prepare_command(out: Path | None = None, splits: int = 3) -> str:
    """The ``galaxy prepare`` line that (re)builds the prepared folder from the real data."""
    root = data_root()
    try:
        same = root.resolve() == (REPO.parent / "shared" / "data").resolve()
    except OSError:
        same = False
    base = "../shared/data" if same else str(root)
    return PREPARE_COMMAND.format(labels=f"{base}/gz1_sdss/gz1_classes.csv",
                                  images=f"{base}/gz1_sdss/images",
                                  out=show(out or prepared_dir()), splits=splits)


def report_image_dir(report: dict[str, Any]) -> Path | None:
    """Folder holding a report's galaxy images on this machine: where they were at training
    time, else the configured data root; None when neither exists."""
    for candidate in (report.get("image_dir"), gz1_images()):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def set_data_hint() -> str:
    return ("Set GALAXY_DATA to the folder that holds gz1_sdss/images (for example "
            "`GALAXY_DATA=../shared/data make run`) and reload.")


def examples() -> list[tuple[str, Path, str]]:
    """Example galaxies shipped beside the repo: (display name, path, known label or '')."""
    out: list[tuple[str, Path, str]] = []
    seed = data_root() / "seed_examples"
    if seed.is_dir():
        labels: dict[str, str] = {}
        table = seed / "labels.csv"
        if table.is_file():
            for line in table.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
                name, _, label = line.partition(",")
                labels[name.strip()] = label.strip()
        for path in sorted(seed.iterdir()):
            if path.suffix.lower() in EXAMPLE_SUFFIXES:
                label = labels.get(path.name, "")
                shown = f"{path.name} (labelled {label})" if label else path.name
                out.append((shown, path, label))
    gz2 = data_root() / "gz2_unlabelled"
    if gz2.is_dir():
        for path in sorted(gz2.iterdir()):
            if path.suffix.lower() in EXAMPLE_SUFFIXES:
                out.append((f"GZ2 cutout {path.name}", path, ""))
    return out
