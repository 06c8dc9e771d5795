"""Where ``galaxy predict`` puts its rows: appended as they are made, so a run of a million
images holds none of them, and a run killed at any moment leaves every finished row readable.

Three outputs share one interface (:class:`Output`): rows are dicts of CSV cells (text)
whichever the format, so resuming and the ``--prior estimate`` pass work on all of them alike.

- **CSV file** (``-o out.csv``): one header, one line per row (cells never hold a line break:
  :func:`galaxy_core.predict.jobs.cell`; a cell that a spreadsheet would run as a formula, an
  id like ``=HYPERLINK(...)`` or a file ``=1+1.jpeg``, is written with a leading apostrophe by
  :func:`galaxy_core.io_utils.inert_cell` and read back without it), flushed after every batch. A kill can tear only the
  last line; :meth:`CsvOutput.open` cuts the file back to its last complete row.
- **Parquet folder** (``-o out.parquet``): a Parquet file cannot be appended to and is readable
  only once its footer is written, so the output is a folder of part files
  ``part-000000.parquet``, ``part-000001.parquet``, ... Each part is written whole (to a
  temporary name, then renamed) every :data:`PART_ROWS` rows or :data:`PART_SECONDS` seconds,
  whichever comes first; a kill loses only the rows not yet in a part, which ``--resume`` makes
  again. pandas, pyarrow, Polars, DuckDB and Spark read such a folder as one table. Numbers are
  typed (float64 probabilities and scores, int8 flags), text columns are strings; a cell that
  is empty in CSV is null.
- **stdout** (no ``-o``): CSV, flushed after every batch; cannot be resumed.

A second ``galaxy predict`` writing the same file at the same time would interleave rows, so an
output is locked while it is written (``flock``; released when the process ends, even by
``kill -9``).
"""

from __future__ import annotations

import csv
import fcntl
import io
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from galaxy_core.errors import GalaxyError
from galaxy_core.io_utils import TEMP_SUFFIX, atomic_write, inert_cell, live_cell

Row = dict[str, str]
"""One output row: column name -> CSV cell."""

PARQUET_SUFFIX = ".parquet"
PART_ROWS = 5000
"""Rows per Parquet part file at most (a part is also written after :data:`PART_SECONDS`)."""
PART_SECONDS = 60.0
"""A Parquet part is written at least this often while rows come, so a kill loses at most about
this much work (plus one part's rows)."""
PART_PREFIX = "part-"
LOCK_NAME = ".galaxy-predict.lock"
"""Lock file inside a Parquet output folder (readers skip names starting with a dot)."""
FLOAT_COLUMNS = frozenset({"p_spiral", "p_elliptical", "ood_score", "prior"})
INT_COLUMNS = frozenset({"survey_matched", "accepted"})
REWRITE_ROWS = 10_000
"""Rows held at once while an output is rewritten (the ``--prior estimate`` pass)."""


class OutputError(GalaxyError):
    """The output cannot be written or continued as asked (exists, locked, other columns)."""


class Output(Protocol):
    """An output that rows are appended to and, for ``--resume``, read back from."""

    name: str

    def rows(self, columns: Sequence[str]) -> Iterator[Row]:
        """The rows written so far, in order, with only ``columns`` (read lazily; do not
        append while reading)."""
        ...

    def append(self, rows: Sequence[Row]) -> None:
        """Add ``rows`` after the others; they are on disk (or in a part soon) when it returns."""
        ...

    def close(self) -> None:
        """Write what is buffered and release the lock."""
        ...

    def rewrite(self, change: Callable[[list[Row]], list[Row]]) -> None:
        """Replace every row by ``change`` of it, a chunk at a time, atomically."""
        ...


def is_parquet(path: str | Path) -> bool:
    return str(path).lower().endswith(PARQUET_SUFFIX)


def open_output(path: str | Path | None, columns: Sequence[str], resume: bool,
                stream: IO[str] | None = None) -> Output:
    """The output at ``path`` (stdout when None), refused if it exists and ``resume`` is off:
    a result file is never overwritten or added to by accident."""
    if path is None:
        if resume:
            raise OutputError("--resume needs --output (rows written to stdout cannot be read "
                              "back)")
        return StdoutOutput(columns, stream or sys.stdout)
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not resume:
        raise OutputError(f"{path} already exists; pass --resume to continue it, or remove it "
                          "or choose another --output")
    return ParquetOutput(path, columns) if is_parquet(path) else CsvOutput(path, columns)


EARLIER_COLUMNS = frozenset({"ood_verdict", "ood_findings"})
"""Columns an output written by an earlier ``galaxy predict`` lacks: resuming it would mix rows
with and without them, so such an output is refused with that said."""


def _check_columns(name: str, found: Sequence[str], expected: Sequence[str]) -> None:
    if list(found) == [c for c in expected if c not in EARLIER_COLUMNS]:
        raise OutputError(f"{name} was written by an earlier galaxy predict, without the columns "
                          f"{', '.join(sorted(EARLIER_COLUMNS))}: it cannot be continued; choose "
                          "another --output (or run the earlier version to finish it)")
    if list(found) != list(expected):
        raise OutputError(f"{name} has the columns {','.join(found) or '(none)'} but this run "
                          f"writes {','.join(expected)}: resume with the same --id-columns and "
                          "--accept-at as the run that wrote it, or choose another --output")


def _lock(handle: IO[Any], name: str) -> None:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OutputError(f"{name} is being written by another galaxy predict; wait for it to "
                          "finish or stop it") from None


# --- CSV ----------------------------------------------------------------------------------------
def _csv_header(columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(columns)
    return buffer.getvalue()


def _csv_line(columns: Sequence[str], rows: Sequence[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    for row in rows:
        writer.writerow({c: inert_cell(v) for c, v in row.items()})
    return buffer.getvalue()


def _csv_rows(handle: IO[str], columns: Sequence[str] | None = None) -> Iterator[Row]:
    """The rows of a CSV output as they were given to :func:`_csv_line` (formula escapes
    undone), with only ``columns`` when given."""
    for row in csv.DictReader(handle):
        names = row.keys() if columns is None else columns
        yield {c: live_cell(row.get(c) or "") for c in names}


def _named(name: str, rows: Iterator[Row]) -> Iterator[Row]:
    """``rows`` read back from the output ``name``, where bytes that are not UTF-8 or a CSV
    that does not parse are one error naming the file and the row (the decoder's own message
    names neither)."""
    number = 0
    try:
        for number, row in enumerate(rows, start=1):
            yield row
    except (UnicodeDecodeError, csv.Error) as exc:
        why = "is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else f"is not CSV ({exc})"
        raise OutputError(f"{name} {why} (row {number + 1}): it was changed since galaxy "
                          "predict wrote it; choose another --output") from None


def cut_torn_tail(path: Path) -> int:
    """Cut ``path`` back to the end of its last complete line (one ending in a newline): what a
    kill in the middle of a write leaves after it is half a row. Returns the bytes removed."""
    size = path.stat().st_size
    with open(path, "rb+") as handle:
        end = size
        block = 1 << 16
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            chunk = handle.read(end - start)
            at = chunk.rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
            end = start
        else:
            keep = 0
        if keep < size:
            handle.truncate(keep)
    return size - keep


class CsvOutput:
    """A CSV file, appended to a batch at a time (see the module docstring)."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path, self.name, self.columns = path, str(path), list(columns)
        if path.exists() and not path.is_file():
            raise OutputError(f"{path} is not a file (a CSV output is one file; a name ending "
                              f"in {PARQUET_SUFFIX} makes a Parquet folder)")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "a", encoding="utf-8", newline="")
        try:
            _lock(self._handle, self.name)
            self._check_header()  # before anything is cut: never shorten another file
            cut_torn_tail(path)
            if path.stat().st_size == 0:
                self._write(_csv_header(self.columns))
        except BaseException:
            self.close()
            raise

    def _check_header(self) -> None:
        """An existing file must start with this run's header (or be a header a kill tore)."""
        header = _csv_header(self.columns).encode("utf-8")
        with open(self.path, "rb") as handle:
            first = handle.readline(len(header) + 1)
        if first == header or header.startswith(first):
            return
        text = first.decode("utf-8", errors="replace").rstrip("\r\n")
        _check_columns(self.name, next(csv.reader([text]), []), self.columns)
        raise OutputError(f"{self.name} does not start with a galaxy predict header")

    def _write(self, text: str) -> None:
        try:
            self._handle.write(text)
            self._handle.flush()
        except OSError as exc:  # a full disk says "[Errno 28] No space left on device" alone
            raise OutputError(f"cannot write {self.name}: {exc.strerror or exc}; the rows "
                              "before this batch are kept: make room and run the same command "
                              "with --resume") from None

    def rows(self, columns: Sequence[str]) -> Iterator[Row]:
        self._handle.flush()
        with open(self.path, encoding="utf-8", newline="") as handle:
            yield from _named(self.name, _csv_rows(handle, columns))

    def append(self, rows: Sequence[Row]) -> None:
        if rows:
            self._write(_csv_line(self.columns, rows))

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()  # closing releases the lock

    def rewrite(self, change: Callable[[list[Row]], list[Row]]) -> None:
        """Through a temporary file renamed over the old one: a kill leaves either."""
        self._handle.flush()

        def write(target: IO[bytes]) -> None:
            text = io.TextIOWrapper(target, encoding="utf-8", newline="", write_through=True)
            text.write(_csv_header(self.columns))
            with open(self.path, encoding="utf-8", newline="") as handle:
                chunk: list[Row] = []
                for row in _named(self.name, _csv_rows(handle, self.columns)):
                    chunk.append(row)
                    if len(chunk) >= REWRITE_ROWS:
                        text.write(_csv_line(self.columns, change(chunk)))
                        chunk = []
                text.write(_csv_line(self.columns, change(chunk)) if chunk else "")
            text.detach()
        atomic_write(self.path, write)


class StdoutOutput:
    """CSV on a text stream, flushed after every batch so a pipe sees rows as they come."""

    def __init__(self, columns: Sequence[str], stream: IO[str]) -> None:
        self.name, self.columns, self.stream = "stdout", list(columns), stream
        stream.write(_csv_header(self.columns))
        stream.flush()

    def rows(self, columns: Sequence[str]) -> Iterator[Row]:
        raise OutputError("rows written to stdout cannot be read back")

    def append(self, rows: Sequence[Row]) -> None:
        if rows:
            try:
                self.stream.write(_csv_line(self.columns, rows))
                self.stream.flush()
            except OSError as exc:
                raise OutputError(f"cannot write to stdout: {exc.strerror or exc}") from None

    def close(self) -> None:
        self.stream.flush()

    def rewrite(self, change: Callable[[list[Row]], list[Row]]) -> None:
        raise OutputError("rows written to stdout cannot be rewritten")


# --- Parquet ------------------------------------------------------------------------------------
def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise GalaxyError("Parquet needs pyarrow: pip install 'galaxy-morphology[parquet]' "
                          "(or pip install pyarrow), or write CSV") from None
    return pa, pq


def _arrow_type(pa: Any, column: str) -> Any:
    if column in FLOAT_COLUMNS:
        return pa.float64()
    if column in INT_COLUMNS:
        return pa.int8()
    return pa.string()


def _to_arrow(column: str, text: str) -> object:
    if text == "":
        return None
    if column in FLOAT_COLUMNS:
        return float(text)
    if column in INT_COLUMNS:
        return int(text)
    return text


def _to_cell(column: str, value: object) -> str:
    """A Parquet value as the CSV cell it was made from (floats carry 4 decimals)."""
    if value is None:
        return ""
    if column in FLOAT_COLUMNS:
        return f"{value:.4f}"
    return str(value)


def _part_schema(pq: Any, part: Path) -> Any:
    """A part's schema, read from its footer; a part that is not Parquet is one error naming
    it (pyarrow's own message names no file)."""
    try:
        return pq.read_schema(part)
    except Exception as exc:  # pyarrow raises its own types (ArrowInvalid, OSError, ...)
        raise OutputError(_unreadable_part(part, exc)) from None


def _unreadable_part(part: Path, exc: BaseException) -> str:
    return (f"{part} cannot be read as a part of this output ({' '.join(str(exc).split())[:160]}"
            "): move it out of the folder, or choose another --output")


def _read_part(pq: Any, part: Path, columns: Sequence[str] | None = None,
               expected: Sequence[str] | None = None) -> Iterator[Any]:
    """The record batches of one part, with only ``columns``; a damaged part, or one whose
    columns are not ``expected`` (a stray part of another table in the folder, which ended in
    a KeyError), is one error naming it. Checked here, as each part is opened anyway, not
    all at once on open: an output of 10^8 rows has 20,000 parts."""
    try:
        handle = pq.ParquetFile(part)
        if expected is not None:
            _check_columns(str(part), handle.schema_arrow.names, expected)
        yield from handle.iter_batches(columns=None if columns is None else list(columns))
    except OutputError:
        raise
    except Exception as exc:
        raise OutputError(_unreadable_part(part, exc)) from None


def part_files(folder: Path) -> list[Path]:
    """The part files of a Parquet output folder, in the order they were written."""
    parts = []
    for path in folder.glob(f"{PART_PREFIX}*{PARQUET_SUFFIX}"):
        number = path.name[len(PART_PREFIX):-len(PARQUET_SUFFIX)]
        if number.isdigit():
            parts.append((int(number), path))
    return [path for _, path in sorted(parts)]


class ParquetOutput:
    """A folder of Parquet part files (see the module docstring)."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.pa, self.pq = _pyarrow()
        self.path, self.name, self.columns = path, str(path), list(columns)
        if path.exists() and not path.is_dir():
            raise OutputError(f"{path} is not a folder: a Parquet output of galaxy predict is a "
                              "folder of part files")
        path.mkdir(parents=True, exist_ok=True)
        self._lock_handle = open(path / LOCK_NAME, "a")
        try:
            _lock(self._lock_handle, self.name)
            parts = part_files(path)
            if parts:  # the others are checked as they are read (_read_part)
                _check_columns(str(parts[0]), _part_schema(self.pq, parts[0]).names,
                               self.columns)
        except BaseException:
            self._lock_handle.close()
            raise
        for temp in path.glob(f".{PART_PREFIX}*{PARQUET_SUFFIX}.*{TEMP_SUFFIX}"):
            temp.unlink(missing_ok=True)  # a part a killed run had not finished (atomic_write)
        self.schema = self.pa.schema([(c, _arrow_type(self.pa, c)) for c in self.columns])
        self._next = int(parts[-1].name[len(PART_PREFIX):-len(PARQUET_SUFFIX)]) + 1 \
            if parts else 0
        self._buffer: list[Row] = []
        self._since = time.monotonic()

    def rows(self, columns: Sequence[str]) -> Iterator[Row]:
        self.flush()
        for part in part_files(self.path):
            for batch in _read_part(self.pq, part, columns, self.columns):
                values = {c: batch.column(c).to_pylist() for c in columns}
                for i in range(batch.num_rows):
                    yield {c: _to_cell(c, values[c][i]) for c in columns}

    def _table(self, rows: Sequence[Row]) -> Any:
        arrays = [self.pa.array([_to_arrow(c, row.get(c, "")) for row in rows],
                                type=_arrow_type(self.pa, c)) for c in self.columns]
        return self.pa.Table.from_arrays(arrays, schema=self.schema)

    def _write_part(self, path: Path, rows: Sequence[Row]) -> None:
        table = self._table(rows)
        atomic_write(path, lambda handle: self.pq.write_table(table, handle))

    def flush(self) -> None:
        if self._buffer:
            self._write_part(self.path / f"{PART_PREFIX}{self._next:06d}{PARQUET_SUFFIX}",
                             self._buffer)
            self._next += 1
            self._buffer = []
        self._since = time.monotonic()

    def append(self, rows: Sequence[Row]) -> None:
        self._buffer.extend(rows)
        if len(self._buffer) >= PART_ROWS or time.monotonic() - self._since >= PART_SECONDS:
            self.flush()

    def close(self) -> None:
        if not self._lock_handle.closed:
            self.flush()
            self._lock_handle.close()

    def rewrite(self, change: Callable[[list[Row]], list[Row]]) -> None:
        """Each part is replaced atomically on its own: a kill half-way leaves some parts
        changed and others not, which the ``--prior`` pass tolerates (every row records the
        prior its probabilities are for)."""
        self.flush()
        for part in part_files(self.path):
            self._write_part(part, change(list(self.rows_of(part))))

    def rows_of(self, part: Path) -> Iterator[Row]:
        for batch in _read_part(self.pq, part, self.columns, self.columns):
            values = {c: batch.column(c).to_pylist() for c in self.columns}
            for i in range(batch.num_rows):
                yield {c: _to_cell(c, values[c][i]) for c in self.columns}


def read_rows(path: str | Path) -> Iterator[Row]:
    """Every row of a finished output (CSV file or Parquet folder) as CSV cells; for tests and
    tools that compare outputs."""
    path = Path(path)
    if is_parquet(path):
        _, pq = _pyarrow()
        for part in part_files(path):
            for batch in _read_part(pq, part):
                values = {c: batch.column(c).to_pylist() for c in batch.schema.names}
                for i in range(batch.num_rows):
                    yield {c: _to_cell(c, v[i]) for c, v in values.items()}
    else:
        with open(path, encoding="utf-8", newline="") as handle:
            yield from _csv_rows(handle)


__all__ = ["CsvOutput", "Output", "OutputError", "ParquetOutput", "Row", "StdoutOutput",
           "cut_torn_tail", "is_parquet", "open_output", "part_files", "read_rows"]
