"""Image decoding spread over worker processes, for ``galaxy prepare --workers N``: the work a
worker does (check a chunk of images, decode and frame a chunk) and the pool that hands it out.

Decoding and cropping a 423 px JPEG is CPU work done mostly in Python and PIL while the GIL is
held (the crop, the galaxy finder, the numpy conversion), so threads do not scale it; processes
do. Work goes out in chunks of consecutive items and the results come back in item order,
whatever the number of workers, so everything built from them (the cache, the drop reasons) is
the same with one worker or many.

The worker functions live here, beside the pool, because this module imports only what
decoding needs: the fork server imports it once and every worker is a fork of that, ready at
once (the modules that call it pull in pandas and scikit-learn, seconds of start-up per worker
on a busy machine). One worker runs in the calling process: no pool, the plain reference path.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from galaxy_core.data.duplicates import fingerprint
from galaxy_core.data.image_roots import ImageRoots
from galaxy_core.data.imageio import load_image
from galaxy_core.data.preprocess import crop_and_resize
from galaxy_core.errors import DataNotFoundError, GalaxyError, ImageLoadError

T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[int, int], None]
"""``progress(done, total)`` in items, after every chunk."""

AHEAD_PER_WORKER = 2
"""Chunks handed out per worker before the oldest is collected: enough to keep every worker
busy while the caller stores a result, few enough that memory holds a handful of chunks, never
the whole job."""


class WorkerError(GalaxyError):
    """A worker process died (killed, out of memory) instead of returning its chunk."""


MISSING, UNREADABLE = "missing", "unreadable"
"""What :func:`probe_chunk` says of an image it could not use (``""`` for a usable one)."""


def probe_chunk(names: Sequence[str], roots: ImageRoots) -> list[tuple[str, str, bytes]]:
    """For each image named (as the prepared table names it, see :class:`ImageRoots`):
    ``(MISSING | UNREADABLE | "", sha1 of its bytes, its fingerprint)``, decoding each one
    fully, as a check must, and taking the fingerprint that finds the same galaxy under
    another id (:mod:`galaxy_core.data.duplicates`) from the decoded image while it is here;
    a name that reaches outside its folder counts as missing. The names are checked here, in the
    workers, not one by one in the calling process."""
    out = []
    for name in names:
        path = roots.resolve(name)
        if path is None or not path.is_file():
            out.append((MISSING, "", b""))
            continue
        try:
            data = path.read_bytes()
            image = load_image(data)
        except (ImageLoadError, OSError):
            out.append((UNREADABLE, "", b""))
            continue
        out.append(("", hashlib.sha1(data).hexdigest(), fingerprint(image)))
    return out


def decode_chunk(paths: Sequence[Path], crop_fraction: float, size: int,
                 crop_radii: float = 0.0) -> np.ndarray:
    """Decode, crop and resize a chunk of images into (n, size, size, 3) uint8."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        out[i] = crop_and_resize(load_image(path), crop_fraction, size, crop_radii)
    return out


def decode_named_chunk(names: Sequence[str], roots: ImageRoots, crop_fraction: float,
                       size: int, crop_radii: float = 0.0) -> np.ndarray:
    """:func:`decode_chunk` of images named as the prepared table names them; a name reaching
    outside its folder is an error (the table was edited by hand)."""
    paths = []
    for name in names:
        path = roots.resolve(name)
        if path is None:
            raise DataNotFoundError(f"image name {name!r} points outside {roots.describe()}")
        paths.append(path)
    return decode_chunk(paths, crop_fraction, size, crop_radii)


@dataclass(frozen=True)
class RowFile:
    """Where rows ``first .. first + count - 1`` of a decoding job go: a file being written
    (a ``.npy`` part of the cache) whose pixel data start at byte ``offset``."""

    path: Path
    offset: int
    first: int
    count: int


def decode_into_files(rows: Sequence[tuple[int, str]], roots: ImageRoots, files: Sequence[RowFile],
                      crop_fraction: float, size: int, crop_radii: float = 0.0) -> int:
    """:func:`decode_named_chunk` of consecutive ``(row, name)`` items, each image written at
    its row's place in the file it belongs to (a chunk may straddle two); returns the number
    of rows written.

    The worker writes its pixels itself instead of sending them back: a chunk is a megabyte,
    which the worker pickled and the calling process unpickled and wrote again (0.29 s of
    the calling process's CPU for 5,829 images at 96 px, 0.13 s now), on the same cores
    the workers decode on. Rows never overlap, so workers write side by side; whoever owns
    the file syncs it before it is renamed into place."""
    if not rows:
        return 0
    pixels = decode_named_chunk([name for _, name in rows], roots, crop_fraction, size,
                                crop_radii)
    start, end, row_bytes = rows[0][0], rows[-1][0] + 1, size * size * 3
    for target in files:
        lo, hi = max(start, target.first), min(end, target.first + target.count)
        if lo >= hi:
            continue
        data = memoryview(np.ascontiguousarray(pixels[lo - start:hi - start])).cast("B")
        fd = os.open(target.path, os.O_WRONLY)
        try:
            position = target.offset + (lo - target.first) * row_bytes
            while data:
                written = os.pwrite(fd, data, position)
                data, position = data[written:], position + written
        finally:
            os.close(fd)
    return len(rows)


def default_workers() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_workers(workers: int) -> int:
    """A usable worker count, or a one-line error (0 or a negative number does no work)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise GalaxyError(f"the number of workers must be a whole number >= 1, got {workers!r}")
    return workers


MMAP_THRESHOLD = 8 << 20
"""Blocks up to this size come from the heap in a worker, not from a fresh ``mmap`` (glibc)."""
TRIM_THRESHOLD = 32 << 20
"""Free heap a worker keeps instead of handing it back to the kernel at once (glibc)."""


def steady_malloc() -> None:
    """Let this process reuse the memory it frees instead of mapping it afresh each time.

    glibc serves a block over 128 KB with its own ``mmap`` and unmaps it when freed, so every
    423 px picture decoded (a 537 KB buffer, and the float copies the galaxy finder makes)
    faulted its pages in again: in a fresh worker process that made checking a cutout cost
    1.3-1.5 ms of CPU instead of 0.6. A long-running process escapes this by itself (glibc
    raises the threshold once large blocks are freed), which is why the same work ran 60 %
    faster in the calling process. A no-op where the C library has no ``mallopt``."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, MMAP_THRESHOLD)
    mallopt(m_trim_threshold, TRIM_THRESHOLD)


def _start_worker() -> None:
    _ignore_sigint()
    steady_malloc()


def _ignore_sigint() -> None:
    """Workers ignore Ctrl-C: the terminal sends it to the whole process group, and the parent
    alone decides what to do (stop handing out chunks, clean up its temporary files); a worker
    finishes its chunk and exits with the pool instead of printing a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _context() -> multiprocessing.context.BaseContext:
    """A start method that is safe in a process that already runs threads (torch, tqdm,
    Streamlit): a fork server started clean, with this module (and so the decoders) imported
    once in it, so each worker starts by a cheap fork of that. Spawn where there is no fork
    server."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _ready() -> int:
    return os.getpid()


class Workers:
    """``n`` worker processes kept for several :func:`run_chunks` calls, so a job of several
    passes (``galaxy prepare`` checks every image, then decodes the kept ones) starts them
    once. They start in the background as soon as the pool is entered: the fork server's
    imports (numpy, PIL, scipy) take a third of a second on another core while the caller goes
    on reading its tables, instead of the caller waiting for them. ``n == 1`` is the calling
    process itself: no pool, the plain reference path."""

    def __init__(self, n: int) -> None:
        self.n = check_workers(n)
        self.pool: ProcessPoolExecutor | None = None
        self._starting: threading.Thread | None = None

    def __enter__(self) -> Workers:
        if self.n > 1:
            self.pool = ProcessPoolExecutor(max_workers=self.n, mp_context=_context(),
                                            initializer=_start_worker)
            self._starting = threading.Thread(target=self._start, args=(self.pool,),
                                              name="galaxy-workers-start", daemon=True)
            self._starting.start()
        return self

    def _start(self, pool: ProcessPoolExecutor) -> None:
        """Launch the processes: the first submit forks them all, and blocks until the fork
        server is ready. A later submit from the caller waits for this one (the executor
        serialises them), so nothing is ever handed out before the workers exist. A failure
        here resurfaces on the caller's own first submit."""
        try:
            for _ in range(self.n):
                pool.submit(_ready)
        except Exception:  # noqa: BLE001 - the caller's submit raises it again, in its thread
            pass

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (waiting for the chunk each is on); safe to call twice."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def run_chunks(work: Callable[[Sequence[T]], R], items: Sequence[T],
               store: Callable[[int, R], None], workers: int | Workers = 1,
               chunk_size: int = 32, progress: Progress | None = None) -> None:
    """Call ``store(start, work(items[start:start + chunk_size]))`` for every chunk, in order.

    ``workers`` is a number of processes (a pool is started for this call) or a running
    :class:`Workers` to use. ``work`` must be a module-level function (or a
    ``functools.partial`` of one) so it can be sent to a worker, best one of this module's
    (already imported in every worker); ``store`` runs in this process. At most
    ``AHEAD_PER_WORKER`` chunks per worker are in flight. An exception in ``work`` is raised
    here; on any exception, Ctrl-C included, no further chunk is started and the pool is shut
    down before it propagates. Workers start by importing the caller's main module, so a
    script that asks for more than one worker must guard its entry point
    (``if __name__ == "__main__"``), as the ``galaxy`` command does.
    """
    if not isinstance(workers, Workers):
        chunks = -(-len(items) // max(1, chunk_size))
        with Workers(max(1, min(check_workers(workers), chunks))) as pool:
            run_chunks(work, items, store, pool, chunk_size, progress)
        return
    total, chunk_size = len(items), max(1, chunk_size)
    starts = range(0, total, chunk_size)
    if workers.pool is None or len(starts) <= 1:
        for start in starts:
            chunk = items[start:start + chunk_size]
            store(start, work(chunk))
            if progress:
                progress(start + len(chunk), total)
        return
    pool, n = workers.pool, workers.n
    pending: deque[tuple[int, Future]] = deque()
    try:
        queue = iter(starts)
        for start in queue:
            pending.append((start, pool.submit(work, items[start:start + chunk_size])))
            if len(pending) >= n * AHEAD_PER_WORKER:
                break
        while pending:
            start, future = pending.popleft()
            result = future.result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(work, items[nxt:nxt + chunk_size])))
            store(start, result)
            if progress:
                progress(min(start + chunk_size, total), total)
    except BrokenProcessPool:
        raise WorkerError(f"a worker process died while decoding images (out of memory or "
                          f"killed); try fewer --workers than {n}") from None
    except BaseException:
        workers.close()  # no further chunk: the pool goes down before the error propagates
        raise
