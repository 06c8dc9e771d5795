"""Atomic file writes: a crash or Ctrl-C mid-write leaves the old file, never half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write through ``write(fileobj)`` into a temporary file beside ``path``, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # say which file (disk full)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    return path


def orphan_temps(folder: str | Path) -> list[Path]:
    """Temporary files :func:`atomic_write` left in ``folder`` when its process was killed
    mid-write (``kill -9`` gives no chance to clean up); safe to delete once the process that
    wrote them is gone."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f".*{TEMP_SUFFIX}") if p.is_file())


def is_inside(root: str | Path, relative: str | Path) -> bool:
    """True when ``root/relative`` stays inside ``root``: names read from a catalogue or table
    must never reach files elsewhere (``../../etc/passwd``)."""
    return resolve_inside(Path(root).resolve(), os.fspath(relative)) is not None


def resolve_inside(root: Path, name: object) -> Path | None:
    """``root / name`` resolved, or None when ``name`` is not text or reaches outside ``root``
    (``../../etc/passwd``, or a link that leads elsewhere): what :func:`is_inside` checks, for a
    ``root`` already resolved, so callers checking many names resolve it once (per name, that
    was a third of ``galaxy prepare``'s own work on 6,000 images)."""
    if not isinstance(name, str):
        return None
    path = (root / name).resolve()
    return path if path.is_relative_to(root) else None


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    """``path``'s JSON. Every failure to parse is a :class:`ValueError`: JSON nested thousands
    deep makes the parser raise :class:`RecursionError`, which no caller expects and which
    reached the user as a traceback (a crafted ``.run.json``)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""How a spreadsheet cell that it would run as a formula starts (OWASP's list)."""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text


def inert_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text and never runs: text starting like a formula
    (:data:`FORMULA_STARTS`) gets a leading apostrophe, and so does text that already starts
    with apostrophes before such a character, so :func:`live_cell` gives back exactly what was
    escaped. Numbers, and text that reads as one (``-0.25``), are left as they are. Every CSV
    meant for people (``galaxy predict``, the dashboard's downloads, the teacher's export)
    goes through this."""
    if not isinstance(value, str) or _is_number(value):
        return value
    if value.lstrip("'")[:1] in FORMULA_STARTS and value.lstrip("'"):
        return "'" + value
    return value


def live_cell(text: str) -> str:
    """The cell :func:`inert_cell` was given (one escaping apostrophe removed)."""
    if text[:1] == "'" and text.lstrip("'")[:1] in FORMULA_STARTS and text.lstrip("'"):
        return text[1:]
    return text


def write_csv(path: str | Path, frame: Any) -> Path:
    """Write a pandas DataFrame atomically (no index column)."""
    return write_text(path, frame.to_csv(index=False))
