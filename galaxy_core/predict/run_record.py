"""What made an output's rows: the model's weights, the engine, the views and the survey
matching, written beside the output when a run starts and checked by ``--resume``.

Resuming checks each written row's id and path against its input, but a row says nothing of how
it was made: a run resumed with another model, ``--views 1`` after ``--views 8``, or int8 after
torch would append rows of another kind to the same table, and nothing in it would show where
they start. So every run with ``--output`` records its options (``out.csv.run.json`` beside a
CSV file; ``.galaxy-run.json`` inside a Parquet folder, where readers pass over dot-names) and
``--resume`` refuses an output recorded with other ones, naming what differs. ``--prior`` is not
recorded: resuming with another prior moves the earlier rows too
(:mod:`galaxy_core.predict.prior_pass`), so the table stays of one kind.

An output that holds rows but no record cannot be checked, so it is not resumed: taking its rows
as made with this run's options let ``--views 1`` continue a table of ``--views 8`` rows and
then recorded the whole table as ``--views 1``. Every released version writes the record
(0.1.0 did), so only a deleted record or a pre-release output meets this. A record is a few
hundred bytes: one over :data:`MAX_RECORD_BYTES`, or JSON nested deep enough to stop the
parser, is damaged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from galaxy_core.errors import GalaxyError
from galaxy_core.io_utils import read_json, write_json
from galaxy_core.model.folder import WEIGHTS_FILE, ModelInfo
from galaxy_core.model.onnx_network import file_sha256

RECORD_SUFFIX = ".run.json"
"""Beside a CSV output: ``<output>.run.json``."""
FOLDER_RECORD = ".galaxy-run.json"
"""Inside a Parquet output folder."""
FORMAT = 1
MAX_RECORD_BYTES = 64 * 1024
"""A record is a few hundred bytes; a bigger one is not ours and is never read whole."""


@dataclass(frozen=True)
class RunRecord:
    """The options that decide what a row says."""

    weights_sha256: str
    backend: str
    views: int
    survey_match: str
    model: str = ""
    """Where the model folder was (shown in messages; not compared: a folder may move)."""

    def differences(self, other: RunRecord) -> list[str]:
        """What ``other`` (this run) changes, in words; empty when the rows would be alike."""
        said = []
        if other.weights_sha256 != self.weights_sha256:
            said.append(f"another model (weights {other.weights_sha256[:12]}, the output's "
                        f"{self.weights_sha256[:12]}{f' from {self.model}' if self.model else ''})")
        for name, flag in (("backend", "--backend"), ("views", "--views"),
                           ("survey_match", "--survey-match")):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                said.append(f"{flag} {theirs} (the output's rows: {flag} {mine})")
        return said


def record_of(loaded: ModelInfo, views: int, survey: str) -> RunRecord:
    return RunRecord(weights_sha256=file_sha256(Path(loaded.path) / WEIGHTS_FILE),
                     backend=getattr(loaded, "backend", "torch"), views=views,
                     survey_match=survey, model=str(loaded.path))


def record_path(output: str | Path) -> Path:
    output = Path(output)
    if output.suffix.lower() == ".parquet":
        return output / FOLDER_RECORD
    return output.with_name(output.name + RECORD_SUFFIX)


def read_record(output: str | Path) -> RunRecord | None:
    """The record of ``output``'s run; None when it has none. A damaged record is an error:
    what made the rows can then not be told."""
    path = record_path(output)
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise ValueError("too large")
        data = read_json(path)  # deep nesting is a ValueError there, not a RecursionError
        fields = {k: data[k] for k in ("weights_sha256", "backend", "views", "survey_match")}
        return RunRecord(**fields, model=str(data.get("model", "")))
    except (OSError, ValueError, KeyError, TypeError):
        raise GalaxyError(f"{path} is damaged, so what made the rows of {output} cannot be "
                          "told; choose another --output") from None


def write_record(output: str | Path, record: RunRecord) -> None:
    write_json(record_path(output), {"format": FORMAT, **asdict(record)})


def check_resume(output: str | Path, record: RunRecord, has_rows: bool = True) -> bool:
    """Refuse to resume ``output`` with options other than its rows were made with, or, when
    it ``has_rows``, without a record to tell. Returns whether it had a record (False: an
    output with no rows yet, e.g. a run stopped before its first batch)."""
    found = read_record(output)
    if found is None:
        if has_rows:
            raise GalaxyError(f"{output} has rows but no run record ({record_path(output).name}),"
                              " so the model, --backend, --views and --survey-match they were "
                              "made with cannot be checked against this run's; choose another "
                              "--output")
        return False
    changes = found.differences(record)
    if changes:
        raise GalaxyError(f"{output} was made with other options: this run has "
                          f"{'; '.join(changes)}. Resume with the options it was made with, or "
                          "choose another --output")
    return True
