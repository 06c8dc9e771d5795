"""A catalogue as ``galaxy predict`` input: a table (CSV or Parquet) whose rows name image files
(``--path-column``) or hold the images themselves (``--bytes-column``, Parquet only), with id
columns (``--id-columns``) carried into the output so answers join back to the catalogue.

Rows are read a chunk at a time (CSV through the ``csv`` module, Parquet one row group at a
time), so memory does not grow with the catalogue; for images held as bytes it is about one
row group of them. Relative paths are read against the catalogue's own folder, so a catalogue
and its images can be moved together; absolute paths are read as they are.

Every catalogue row gives exactly one output row, in order. A row that names nothing readable
(an empty path, a CSV row with fewer cells than the header, null bytes) gets its row with an
error saying which row and why; a file that is missing or unreadable gets the loader's error,
as a file named on the command line does. A column that is not in the catalogue at all is a
usage error before anything is read.

Image bytes are taken from a binary column, or from a struct column with a ``bytes`` field
(the way Hugging Face ``datasets`` stores an ``Image`` feature: ``{bytes, path}``); a row's
``path`` cell is then its ``--path-column`` value, else the struct's ``path``, else ``row N``.

Image bytes are bounded, because a compressed Parquet file can inflate: 24 KB of zstd held
150 MB of bytes per row, and a batch of 256 such rows would have needed about 118 GB. A row's
image over :data:`MAX_ROW_BYTES` gets an error row (its bytes are never copied out of the
batch), and each row group is read in batches of as many rows as its footer says fit in
:data:`MAX_BATCH_BYTES` (its bytes column's uncompressed size per row; one row at least).

A catalogue with the four columns ``box_x0, box_y0, box_x1, box_y1``
(:data:`~galaxy_core.data.box.BOX_COLUMNS`) gives each row the region of its picture to
classify, as ``--box`` does for one file: a row whose four cells are empty is classified whole,
and a row with a bad box gets its row with the error while the others go on.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from galaxy_core.data.box import BOX_COLUMNS, BoxError, box_from_cells
from galaxy_core.errors import CatalogueError
from galaxy_core.predict.inputs import Entry
from galaxy_core.predict.jobs import Job

PARQUET_SUFFIXES = (".parquet", ".pq")
BATCH_ROWS = 256
"""Parquet rows converted to Python at a time (images as bytes are the large part)."""
COUNT_BLOCK = 1 << 20
MAX_ROW_BYTES = 64 * 2**20
"""One row's image bytes at most (an SDSS cutout is tens of kB, a large FITS tens of MB)."""
MAX_BATCH_BYTES = 256 * 2**20
"""Image bytes decoded at once at most, as far as the file's footer tells."""


@dataclass(frozen=True)
class CatalogueRequest:
    """What ``--catalogue``, ``--path-column``, ``--bytes-column`` and ``--id-columns`` say."""

    path: Path
    path_column: str | None = None
    bytes_column: str | None = None
    id_columns: tuple[str, ...] = ()

    @property
    def is_parquet(self) -> bool:
        return self.path.name.lower().endswith(PARQUET_SUFFIXES)


def parse_columns(text: str | None) -> tuple[str, ...]:
    """``--id-columns OBJID,RA,DEC`` as a tuple (spaces around names ignored)."""
    if not text:
        return ()
    names = tuple(n.strip() for n in text.split(","))
    if any(not n for n in names):
        raise CatalogueError(f"--id-columns {text!r} has an empty name; give names separated "
                             "by commas, e.g. OBJID,RA,DEC")
    if len(set(names)) != len(names):
        raise CatalogueError(f"--id-columns {text!r} names a column twice")
    return names


class Catalogue:
    """The rows of one catalogue as :class:`~galaxy_core.predict.jobs.Job`; opening it checks
    that the file is readable and has every column asked for."""

    def __init__(self, request: CatalogueRequest) -> None:
        self.request = request
        path = request.path
        if not request.path_column and not request.bytes_column:
            raise CatalogueError("--catalogue needs --path-column (image file names) or "
                                 "--bytes-column (images held in a Parquet column)")
        if request.bytes_column and not request.is_parquet:
            raise CatalogueError(f"--bytes-column needs a Parquet catalogue ({path.name} is read "
                                 "as CSV); image bytes cannot be held in a CSV cell")
        if not path.is_file():
            raise CatalogueError(f"catalogue {path} not found" if not path.exists()
                                 else f"catalogue {path} is not a file")
        self.columns = self._read_header()
        wanted = [c for c in (*request.id_columns, request.path_column, request.bytes_column)
                  if c]
        missing = [c for c in wanted if c not in self.columns]
        if missing:
            shown = ", ".join(self.columns[:20]) + (", ..." if len(self.columns) > 20 else "")
            raise CatalogueError(f"{path.name} has no column {', '.join(map(repr, missing))} "
                                 f"(its columns: {shown})")
        present = [c for c in BOX_COLUMNS if c in self.columns]
        if present and len(present) < len(BOX_COLUMNS):
            lacking = ", ".join(c for c in BOX_COLUMNS if c not in present)
            raise CatalogueError(f"{path.name} has {', '.join(present)} but no {lacking}: a "
                                 f"box needs all four of {', '.join(BOX_COLUMNS)}")
        self.box_columns: tuple[str, ...] = BOX_COLUMNS if present else ()
        """The box columns when the catalogue has them (the output then records each box)."""
        if request.bytes_column:
            self._check_bytes_column()

    def _check_bytes_column(self) -> None:
        """The bytes column must hold binary values (or a struct with a binary ``bytes``
        field); text or numbers there mean another column was meant."""
        import pyarrow as pa

        column = self.request.bytes_column
        kind = self._parquet().schema_arrow.field(column).type
        if pa.types.is_struct(kind):
            names = [kind.field(i).name for i in range(kind.num_fields)]
            kind = kind.field("bytes").type if "bytes" in names else kind
        if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
                or pa.types.is_fixed_size_binary(kind) or pa.types.is_binary_view(kind)):
            raise CatalogueError(f"column {column!r} of {self.request.path.name} holds {kind}, "
                                 "not image bytes (binary, or a struct with a 'bytes' field)")

    # --- reading ------------------------------------------------------------------------------
    def _open_text(self) -> IO[str]:
        """The CSV as text; bytes that are not UTF-8 survive as surrogates, so a file name in
        another encoding still opens the file it names."""
        path = self.request.path
        if path.name.lower().endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8-sig", errors="surrogateescape",
                             newline="")
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")

    def _check_text(self) -> None:
        """A CSV catalogue must be UTF-8 (or ASCII) text. A UTF-16 file (Excel's 'Unicode
        text') read as UTF-8 has a NUL byte in every other place: its columns were never
        found, and the error quoted them, NULs and all, to the terminal."""
        path = self.request.path
        try:
            opener = gzip.open if path.name.lower().endswith(".gz") else open
            with opener(path, "rb") as handle:
                start = handle.read(4096)
        except (OSError, EOFError) as exc:
            raise CatalogueError(f"catalogue {path.name} cannot be read ({exc})") from None
        # a BOM, or a NUL in most odd or most even places (UTF-16 without a BOM); a stray NUL
        # in a row stays that row's error
        if start.startswith((b"\xff\xfe", b"\xfe\xff")) or max(
                start[1::2].count(0), start[::2].count(0)) > len(start) // 4 > 0:
            raise CatalogueError(f"catalogue {path.name} is UTF-16 text, not a UTF-8 CSV; save "
                                 "it as CSV UTF-8 (or give a Parquet file)")

    def _parquet(self) -> Any:
        from galaxy_core.predict.writers import _pyarrow

        _, pq = _pyarrow()
        try:
            return pq.ParquetFile(self.request.path)
        except Exception as exc:  # pyarrow raises its own types for a file that is not Parquet
            raise CatalogueError(f"catalogue {self.request.path.name} cannot be read as "
                                 f"Parquet ({' '.join(str(exc).split())[:200]})") from None

    def _read_header(self) -> list[str]:
        if self.request.is_parquet:
            return list(self._parquet().schema_arrow.names)
        self._check_text()
        try:
            with self._open_text() as handle:
                return next(csv.reader(handle), [])
        except (OSError, csv.Error, EOFError) as exc:
            raise CatalogueError(f"catalogue {self.request.path.name} cannot be read "
                                 f"({exc})") from None

    def count(self) -> int | None:
        """Rows in the catalogue when that is cheap: Parquet's footer says it; a plain CSV's
        lines are counted (a quoted cell holding a line break would count twice, which only
        the progress bar sees); None for a compressed CSV."""
        if self.request.is_parquet:
            return int(self._parquet().metadata.num_rows)
        if self.request.path.name.lower().endswith(".gz"):
            return None
        lines, last = 0, b"\n"
        with open(self.request.path, "rb") as handle:
            while block := handle.read(COUNT_BLOCK):
                lines += block.count(b"\n")
                last = block[-1:]
        lines += last != b"\n"
        return max(0, lines - 1)

    def jobs(self) -> Iterator[Job]:
        """One job per catalogue row, in the catalogue's order."""
        rows = self._parquet_rows() if self.request.is_parquet else self._csv_rows()
        for number, (values, problem) in enumerate(rows, start=1):
            yield self._job(number, values, problem)

    def _csv_rows(self) -> Iterator[tuple[dict[str, Any], str]]:
        wanted = list(dict.fromkeys(c for c in (*self.request.id_columns,
                                                 self.request.path_column, *self.box_columns)
                                    if c))
        index = {c: self.columns.index(c) for c in wanted}
        try:
            with self._open_text() as handle:
                reader = csv.reader(handle)
                next(reader, None)
                for cells in reader:
                    if not cells:
                        continue  # a blank line is no row (as in every CSV reader)
                    values = {c: cells[i] if i < len(cells) else None for c, i in index.items()}
                    short = len(cells) < len(self.columns) and any(v is None
                                                                     for v in values.values())
                    yield values, (f"{len(cells)} cells where the header has "
                                   f"{len(self.columns)}" if short else "")
        except (OSError, csv.Error, EOFError) as exc:
            raise CatalogueError(f"catalogue {self.request.path.name} cannot be read "
                                 f"({exc})") from None

    def _parquet_rows(self) -> Iterator[tuple[dict[str, Any], str]]:
        request = self.request
        texts = list(dict.fromkeys(c for c in (*request.id_columns, request.path_column,
                                               *self.box_columns) if c))
        wanted = list(dict.fromkeys([*texts, *([request.bytes_column]
                                              if request.bytes_column else [])]))
        parquet = self._parquet()
        try:
            for group in range(parquet.metadata.num_row_groups):
                rows = self._batch_rows(parquet.metadata.row_group(group))
                for batch in parquet.iter_batches(batch_size=rows, row_groups=[group],
                                                  columns=wanted):
                    values = {c: batch.column(c).to_pylist() for c in texts}
                    images = (_BoundedBytes(batch.column(request.bytes_column))
                              if request.bytes_column else None)
                    for i in range(batch.num_rows):
                        row = {c: values[c][i] for c in texts}
                        problem = ""
                        if images is not None:
                            row[request.bytes_column], problem = images.row(i)
                        yield row, problem
        except CatalogueError:
            raise
        except Exception as exc:
            raise CatalogueError(f"catalogue {request.path.name} cannot be read "
                                 f"({' '.join(str(exc).split())[:200]})") from None

    def _batch_rows(self, group: Any) -> int:
        """Rows per batch in a row group: :data:`BATCH_ROWS`, fewer when the footer says its
        image bytes would come to more than :data:`MAX_BATCH_BYTES`."""
        column = self.request.bytes_column
        if not column or group.num_rows <= 0:
            return BATCH_ROWS
        size = sum(group.column(j).total_uncompressed_size for j in range(group.num_columns)
                   if group.column(j).path_in_schema == column
                   or group.column(j).path_in_schema.startswith(column + "."))
        per_row = max(1, -(-size // group.num_rows))
        return max(1, min(BATCH_ROWS, MAX_BATCH_BYTES // per_row))

    # --- one row ------------------------------------------------------------------------------
    def _job(self, number: int, values: dict[str, Any], problem: str) -> Job:
        """The row's job, with its box when the catalogue has box columns (a bad box makes
        it a job that names nothing readable, whose row carries the error)."""
        job = self._source_job(number, values, problem)
        if not self.box_columns or job.source is None:
            return job
        try:
            box = box_from_cells([values.get(c) for c in self.box_columns],
                                 f"catalogue row {number}: box")
        except BoxError as exc:
            return Job(None, job.ids, problem=str(exc), shown=job.name)
        return replace(job, box=box)

    def _source_job(self, number: int, values: dict[str, Any], problem: str) -> Job:
        request = self.request
        ids = tuple("" if values.get(c) is None else str(values[c]) for c in request.id_columns)
        path_value = values.get(request.path_column) if request.path_column else None
        path_text = "" if path_value is None else str(path_value)
        if problem:
            if request.bytes_column and not path_text:
                held = values.get(request.bytes_column)
                path_text = str(held.get("path") or "") if isinstance(held, dict) else ""
                path_text = path_text or f"row {number}"
            return Job(None, ids, problem=f"catalogue row {number}: {problem}", shown=path_text)
        if request.bytes_column:
            return self._bytes_job(number, values.get(request.bytes_column), ids, path_text)
        if not path_text.strip():
            return Job(None, ids, shown=path_text, problem=f"catalogue row {number}: no path in "
                       f"column {request.path_column!r}")
        path = Path(path_text)
        return Job(Entry(path if path.is_absolute() else request.path.parent / path), ids)

    def _bytes_job(self, number: int, value: Any, ids: tuple[str, ...], name: str) -> Job:
        column = self.request.bytes_column
        if isinstance(value, dict):  # a Hugging Face Image feature: {bytes, path}
            name = name or str(value.get("path") or "")
            value = value.get("bytes")
        name = name or f"row {number}"
        if value is None:
            return Job(None, ids, shown=name,
                       problem=f"catalogue row {number}: no image bytes in column {column!r}")
        return Job((name, bytes(value)), ids)


class _BoundedBytes:
    """A batch's image bytes column (binary, or a struct with ``bytes`` and maybe ``path``),
    taken out row by row: a row over :data:`MAX_ROW_BYTES` is a problem, and its bytes are
    never copied into Python."""

    def __init__(self, column: Any) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.paths: Any = None
        if pa.types.is_struct(column.type):
            # flatten() keeps a null struct's rows null in every field; field() would not
            fields = dict(zip((column.type.field(i).name
                               for i in range(column.type.num_fields)), column.flatten()))
            self.paths = fields.get("path")
            column = fields["bytes"]
        try:
            sizes = pc.binary_length(column)
        except pa.ArrowNotImplementedError:  # a binary kind the kernel lacks: as large_binary
            column = column.cast(pa.large_binary())
            sizes = pc.binary_length(column)
        self.data = column
        self.sizes = sizes.to_pylist()

    def row(self, i: int) -> tuple[Any, str]:
        """Row ``i``'s value as :meth:`Catalogue._bytes_job` takes it, and a problem ('' when
        none)."""
        path = self.paths[i].as_py() if self.paths is not None else None
        size = self.sizes[i]
        if size is not None and size > MAX_ROW_BYTES:
            return ({"path": path, "bytes": None} if self.paths is not None else None,
                    f"{size / 2**20:.0f} MiB of image bytes, over the bound of "
                    f"{MAX_ROW_BYTES // 2**20} MiB a row")
        value = self.data[i].as_py()
        return ({"path": path, "bytes": value} if self.paths is not None else value), ""


__all__ = ["Catalogue", "CatalogueRequest", "parse_columns"]
