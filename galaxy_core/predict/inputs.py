"""What the user pointed ``galaxy predict`` at, as a list of entries that each become one output
row: files as given, folders searched recursively. Nothing found is passed over in silence: a
folder that cannot be read, a link to a folder that is not followed, a file that is not an image
all get their own entry with the reason, so the output accounts for every name.

:func:`iter_inputs` gives the same entries one at a time, walking folders lazily, so that
``galaxy predict`` can start on the first file of a folder of millions and hold no list of them;
:func:`find_inputs` is the list, sorted by full path.

Names are made printable here too: a file name that is not valid UTF-8 (bytes from another
system) or holds a control character (a carriage return breaks a CSV row) is shown with
backslash escapes, and the entry says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from galaxy_core.data.imageio import GZIP_SUFFIX, IMAGE_SUFFIXES
from galaxy_core.io_utils import TEMP_SUFFIX
from galaxy_core.predict.run_record import RECORD_SUFFIX

ESCAPED_NOTE = "file name shown with backslash escapes (not valid UTF-8 or has control characters)"


@dataclass(frozen=True)
class Entry:
    """One thing to report on: a file to classify, or a problem found while searching."""

    path: Path
    in_folder: bool = False
    """Found by searching a folder (not named by the user)."""
    problem: str = ""
    """Why this entry cannot be classified at all, found before reading it."""
    skippable: bool = False
    """A file found in a folder whose suffix is not an image's: when its content is not an
    image either, it is reported as skipped instead of failed."""

    @property
    def name(self) -> str:
        return printable(str(self.path))[0]


def printable(name: str) -> tuple[str, bool]:
    """``name`` safe for a CSV cell and a terminal, and whether it had to be escaped."""
    raw = os.fsencode(name)
    text = raw.decode("utf-8", errors="backslashreplace")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        text = "".join(ch if ord(ch) >= 32 and ord(ch) != 127 else ch.encode("unicode_escape")
                       .decode("ascii") for ch in text)
    return text, text != name


def _is_image_name(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    return bool(suffixes) and (suffixes[-1] in IMAGE_SUFFIXES or (
        suffixes[-1] == GZIP_SUFFIX and len(suffixes) == 2 and suffixes[0] in IMAGE_SUFFIXES))


def _search(folder: Path) -> list[Entry]:
    entries: list[Entry] = []

    def unreadable(error: OSError) -> None:
        where = Path(error.filename) if error.filename else folder
        entries.append(Entry(where, in_folder=where != folder,
                             problem=f"folder cannot be read ({error.strerror or error})"))

    for root, dirs, files in os.walk(folder, onerror=unreadable):
        base = Path(root)
        for name in dirs:
            if (base / name).is_symlink():
                entries.append(Entry(base / name, in_folder=True, skippable=True,
                                     problem="link to a folder, not followed"))
        for name in files:
            path = base / name
            entries.append(Entry(path, in_folder=True, skippable=not _is_image_name(path)))
    return entries


def find_inputs(paths: Iterable[str | Path]) -> list[Entry]:
    """Entries for files as given and for everything inside the given folders (sorted)."""
    out: list[Entry] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(_search(path), key=lambda e: os.fsencode(str(e.path))))
        else:
            out.append(Entry(path))
    return out


def _walk(folder: Path, exclude: str | None = None) -> Iterator[Entry]:
    """The entries :func:`_search` finds, one at a time: each folder's files in name order,
    then its subfolders in name order, depth first. The order is fixed for a given tree (what
    ``galaxy predict --resume`` relies on), though not the global path order of
    :func:`find_inputs`, which needs the whole list. ``exclude`` (an absolute path) is passed
    over, with its side files (:func:`output_side_file`): the output of the run itself, when it
    is written inside a folder being searched."""
    problems: list[Entry] = []

    def unreadable(error: OSError) -> None:
        where = Path(error.filename) if error.filename else folder
        problems.append(Entry(where, in_folder=where != folder,
                              problem=f"folder cannot be read ({error.strerror or error})"))

    def kept(base: Path, name: str) -> bool:
        return exclude is None or not output_side_file(os.path.abspath(base / name), exclude)

    for root, dirs, files in os.walk(folder, onerror=unreadable):
        yield from problems
        problems.clear()
        base = Path(root)
        dirs[:] = sorted((d for d in dirs if kept(base, d)), key=os.fsencode)  # walk order
        found = [Entry(base / name, in_folder=True, skippable=True,
                       problem="link to a folder, not followed")
                 for name in dirs if (base / name).is_symlink()]
        found += [Entry(base / name, in_folder=True, skippable=not _is_image_name(base / name))
                  for name in files if kept(base, name)]
        yield from sorted(found, key=lambda e: os.fsencode(e.path.name))
    yield from problems


def output_side_file(path: str, output: str) -> bool:
    """Whether ``path`` (absolute) is the output ``output`` (absolute) or one of the files the
    run writes beside it: its run record (``<output>.run.json``) and the temporary files an
    atomic write of either leaves while it works (``.<name>.<random>.tmp``)."""
    if path in (output, output + RECORD_SUFFIX):
        return True
    folder, name = os.path.split(output)
    where, here = os.path.split(path)
    return where == folder and here.startswith(f".{name}.") and here.endswith(TEMP_SUFFIX)


def iter_inputs(paths: Iterable[str | Path], exclude: str | Path | None = None) -> Iterator[Entry]:
    """Entries for files as given and for everything inside the given folders, lazily, in a
    fixed order (see :func:`_walk`); folder searches pass over ``exclude``."""
    skip = os.path.abspath(exclude) if exclude is not None else None
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _walk(path, skip)
        else:
            yield Entry(path)


def count_if_cheap(paths: Iterable[str | Path]) -> int | None:
    """How many entries :func:`iter_inputs` will give, when that needs no folder walk (only
    files were named); None otherwise."""
    paths = list(paths)
    return None if any(Path(p).is_dir() for p in paths) else len(paths)
