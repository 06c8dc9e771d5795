"""One output row of ``galaxy predict`` to make, before anything is read: what to read, the
catalogue values the row carries, and the key that says which row it is.

Inputs of every kind (files, folders, catalogue rows naming files, Parquet rows holding image
bytes) become a stream of :class:`Job` in a fixed order, and each job becomes exactly one row
in that order; ``--resume`` relies on it (:mod:`galaxy_core.predict.runner`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from galaxy_core.data.box import Box
from galaxy_core.predict.inputs import Entry, iter_inputs, printable

Source = Entry | tuple[str, bytes]
"""A file to read (with what the folder search found out about it), or named image bytes."""


def cell(value: object) -> str:
    """A value as one printable CSV cell on one line: control characters (a newline in a
    catalogue value, a carriage return in a name) are written as backslash escapes, so every
    row of the output is one line and a row torn by a kill can be told from a whole one."""
    return printable(str(value))[0]


def source_name(source: Source) -> str:
    """The ``path`` cell of a row read from ``source``: the file's path, or the bytes' name."""
    return cell(source[0] if isinstance(source, tuple) else str(source.path))


@dataclass(frozen=True)
class Job:
    """One row to make. ``source`` is None for a catalogue row that names nothing readable;
    ``problem`` then says why and ``shown`` is what its ``path`` cell holds."""

    source: Source | None
    ids: tuple[str, ...] = ()
    """The catalogue's ``--id-columns`` values, as text, carried into the row's first cells."""
    problem: str = ""
    shown: str = ""
    box: Box | None = None
    """The region of the picture to classify (``--box``, a catalogue's box columns); None:
    the whole picture. Not part of :meth:`key`: the row's ``box`` cell records it."""

    @property
    def name(self) -> str:
        """The row's ``path`` cell."""
        return cell(self.shown) if self.source is None else source_name(self.source)

    def key(self) -> tuple[str, ...]:
        """What the row's id and ``path`` cells hold; ``--resume`` checks each row already
        written against the job in the same place, so a changed input is noticed."""
        return (*(cell(v) for v in self.ids), self.name)


def path_jobs(paths: Iterable[str | Path], output: str | Path | None = None,
              box: Box | None = None) -> Iterator[Job]:
    """A job per entry of the files and folders given (folders walked lazily, in a fixed
    order: :func:`galaxy_core.predict.inputs.iter_inputs`), passing over the run's own
    ``output`` should it lie in a searched folder (it grows while the walk goes on); each
    classifies ``box`` of its picture when one is given (``--box``)."""
    for entry in iter_inputs(paths, exclude=output):
        yield Job(entry, box=box)
