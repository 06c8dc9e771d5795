"""The Grad-CAM picture of each galaxy of a class, made once when the class is created and kept
in the classroom's database, so thirty students revealing answers at the same moment never wait
on the network.

Each map is made exactly as the dashboard's Classify and Failures pages make one for a
catalogue galaxy: the SDSS cutout is turned into the model input as in training (no survey
matching), Grad-CAM is taken for the class the network answered (averaged over the same 8
rotations and flips as its prediction), blended over that input and enlarged for the screen.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from galaxy_core.classroom.store import Galaxy
from galaxy_core.data.imageio import load_image
from galaxy_core.data.prepared import PreparedData
from galaxy_core.explain.gradcam import gradcam, overlay
from galaxy_core.model.store import LoadedModel
from galaxy_core.predict.classify import model_input

CAM_SIZE = 288
"""Side in pixels of the stored picture: the 96 px model input enlarged (bicubic) once, here,
so a reveal sends stored bytes as they are."""


def png(image: np.ndarray, size: int = CAM_SIZE) -> bytes:
    """A uint8 RGB array as PNG bytes, enlarged to ``size`` on its long side."""
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if picture.width < size:
        picture = picture.resize((size, round(size * picture.height / picture.width)),
                                 Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def cam_picture(loaded: LoadedModel, path: Path, target: str) -> bytes:
    """PNG of the Grad-CAM of class ``target`` over one catalogue galaxy's model input."""
    image, _ = model_input(loaded, load_image(path), survey="off")
    image = np.array(image)  # a writable copy for torch
    cam = gradcam(loaded, image, target=loaded.classes.index(target))
    return png(overlay(image, cam))


def with_cams(loaded: LoadedModel, prepared: PreparedData, galaxies: Sequence[Galaxy],
              progress: Callable[[int, int], None] | None = None,
              lock: AbstractContextManager | None = None) -> list[Galaxy]:
    """``galaxies`` with their Grad-CAM pictures, for the network's own answer of each.
    Image names are resolved with :meth:`PreparedData.image_path` (none can point outside the
    prepared data's image folder); a missing or unreadable file raises the loader's
    one-line error. ``lock`` (a model's lock, shared with other users of the same loaded
    network) is held around each map only, so others wait one map, never the whole class."""
    done: list[Galaxy] = []
    for i, galaxy in enumerate(galaxies):
        path = prepared.image_path(galaxy.image)
        with lock if lock is not None else nullcontext():
            picture = cam_picture(loaded, path, galaxy.model_label)
        done.append(replace(galaxy, cam=picture))
        if progress:
            progress(i + 1, len(galaxies))
    return done
