"""Large uploads on the Classify page: decoded one at a time, kept small, and given back.

A visitor's upload lives in Streamlit's in-memory upload store for as long as the session does:
a session whose tab was closed is kept for reconnection, and Streamlit (1.67) drops a session's
files only when it shuts the session down, which an expired disconnected session never is. A
150 MB FITS file decoded whole took about 2 GB more; three at once took the server from 1.7 to
5.3 GB, and 6.5 GB stayed after the tabs were closed (benchmarks/bench_upload_memory.py). So a large upload (more than
:data:`LARGE_UPLOAD_BYTES`) is

* decoded while holding a process-wide slot (:data:`LARGE_DECODES` at a time; the others wait
  with a message saying they are queued), by the one image loader, which streams large FITS
  data in blocks (``galaxy_core.data.imageio``);
* framed: the decoded picture, at most :data:`MAX_SIDE` px on its long side, is kept as a
  lossless PNG in the session (a few MB), which is what classification, a change of model or
  survey mode and the survey-matching view read from then on;
* given back: its bytes are dropped from the ``UploadedFile`` objects and from the upload store
  (whose record is replaced by an empty one, so the widget still lists the file), and freed heap
  memory is returned to the system (``dashboard.memory``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from galaxy_core.data.imageio import FITS_MAX_SIDE, decoded_size, read_image
from galaxy_core.errors import GalaxyError

log = logging.getLogger("galaxy_dashboard")

LARGE_UPLOAD_BYTES = 20 * 10**6
"""Uploads above this size (20 MB), as a file or once decoded (:func:`is_large`), are decoded in
the shared slot and framed."""
LARGE_DECODES = 1
"""How many large uploads are decoded at once in this server process."""
MAX_SIDE = FITS_MAX_SIDE
"""Longest side of a framed picture (what the loader decodes large FITS images to)."""
WAIT_STEP = 0.5
"""Seconds between checks while queued (each check lets Streamlit stop a closed session)."""

_SLOTS = threading.BoundedSemaphore(LARGE_DECODES)
_waiting_lock = threading.Lock()
_waiting = 0


@dataclass
class FramedUpload:
    """What the session keeps of a large upload once it has been decoded."""

    name: str
    png: bytes = b""
    """The decoded picture (at most MAX_SIDE px) as a lossless PNG; empty when it failed."""
    digest: str = ""
    error: str = ""
    notes: list[str] = field(default_factory=list)
    """The loader's notes on the original file (format, stretch, downsampling)."""
    original_size: tuple[int, int] = (0, 0)
    size_bytes: int = 0


def is_large(data: bytes) -> bool:
    """Whether an upload takes the large path: its file, or the picture it decodes to (from the
    header: a 314 KB float TIFF holds 1.5 GB of work), is over :data:`LARGE_UPLOAD_BYTES`."""
    return decoded_size(data) > LARGE_UPLOAD_BYTES


def waiting() -> int:
    """Large uploads waiting for a slot right now (all sessions)."""
    return _waiting


@contextmanager
def decode_slot(on_wait: Callable[[int], None] | None = None,
                slots: threading.BoundedSemaphore | None = None) -> Iterator[None]:
    """Hold one of the process-wide large-decode slots for the block.

    When none is free, ``on_wait(ahead)`` is called every :data:`WAIT_STEP` s while waiting
    (``ahead``: the other decodes running or waiting), which is where the page says it is
    queued; since that call draws on the page, Streamlit can stop a session closed meanwhile."""
    global _waiting
    slots = slots or _SLOTS
    if not slots.acquire(blocking=False):
        with _waiting_lock:
            _waiting += 1
        try:
            while True:
                if on_wait is not None:
                    on_wait(_waiting - 1 + LARGE_DECODES)
                if slots.acquire(timeout=WAIT_STEP):
                    break
        finally:
            with _waiting_lock:
                _waiting -= 1
    try:
        yield
    finally:
        slots.release()


def frame_upload(name: str, data: bytes) -> FramedUpload:
    """Decode one large upload and keep only a framed copy of it (never raises for the file's
    sake: a file that cannot be read gives a FramedUpload with ``error``)."""
    started = time.perf_counter()
    try:
        loaded = read_image(data, name=name)
    except GalaxyError as exc:
        return FramedUpload(name=name, error=str(exc), size_bytes=len(data))
    image, notes, original = loaded.image, list(loaded.notes), loaded.original_size
    del loaded
    factor = -(-max(image.size) // MAX_SIDE)
    if factor > 1:
        before = image.size
        image = image.reduce(factor)  # box average, like the FITS loader's blocks
        notes.append(f"large image averaged over {factor}x{factor} pixel blocks "
                     f"({before[0]}x{before[1]} -> {image.width}x{image.height})")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    png = buffer.getvalue()
    log.info("framed %s (%d bytes) in %.1f s", name, len(data), time.perf_counter() - started)
    return FramedUpload(name=name, png=png, digest=hashlib.sha1(png).hexdigest(), notes=notes,
                        original_size=original, size_bytes=len(data))


def release(uploaded: object, copies: Iterable[object] | None = ()) -> bool:
    """Let go of an upload's bytes now rather than when the session ends (never, for a tab that
    was closed and not reopened).

    Three things hold them, and each is emptied: the ``UploadedFile`` the page got (a BytesIO
    sharing the bytes), the widget's value in session state (``copies``: another
    ``UploadedFile`` of the same file, which Streamlit keeps until the browser sends new widget
    states, which a rerun does not), and the record in Streamlit's upload store, which is
    replaced by an empty one so that the file stays listed in the widget. The store is reached
    through Streamlit's upload-manager interface (``add_file``, ``get_files``,
    ``UploadedFileRec``); returns False, with the store unchanged, if that is not there."""
    file_id = getattr(uploaded, "file_id", None)
    for held in [uploaded, *[c for c in copies or () if getattr(c, "file_id", None) == file_id]]:
        try:
            held.seek(0)  # type: ignore[attr-defined]
            held.truncate(0)  # type: ignore[attr-defined]  # a BytesIO drops the shared bytes
        except Exception:
            pass
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx
        from streamlit.runtime.uploaded_file_manager import UploadedFileRec

        ctx = get_script_run_ctx()
        file_id = uploaded.file_id  # type: ignore[attr-defined]
        record = UploadedFileRec(file_id=file_id, name=uploaded.name,  # type: ignore[attr-defined]
                                 type=uploaded.type, data=b"")  # type: ignore[attr-defined]
        if ctx is None or not ctx.uploaded_file_mgr.get_files(ctx.session_id, [file_id]):
            return False
        ctx.uploaded_file_mgr.add_file(ctx.session_id, record)
        return True
    except Exception as exc:  # an internal interface changed: memory is freed at session end
        log.warning("cannot release an upload from Streamlit's store: %s", exc)
        return False
