"""Small presentation helpers: the app's page list, one-line errors instead of tracebacks and
images sized for the screen. Imports nothing else of ``dashboard``, so every other module may use
it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import streamlit as st
from PIL import Image

from galaxy_core.errors import GalaxyError

log = logging.getLogger("galaxy_dashboard")

_run = threading.local()

DISPLAY_SIZE = 288
"""Side in pixels at which model inputs (32-128 px) are shown: big enough to see structure."""


def one_line(message: object, limit: int = 300) -> str:
    """Any message squeezed onto one line, cut at ``limit`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


@contextmanager
def guard(what: str = "") -> Iterator[None]:
    """Run a block of page code; a failure becomes one st.error line, never a traceback.

    Streamlit's own control flow (st.rerun, st.stop) derives from BaseException and passes through.
    """
    prefix = f"{what}: " if what else ""
    try:
        yield
    except GalaxyError as exc:
        st.error(prefix + one_line(exc))
    except Exception as exc:
        log.exception("dashboard error")
        st.error(f"{prefix}unexpected error ({type(exc).__name__}: {one_line(exc)}). "
                 "The details are in the server log.")


@contextmanager
def inside_app() -> Iterator[None]:
    """Mark the page as running inside app.py (sidebar and model selector already drawn)."""
    _run.inside = True
    try:
        yield
    finally:
        _run.inside = False


def app_pages() -> list[st.Page]:
    """The app's pages, in sidebar order (``app.py`` draws them with ``st.navigation``)."""
    return [
        st.Page("pages/classify.py", title="Classify", icon=":material/image_search:",
                default=True),
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
        st.Page("pages/failures.py", title="Failures", icon=":material/report:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/data.py", title="Data", icon=":material/dataset:"),
        st.Page("pages/teacher.py", title="Teacher", icon=":material/co_present:"),
        st.Page("pages/classroom.py", title="Classroom", icon=":material/groups:"),
        st.Page("pages/learn.py", title="Learn", icon=":material/school:"),
    ]


def require_app() -> None:
    """Called first by every page, so a page always runs inside ``app.py`` (sidebar and model
    selector drawn).

    Streamlit runs a file of a ``pages/`` folder on its own (its first, folder-based multipage
    mode) until some session has called ``st.navigation``; after that it ignores the folder for
    every session (documented in ``st.navigation``'s reference). So when the first request after
    a server start is a bookmarked page such as /evaluate, that page runs alone: it then makes
    the documented call itself, with the app's own page list (same URLs, so the same page is
    found), and reruns, which now goes through ``app.py``."""
    if getattr(_run, "inside", False):
        return
    st.navigation(app_pages(), position="hidden")
    st.rerun()


def upscale(image: np.ndarray | Image.Image, size: int = DISPLAY_SIZE) -> Image.Image:
    """Enlarge a small model input for display (bicubic; the model saw the small one)."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if img.width >= size:
        return img
    return img.resize((size, round(size * img.height / img.width)), Image.Resampling.BICUBIC)


def thumbnail(image: Image.Image, size: int = 512) -> Image.Image:
    """A copy no larger than ``size`` on its long side (huge telescope frames stay light)."""
    img = image.copy()
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return img
