"""Where the dashboard finds things, as people should read them. The default locations of models,
runs, data and the prepared dataset (and their environment variables: GALAXY_MODEL_DIR,
GALAXY_RUNS_DIR, GALAXY_DATA, GALAXY_PREPARED) are ``galaxy_core.locations``, shared with the CLI;
this module adds the layout of the real data root (``gz1_sdss/``, ``seed_examples/``,
``gz2_unlabelled/``) and presentation helpers: paths relative to the repository, the
``galaxy prepare`` line, the example galaxies.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from galaxy_core.data.imageio import IMAGE_SUFFIXES
from galaxy_core.data.prepared import SUMMARY
from galaxy_core.errors import GalaxyError
from galaxy_core.io_utils import is_inside
from galaxy_core.locations import PROJECT_ROOT, default_data_root, prepared_dir

PREPARE_COMMAND = "galaxy prepare --source gz1 {labels} {images} --out {out} --splits {splits}"


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


def prepared_folders() -> list[Path]:
    """The prepared datasets the dashboard offers: GALAXY_PREPARED (first, whether it exists or
    not) and every sibling folder holding a ``galaxy prepare`` summary."""
    default = prepared_dir()
    found = [default]
    try:
        if default.parent.is_dir():
            found += sorted(p for p in default.parent.iterdir()
                            if p.is_dir() and p != default and (p / SUMMARY).is_file())
    except OSError:
        pass
    return found


def trusted_image_dirs() -> list[Path]:
    """The only folders galaxy images named in a report may be read from: the data root's
    ``gz1_sdss/images`` and the image folder of every prepared dataset (the operator chose
    those through GALAXY_DATA and GALAXY_PREPARED; a report file did not)."""
    found = [gz1_images()]
    for folder in prepared_folders():
        try:
            summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(summary, dict):
            continue
        named = summary.get("image_dirs")
        dirs = list(named.values()) if isinstance(named, dict) else [summary.get("image_dir")]
        found += [Path(d) for d in dirs if isinstance(d, str) and d]
    return found


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _within(folder: Path, roots: list[Path]) -> bool:
    try:
        return any(folder.resolve().is_relative_to(root.resolve()) for root in roots)
    except (OSError, ValueError, RuntimeError):
        return False


@dataclass
class ReportImages:
    """Where a report's galaxy images are read from on this machine."""

    folder: Path | None
    """A trusted folder that exists, or None."""
    refused: str = ""
    """Why the report's own ``image_dir`` was not used (empty when it was fine or absent)."""
    sources: dict[str, Path] = field(default_factory=dict)
    """A multi-source report's folders by source (``gz1/<file>`` is read from
    ``sources["gz1"]``): trusted folders that exist on this machine. A source missing here
    (the GZ2 images on a fresh clone) has its galaxies refused one by one, in one line."""

    def file(self, name: object) -> Path:
        """The file of one report row's ``image``, resolved as :func:`report_image` does,
        inside its source's folder when the name starts with a known source."""
        if isinstance(name, str):
            source, _, rest = name.partition("/")
            if rest and source in self.sources:
                return report_image(self.sources[source], rest)
            if rest and source in self.missing:
                raise GalaxyError(f"the {source} images are not on this machine, so galaxy "
                                  f"{_cut(rest, 60)} cannot be shown")
        if self.folder is None:
            raise GalaxyError("the galaxy images are not on this machine. " + set_data_hint())
        return report_image(self.folder, name)

    missing: tuple[str, ...] = ()
    """Sources the report names whose folders are not here."""

    def has(self, name: object) -> bool:
        """Whether this row's image can be shown here (a cheap check for filtering lists)."""
        try:
            return self.file(name).is_file()
        except (GalaxyError, OSError):
            return False


def report_images(report: dict[str, Any]) -> ReportImages:
    """The folder holding a report's galaxy images: the report's ``image_dir`` (where they were
    at training time) when it lies inside one of :func:`trusted_image_dirs`, else the configured
    ``gz1_sdss/images``; ``folder`` is None when neither exists. A report is a file anyone could
    edit, so an ``image_dir`` elsewhere (``/etc``) is refused, with the reason in ``refused``."""
    roots = trusted_image_dirs()
    sources, missing = _report_sources(report, roots)
    named = report.get("image_dir")
    refused = ""
    if named not in (None, ""):
        if not isinstance(named, str):
            refused = "The report's image_dir is not a folder name; it is ignored."
        elif not _is_dir(Path(named)):
            pass  # moved or another machine's folder: the configured one is tried below
        elif not _within(Path(named), roots):
            refused = (f"The report's image folder {_cut(named)} is refused: it is not one of "
                       "the data folders this dashboard reads (GALAXY_DATA's gz1_sdss/images "
                       "or a prepared dataset's images).")
        else:
            return ReportImages(Path(named), sources=sources, missing=missing)
    fallback = gz1_images()
    return ReportImages(fallback if fallback.is_dir() else None, refused, sources, missing)


def _report_sources(report: dict[str, Any],
                    roots: list[Path]) -> tuple[dict[str, Path], tuple[str, ...]]:
    """The trusted, present folder of each source a multi-source report names; GZ1's falls
    back to the configured ``gz1_sdss/images`` (the one every clone and CI have)."""
    named = report.get("image_dirs")
    if not isinstance(named, dict):
        return {}, ()
    found: dict[str, Path] = {}
    for source, folder in named.items():
        if isinstance(folder, str) and _is_dir(Path(folder)) and _within(Path(folder), roots):
            found[str(source)] = Path(folder)
    if "gz1" in named and "gz1" not in found and _is_dir(gz1_images()):
        found["gz1"] = gz1_images()
    return found, tuple(str(s) for s in named if s not in found)


def report_image(folder: Path, name: object) -> Path:
    """The file of one report row's ``image``, resolved inside ``folder``; GalaxyError (one
    line, nothing read) for a name that points anywhere else: ``../`` steps, an absolute path,
    a symbolic link leading out, or something that is not a file name at all."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise GalaxyError(f"image name {_cut(repr(name))} refused: not a file name")
    try:
        inside = is_inside(folder, name)
    except (OSError, ValueError, RuntimeError):
        inside = False
    if not inside:
        raise GalaxyError(f"image name {_cut(repr(name))} refused: it points outside the image "
                          f"folder {show(folder)}")
    return (Path(folder) / name).resolve()


def _cut(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def set_data_hint() -> str:
    return ("Set GALAXY_DATA to the folder that holds gz1_sdss/images (for example "
            "`GALAXY_DATA=../shared/data make run`) and reload.")


def examples() -> list[tuple[str, Path, str]]:
    """Example galaxies shipped beside the repo: (display name, path, known label or ''). The
    display name never carries the label (seed examples are numbered, as some of their file names
    say the class): the page shows the label after the prediction, so the picker does not give
    the answer away."""
    out: list[tuple[str, Path, str]] = []
    seed = default_data_root() / "seed_examples"
    if seed.is_dir():
        labels: dict[str, str] = {}
        table = seed / "labels.csv"
        if table.is_file():
            for line in table.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
                name, _, label = line.partition(",")
                labels[name.strip()] = label.strip()
        seeds = [p for p in sorted(seed.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        for number, path in enumerate(seeds, start=1):
            # Numbered, not named: some file names say the class ("spiral_to_test.jpg").
            out.append((f"Seed example {number}", path, labels.get(path.name, "")))
    gz2 = default_data_root() / "gz2_unlabelled"
    if gz2.is_dir():
        for path in sorted(gz2.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                out.append((f"GZ2 cutout {path.name}", path, ""))
    return out
