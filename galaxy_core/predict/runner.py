"""``galaxy predict`` from jobs to a finished output: streamed, resumable, in bounded memory.

A run is four steps (:class:`PredictionRun`): open the output (refusing one that exists unless
resuming), skip the jobs whose rows are already there, classify the rest batch by batch
(reading in worker processes, :mod:`galaxy_core.predict.stream`), appending each batch's rows
and dropping them, then finish (the ``--prior`` pass when one is needed).

**Resuming** is by position: the rows of an output are the first jobs, in order, one row each
(jobs come in a fixed order: :mod:`galaxy_core.predict.jobs`). So ``--resume`` reads the rows
already written and the jobs side by side, checks that each row's id and ``path`` cells are
those of its job (a folder or catalogue that changed since is refused, never patched), and
classifies from the first job without a row. A catalogue naming the same file twice gets two
rows, as in a run that was never stopped; nothing is held in memory per row.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from galaxy_core.errors import GalaxyError
from galaxy_core.model.calibrated import views_for
from galaxy_core.model.folder import ModelInfo
from galaxy_core.model.ood import WARN_AT
from galaxy_core.model.prior import training_prior
from galaxy_core.predict.classify import Prediction, finish_prepared
from galaxy_core.predict.jobs import Job, cell
from galaxy_core.predict.population import PriorUsed, apply_prior
from galaxy_core.predict.plausibility import MAY_BE_GALAXY_VERDICT
from galaxy_core.predict.prior_pass import prior_cell, settle_prior
from galaxy_core.predict.run_record import check_resume, record_of, write_record
from galaxy_core.predict.stream import prepared_batches
from galaxy_core.predict.writers import CsvOutput, Output, OutputError, Row, open_output

PREDICT_COLUMNS = ("path", "label", "p_spiral", "p_elliptical", "ood_score", "ood_verdict",
                   "ood_findings", "survey_matched", "error", "notes", "prior")
"""The columns of every ``galaxy predict`` output, after any ``--id-columns``."""
SKIPPED = "skipped: "


def output_columns(id_columns: Sequence[str], accepted: bool,
                   box: bool = False) -> tuple[str, ...]:
    """The output's columns: the ids, :data:`PREDICT_COLUMNS`, then ``accepted`` with
    ``--accept-at`` and ``box`` when regions are classified (``--box``, box columns), so an
    output without either keeps the columns it always had."""
    clash = [c for c in id_columns if c in PREDICT_COLUMNS or c in ("accepted", "box")]
    if clash:
        raise GalaxyError(f"--id-columns {', '.join(clash)}: the output has its own column of "
                          "that name; rename the catalogue column")
    return (*id_columns, *PREDICT_COLUMNS, *(("accepted",) if accepted else ()),
            *(("box",) if box else ()))


Engine = Callable[[Iterable[Job]], Iterator[list[tuple[Job, Prediction]]]]
"""Jobs in, their predictions out, in input order and in batches."""


@dataclass(frozen=True)
class PredictOptions:
    """How to run: the ``galaxy predict`` options that are not about the inputs."""

    output: str | Path | None = None
    """CSV file, Parquet folder (``.parquet``), or None for CSV on stdout."""
    resume: bool = False
    survey: str = "auto"
    batch_size: int = 32
    views: int | None = None
    """Views averaged (1, 4 or 8); None: the model's own setting."""
    workers: int = 0
    prior: str | float = "train"
    threshold: float | None = None
    """``--accept-at``'s confidence threshold; adds the column ``accepted``."""
    id_columns: tuple[str, ...] = ()
    box: bool = False
    """Regions of pictures are classified (``--box``, a catalogue's box columns): adds the
    column ``box``, each row's region (empty: the whole picture)."""


@dataclass
class Tally:
    """What the output holds, counting rows written before a resume."""

    resumed: int = 0
    written: int = 0
    failed: int = 0
    skipped: int = 0
    unusual: int = 0
    framed: int = 0
    """Of the unusual inputs, those flagged only for their framing (``Prediction.may_be_galaxy``,
    the ``ood_verdict`` :data:`~galaxy_core.predict.plausibility.MAY_BE_GALAXY_VERDICT`)."""
    prior: PriorUsed | None = None

    @property
    def rows(self) -> int:
        return self.resumed + self.written

    def count_row(self, row: Row) -> None:
        error = row["error"]
        self.skipped += error.startswith(SKIPPED)
        self.failed += bool(error) and not error.startswith(SKIPPED)
        self.unusual += row["ood_score"] not in ("", "nan") and float(row["ood_score"]) > WARN_AT
        self.framed += row["ood_verdict"] == MAY_BE_GALAXY_VERDICT

    def count(self, pred: Prediction) -> None:
        self.written += 1
        self.failed += pred.failed
        self.skipped += pred.skipped
        self.unusual += pred.unusual
        self.framed += pred.may_be_galaxy


@dataclass
class PredictionRun:
    """One ``galaxy predict`` run; see the module docstring for the steps."""

    loaded: ModelInfo
    options: PredictOptions
    stream: IO[str] | None = None
    """Where CSV goes without ``--output`` (default: stdout)."""
    tally: Tally = field(default_factory=Tally)
    notes: list[str] = field(default_factory=list)
    """What the caller should tell the user (one line each)."""

    def __post_init__(self) -> None:
        opts = self.options
        self.columns = output_columns(opts.id_columns, opts.threshold is not None, opts.box)
        self.key_columns = (*opts.id_columns, "path")
        self.train = training_prior(self.loaded.meta)
        if opts.prior == "estimate":
            if self.train is None:
                apply_prior([], self.loaded.meta, 0.5)  # raises: no training mix recorded
            self.batch_prior = PriorUsed(self.train, "train")
        else:
            self.batch_prior = apply_prior([], self.loaded.meta, opts.prior)
        self.tally.prior = self.batch_prior
        self._settle = opts.prior == "estimate"
        self._temp: tempfile.TemporaryDirectory | None = None
        if opts.output is None and self._settle:  # the pass needs a file; stdout gets it after
            self._temp = tempfile.TemporaryDirectory(prefix="galaxy-predict-")
            self.output: Output = CsvOutput(Path(self._temp.name) / "rows.csv", self.columns)
        else:
            existed = opts.output is not None and Path(opts.output).exists()
            self.output = open_output(opts.output, self.columns, opts.resume, self.stream)
            if opts.output is not None:
                try:
                    self._record(Path(opts.output), resuming=opts.resume and existed)
                except BaseException:
                    self.output.close()
                    raise

    def _record(self, output: Path, resuming: bool) -> None:
        """Check a resumed output's run record against this run (refusing rows of another
        kind), then record this run's options beside the output."""
        record = record_of(self.loaded, views_for(self.loaded, self.options.views),
                           self.options.survey)
        if resuming:
            check_resume(output, record, has_rows=self._has_rows())
        write_record(output, record)

    def _has_rows(self) -> bool:
        """Whether the output holds a row yet (reads one cell of the first)."""
        return next(iter(self.output.rows(["path"])), None) is not None

    # --- the steps ----------------------------------------------------------------------------
    def skip_done(self, jobs: Iterable[Job]) -> Iterator[Job]:
        """Check the rows already written against the first jobs and pass them over; returns
        the jobs still to do. Reads every written row once, holding none."""
        it = iter(jobs)
        if not self.options.resume:
            return it
        target = prior_cell(self.batch_prior.fraction)
        read = dict.fromkeys((*self.key_columns, "error", "ood_score", "ood_verdict", "prior",
                              "p_spiral"))
        for number, row in enumerate(self.output.rows(list(read)), start=1):
            job = next(it, None)
            found = tuple(row[c] for c in self.key_columns)
            if job is None:
                raise OutputError(f"{self.output.name} has more rows than there are inputs (row "
                                  f"{number} is {', '.join(found)}): the inputs changed since "
                                  "it was written; choose another --output")
            if not same_key(found, job.key()):
                raise OutputError(f"row {number} of {self.output.name} is for "
                                  f"{', '.join(found)} but input {number} is now "
                                  f"{', '.join(job.key())}: the inputs changed since it was "
                                  "written (resume with the same inputs in the same order), or "
                                  "choose another --output")
            self.tally.resumed += 1
            try:
                self.tally.count_row(row)
            except ValueError:  # float('abc'): the message would name neither file nor row
                raise OutputError(f"row {number} of {self.output.name} has an ood_score that "
                                  f"is not a number ({row['ood_score'][:40]!r}): it was changed "
                                  "since galaxy predict wrote it; choose another --output") \
                    from None
            self._settle = self._settle or (not row["error"] and row["prior"] != target)
        return it

    def classify(self, jobs: Iterable[Job], progress: Callable[[int], None] | None = None,
                 engine: Engine | None = None) -> None:
        """Classify ``jobs`` batch by batch, appending each batch's rows as it is done.
        ``engine`` makes the answers (jobs -> batches of (job, prediction) in input order);
        by default this process's network with worker processes reading ahead. The Ray
        engine (:mod:`galaxy_core.predict.ray_engine`) plugs in here, so the rows, the
        output and ``--resume`` are the same whichever made them."""
        from threadpoolctl import threadpool_limits

        batches = (engine or self._local)(jobs)
        try:
            # numpy's BLAS on one thread: the main process's only BLAS work is the OOD score's
            # small matrix products, and BLAS threads spinning beside the network and the
            # reading workers made them 25 times slower (20 ms a batch instead of 0.8)
            with threadpool_limits(limits=1, user_api="blas"):
                for batch in batches:
                    preds = [pred for _, pred in batch]
                    if self.batch_prior.source == "given":
                        apply_prior(preds, self.loaded.meta, self.batch_prior.fraction)
                    self.output.append([self._row(job, pred) for job, pred in batch])
                    for pred in preds:
                        self.tally.count(pred)
                    if progress:
                        progress(len(batch))
        except MemoryError:
            raise self._out_of_memory("") from None
        except RuntimeError as exc:  # torch: "DefaultCPUAllocator: can't allocate memory"
            if "alloc" not in str(exc).lower():
                raise
            raise self._out_of_memory(str(exc)) from None
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # stops the workers, also on Ctrl-C

    def _out_of_memory(self, said: str) -> GalaxyError:
        """An allocation that failed while classifying, as one line saying what to do (the
        allocator's own message is a traceback's last line, naming nothing of the run)."""
        opts = self.options
        where = (f"the rows before this batch are in {opts.output}: continue with --resume and"
                 if opts.output is not None else "try again with")
        detail = f" ({' '.join(said.split())[:120]})" if said else ""
        return GalaxyError(f"out of memory while classifying{detail}; {where} a smaller "
                           f"--batch-size (now {opts.batch_size}) or fewer --workers (now "
                           f"{opts.workers})")

    def _local(self, jobs: Iterable[Job]) -> Iterator[list[tuple[Job, Prediction]]]:
        opts = self.options
        batches = prepared_batches(jobs, self.loaded.config, opts.survey, opts.batch_size,
                                   opts.workers)
        try:
            for batch in batches:
                preds = finish_prepared(self.loaded, [prepared for _, prepared in batch],
                                        opts.batch_size, views=opts.views)
                yield [(job, pred) for (job, _), pred in zip(batch, preds)]
        finally:
            batches.close()

    def finish(self) -> Tally:
        """Apply the ``--prior`` pass if needed, close the output, and (stdout with
        ``estimate``) print it."""
        if self._settle and self.tally.rows:
            try:
                self.tally.prior = settle_prior(self.output, self.train, self.options.prior,
                                                self.options.threshold)
            except ValueError as exc:  # a cell that is not a number, in a row read back
                raise OutputError(f"{self.output.name} holds a row changed since galaxy "
                                  f"predict wrote it ({exc}); choose another --output") from None
            except GalaxyError as exc:
                if self._temp is None:
                    raise GalaxyError(f"{exc} (the rows in {self.output.name} are for the "
                                      "training mix; --resume --prior P moves them)") from None
                raise
        self.output.close()
        if self._temp is not None:
            with open(Path(self._temp.name) / "rows.csv", encoding="utf-8") as handle:
                shutil.copyfileobj(handle, self.stream or _stdout())
        return self.tally

    def close(self) -> None:
        """Release the output (its lock) and any temporary file; safe to call twice."""
        self.output.close()
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None

    # --- rows ---------------------------------------------------------------------------------
    def _row(self, job: Job, pred: Prediction) -> Row:
        row = dict(zip(self.options.id_columns, job.ids))
        row.update(pred.row())
        row["prior"] = prior_cell(self.batch_prior.fraction) if pred.ok else ""
        if self.options.threshold is not None:
            row["accepted"] = int(pred.accepted(self.options.threshold)) if pred.ok else ""
        if self.options.box:
            row["box"] = pred.box
        return {column: cell(value) for column, value in row.items()}


def same_key(found: tuple[str, ...], key: tuple[str, ...]) -> bool:
    """Whether a written row's id and ``path`` cells (``found``) are those of the job whose
    ``key`` is given. The ids must be equal; the paths may differ in form only: the same folder
    given once as ``imgs`` and once as ``/home/me/imgs`` (or ``./imgs``) names the same files,
    so its resume is not refused. Both are made absolute against the working folder, as the
    reads themselves are; links are not followed (a link to another folder names other
    files)."""
    if found == key:
        return True
    if len(found) != len(key) or found[:-1] != key[:-1]:
        return False
    return os.path.abspath(found[-1]) == os.path.abspath(key[-1])


def _stdout() -> IO[str]:
    import sys

    return sys.stdout


__all__ = ["PREDICT_COLUMNS", "PredictOptions", "PredictionRun", "Tally", "output_columns"]
