"""Jobs to prepared batches, with the reading done by worker processes while the main process
runs the network.

Everything before the network (reading and decoding the file, survey matching, the crop and
resize, the picture checks and the whole-picture frame: :func:`~galaxy_core.predict.framing.
prepare_source`) needs only the model's settings, so ``workers`` processes do it for the
batches ahead while the network works on the current one. The batches are the same
consecutive groups of ``batch_size`` jobs whether the work is done in workers or in process,
and the same functions run in both, so the answers are identical.

Memory stays bounded whatever the number of jobs: jobs are taken from the (lazy) input only as
far as :data:`AHEAD_BATCHES` batches ahead of the network, and every batch is handed on and
dropped.

Workers are started with ``spawn`` (a fresh interpreter each: forking a process whose torch
thread pools are running is unsafe) and import no torch (:mod:`galaxy_core.predict.framing`),
so each costs about 70 MB, not 700; they ignore Ctrl-C, which the main process handles. A run of
one batch or less is prepared in process: starting workers would cost more than it saves.

The pool is shut down and waited for before the batches' iterator returns, also on Ctrl-C or an
error (its workers are then ended first, so the wait is short): a pool left to finish on its
own raced the interpreter's exit, which now and then printed "Exception ignored in threading
... Bad file descriptor" after a finished run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import chain, islice

from galaxy_core.config import Config
from galaxy_core.data.pool import steady_malloc
from galaxy_core.errors import GalaxyError
from galaxy_core.predict.framing import Prediction, Prepared, prepare_source
from galaxy_core.predict.jobs import Job

AHEAD_BATCHES = 2
"""Batches of jobs handed to the workers beyond the one the network is on."""
MAX_TASK = 8
"""Jobs per worker task at most: small enough that a batch spreads over every worker."""

Batch = list[tuple[Job, Prepared]]


def prepare_job(job: Job, config: Config, survey: str) -> Prepared:
    """One job read and framed (or its problem as the row's error)."""
    if job.source is None:
        return Prepared(Prediction(source=job.name, error=job.problem))
    return prepare_source(config, job.source, survey, job.box)


_WORKER: dict[str, object] = {}
PARENT_CHECK_SECONDS = 1.0


def _exit_with_parent(parent: int) -> None:
    """End this worker once its parent is gone. A parent killed with ``kill -9`` cannot stop
    its workers, and they would wait for work forever: each holds a write end of the task
    queue, so none ever sees it close."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)


def _start_worker(config: Config, survey: str, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    steady_malloc()  # reading a cutout allocates large buffers: reuse them, do not remap
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    _WORKER.update(config=config, survey=survey)


def _prepare_task(jobs: list[Job]) -> list[Prepared]:
    config, survey = _WORKER["config"], _WORKER["survey"]
    return [prepare_job(job, config, survey) for job in jobs]  # type: ignore[arg-type]


def _chunks(items: Iterable[Job], size: int) -> Iterator[list[Job]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def prepared_batches(jobs: Iterable[Job], config: Config, survey: str = "auto",
                     batch_size: int = 32, workers: int = 0) -> Iterator[Batch]:
    """The jobs in consecutive batches of ``batch_size`` (the last may be smaller), each job
    with its :class:`~galaxy_core.predict.framing.Prepared`; ``workers`` processes prepare
    them (0: this process). Close the iterator (or exhaust it) to stop the workers."""
    it = iter(jobs)
    first = list(islice(it, batch_size + 1))
    if workers <= 0 or len(first) <= batch_size:
        for chunk in _chunks(chain(first, it), batch_size):
            yield [(job, prepare_job(job, config, survey)) for job in chunk]
        return
    yield from _pooled(chain(first, it), config, survey, batch_size, workers)


def _pooled(jobs: Iterator[Job], config: Config, survey: str, batch_size: int,
            workers: int) -> Iterator[Batch]:
    task = max(1, min(MAX_TASK, -(-batch_size // workers)))
    limit = (AHEAD_BATCHES + 1) * batch_size
    tasks = _chunks(jobs, task)
    pending: deque[tuple[list[Job], Future]] = deque()
    in_flight = 0
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_start_worker,
                               initargs=(config, survey, os.getpid()),
                               mp_context=multiprocessing.get_context("spawn"))
    try:
        def top_up() -> None:
            nonlocal in_flight
            while in_flight < limit and (chunk := next(tasks, None)) is not None:
                pending.append((chunk, pool.submit(_prepare_task, chunk)))
                in_flight += len(chunk)

        batch: Batch = []
        try:
            top_up()
            while pending:
                chunk, future = pending[0]
                results = future.result()
                pending.popleft()
                in_flight -= len(chunk)
                batch.extend(zip(chunk, results))
                top_up()
                while len(batch) >= batch_size:
                    yield batch[:batch_size]
                    batch = batch[batch_size:]
        except BrokenProcessPool:
            where = pending[0][0][0].name[:200] if pending else "?"
            raise GalaxyError(f"a worker process died (out of memory, or a decoder crashed) "
                              f"reading one of the {in_flight} inputs from {where} on; the rows "
                              "before them are written. Find the file with --workers 0, move it "
                              "away and continue with --resume") from None
        if batch:
            yield batch
    except BaseException:
        _end_workers(pool)  # Ctrl-C, an error, or the iterator closed early: stop at once
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _end_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate ``pool``'s worker processes, so that waiting for the pool to shut down does
    not wait for the files they are reading (a big one can take seconds)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


__all__ = ["Batch", "prepare_job", "prepared_batches"]
