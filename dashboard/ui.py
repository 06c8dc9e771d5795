"""Small presentation helpers: one-line errors instead of tracebacks, images sized for the screen,
and cached Grad-CAM overlays."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def require_app() -> None:
    """Called first by every page. With a ``pages/`` folder, Streamlit runs a page file on its own
    (its old multipage mode) until ``st.navigation`` has been called once in the process, e.g. when
    the first request after a restart is a bookmarked /evaluate. Switch that mode off and rerun
    through app.py, so the sidebar and model selector are always there."""
    if getattr(_run, "inside", False):
        return
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False
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


@st.cache_data(max_entries=512, show_spinner=False)
def cam_overlay(_loaded, model_key: str, image: np.ndarray, target: int) -> np.ndarray:
    """Grad-CAM of ``target`` on ``image`` (uint8, as the model saw it), blended over it."""
    from dashboard.models import lock
    from galaxy_core.explain.gradcam import gradcam, overlay

    image = np.array(image)  # cached arrays come back read-only
    with lock(_loaded):
        cam = gradcam(_loaded, image, target=target)
    return overlay(image, cam)


@st.cache_data(max_entries=512, show_spinner=False)
def catalogue_input(_loaded, model_key: str, path: str) -> np.ndarray:
    """A catalogue galaxy's model input, built exactly as in training (no survey matching)."""
    from galaxy_core.data.imageio import load_image
    from galaxy_core.predict.classify import model_input

    return model_input(_loaded, load_image(Path(path)), survey="off")[0]


def cam_caption(class_name: str) -> str:
    return (f"Grad-CAM for '{class_name}' (last convolutional block): red areas pushed "
            f"the network towards {class_name}, blue ones did not.")
