"""Where the dashboard finds things, as people should read them. The default locations of models,
runs, data and the prepared dataset (and their environment variables: GALAXY_MODEL_DIR,
GALAXY_RUNS_DIR, GALAXY_DATA, GALAXY_PREPARED) are ``galaxy_core.locations``, shared with the CLI;
this module adds the layout of the real data root (``gz1_sdss/``, ``seed_examples/``,
``gz2_unlabelled/``) and presentation helpers: paths relative to the repository, the
``galaxy prepare`` line, the example galaxies.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from galaxy_core.data.imageio import IMAGE_SUFFIXES
from galaxy_core.locations import PROJECT_ROOT, default_data_root, prepared_dir

PREPARE_COMMAND = "galaxy prepare --labels {labels} --images {images} --out {out} --splits {splits}"


def gz1_images() -> Path:
    return default_data_root() / "gz1_sdss" / "images"


def gz1_labels() -> Path:
    return default_data_root() / "gz1_sdss" / "gz1_classes.csv"


def show(path: Path | str) -> str:
    """A path as people should read it: relative to the repository when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except (ValueError, OSError):
        return str(path)


def command_path(path: Path | str) -> str:
    """A path as a command run in the repository spells it: relative when it lies in or beside
    the repository (``../shared/data``), else absolute."""
    absolute = os.path.abspath(path)
    try:
        Path(absolute).relative_to(PROJECT_ROOT.parent)
    except ValueError:
        return str(path)
    return Path(os.path.relpath(absolute, PROJECT_ROOT)).as_posix()


def prepare_command(out: Path | None = None, splits: int = 3) -> str:
    """The ``galaxy prepare`` line that (re)builds the prepared folder from the real data."""
    return PREPARE_COMMAND.format(labels=command_path(gz1_labels()),
                                  images=command_path(gz1_images()),
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
    seed = default_data_root() / "seed_examples"
    if seed.is_dir():
        labels: dict[str, str] = {}
        table = seed / "labels.csv"
        if table.is_file():
            for line in table.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
                name, _, label = line.partition(",")
                labels[name.strip()] = label.strip()
        for path in sorted(seed.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                label = labels.get(path.name, "")
                shown = f"{path.name} (labelled {label})" if label else path.name
                out.append((shown, path, label))
    gz2 = default_data_root() / "gz2_unlabelled"
    if gz2.is_dir():
        for path in sorted(gz2.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                out.append((f"GZ2 cutout {path.name}", path, ""))
    return out
