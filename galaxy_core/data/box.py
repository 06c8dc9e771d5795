"""A box around the galaxy a person means: read, checked against the picture, and cut out.

A press picture often holds several galaxies, or its galaxy is off-centre or cut by the frame,
and the finder (:mod:`galaxy_core.data.galaxy_finder`) then has to guess which one is meant.
A box lets the person say it: ``galaxy predict --box x0,y0,x1,y1``, a catalogue's ``box_x0,
box_y0, box_x1, box_y1`` columns, or the Classify page's chooser. The box's pixels are then
classified exactly as if they were the file (:func:`crop_to_box`): survey matching, the
model's crop and resize, the picture checks and Grad-CAM all see only the region.

Coordinates are pixels of the picture as it is shown (x to the right, y down, from the top-left
corner; a JPEG turned by its EXIF tag is counted upright), at the file's full resolution, even
when the loader averaged a large picture down: the numbers someone reads off an image viewer.
``x1``/``y1`` are exclusive, like Pillow's crop box, so ``0,0,W,H`` is the whole picture.

Pure image geometry: no model, no Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from galaxy_core.data.galaxy_finder import TRAINING_RADIUS_FRACTION, GalaxyBox
from galaxy_core.errors import GalaxyError

MIN_SIDE = 8
"""Smallest box side (px): a region smaller than this holds no galaxy the model could judge."""
OFF_CENTRE = 0.1
"""Distance of the galaxy from the frame centre (fraction of the shorter side) from which the
chooser is offered: 95 % of training cutouts centre their galaxy within 0.055, and at 0.1 the
finder's centre weighting (:data:`~galaxy_core.data.galaxy_finder.CENTRE_SCALE`) already
scores a source at a fifth of its flux, so its choice is a guess."""
BOX_COLUMNS = ("box_x0", "box_y0", "box_x1", "box_y1")
"""The catalogue columns that give a row its box (all four, or none)."""
FORMAT = "x0,y0,x1,y1"


class BoxError(GalaxyError):
    """A box that cannot be used: not four numbers, negative, empty, or outside the picture."""


@dataclass(frozen=True)
class Box:
    """A region of a picture in whole pixels, right and bottom exclusive (see the module
    docstring for the coordinates)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def text(self) -> str:
        """``x0,y0,x1,y1``: what ``--box`` takes and the ``box`` column records."""
        return f"{self.x0},{self.y0},{self.x1},{self.y1}"

    def __str__(self) -> str:
        return self.text

    def contains(self, x: float, y: float) -> bool:
        """Whether the point (``x``, ``y``) lies inside the box."""
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1

    def scaled(self, source: tuple[int, int], target: tuple[int, int]) -> Box:
        """The same region in a copy of the picture of size ``target`` instead of ``source``
        (width, height): a picture the loader or the dashboard averaged down. Rounded outwards,
        so the region never loses a pixel's worth of galaxy."""
        sx, sy = target[0] / source[0], target[1] / source[1]
        return Box(max(0, math.floor(self.x0 * sx)), max(0, math.floor(self.y0 * sy)),
                   min(target[0], math.ceil(self.x1 * sx)), min(target[1], math.ceil(self.y1 * sy)))


def _number(text: str, what: str) -> int:
    """One coordinate as whole pixels (a decimal is rounded: viewers report half pixels)."""
    try:
        value = float(text)
    except ValueError:
        raise BoxError(f"{what}: {text.strip()[:40]!r} is not a number; give four pixel "
                       f"numbers {FORMAT}, e.g. 120,80,420,380") from None
    if not math.isfinite(value):
        raise BoxError(f"{what}: {text.strip()!r} is not a finite number of pixels")
    if value < 0:
        raise BoxError(f"{what}: {text.strip()} is negative; pixels count from 0 at the "
                       "picture's top-left corner")
    return int(round(value))


def parse_box(text: str, what: str = "--box") -> Box:
    """``x0,y0,x1,y1`` as a :class:`Box`, or a :class:`BoxError` saying in one line what is
    wrong (``what`` names where the text came from). Only the form is checked here; whether it
    lies inside a given picture is :func:`check_box`'s job, once the picture's size is known."""
    parts = str(text).split(",")
    if len(parts) != 4:
        raise BoxError(f"{what} {str(text).strip()[:60]!r}: give four numbers {FORMAT} "
                       f"(left, top, right, bottom in pixels), not {len(parts)}")
    x0, y0, x1, y1 = (_number(part, what) for part in parts)
    if x1 <= x0 or y1 <= y0:
        raise BoxError(f"{what} {x0},{y0},{x1},{y1} is empty: the right edge x1 must be "
                       "greater than x0 and the bottom edge y1 greater than y0")
    if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE:
        raise BoxError(f"{what} {x0},{y0},{x1},{y1} is {x1 - x0}x{y1 - y0} px: too small to "
                       f"hold a galaxy (at least {MIN_SIDE} px a side)")
    return Box(x0, y0, x1, y1)


def box_from_cells(cells: Sequence[object], what: str = "box") -> Box | None:
    """A catalogue row's box from its four :data:`BOX_COLUMNS` cells: None when all four are
    empty (the row is classified whole), else :func:`parse_box` of them."""
    texts = ["" if cell is None else str(cell).strip() for cell in cells]
    if not any(texts):
        return None
    if not all(texts):
        empty = ", ".join(name for name, text in zip(BOX_COLUMNS, texts) if not text)
        raise BoxError(f"{what}: {empty} empty; give all four of {', '.join(BOX_COLUMNS)} or "
                       "none")
    return parse_box(",".join(texts), what)


def check_box(box: Box, size: tuple[int, int], what: str = "box") -> Box:
    """``box`` itself if it lies inside a picture of ``size`` (width, height), else a
    :class:`BoxError` naming the picture's size."""
    width, height = size
    if box.x1 > width or box.y1 > height:
        raise BoxError(f"{what} {box.text} lies outside the {width}x{height} picture (x runs "
                       f"0-{width}, y 0-{height})")
    return box


def box_for_file(box: Box, path: Path) -> Box:
    """``box`` checked against the picture in the file ``path`` (``--box``), so that a box
    that does not fit is refused before anything is classified; a file that cannot be read is
    left to the run, which reports it as it reports any unreadable file."""
    from galaxy_core.data.imageio import read_image

    try:
        loaded = read_image(path)
    except GalaxyError:
        return box
    check_box(box, upright_size(loaded.original_size, loaded.image.size), "--box")
    return box


def upright_size(original: tuple[int, int], shown: tuple[int, int]) -> tuple[int, int]:
    """The full-resolution size of a picture in the orientation it is shown: ``original`` as
    stored in the file, ``shown`` as loaded (turned by an EXIF tag, or averaged down). The
    stored size is taken turned when that matches the loaded picture's shape better."""
    width, height = original
    if not (width and height and shown[0] and shown[1]):
        return shown
    aspect = shown[0] / shown[1]
    if abs(height / width - aspect) < abs(width / height - aspect):
        return height, width
    return width, height


def crop_to_box(image: Image.Image, box: Box, full_size: tuple[int, int] | None = None,
                what: str = "box") -> Image.Image:
    """The region ``box`` of ``image``, to be classified as a file of its own would be.

    ``full_size`` is the size the box's coordinates refer to (the file's full resolution,
    upright: :func:`upright_size`); None means ``image``'s own. The box is checked against it
    (:func:`check_box`) and scaled to ``image`` when ``image`` is a reduced copy."""
    full = full_size or image.size
    check_box(box, full, what)
    region = box if full == image.size else box.scaled(full, image.size)
    if region.width < 1 or region.height < 1:
        raise BoxError(f"{what} {box.text} is under a pixel of the picture as read")
    return image.crop((region.x0, region.y0, region.x1, region.y1))


def cutout_box(galaxy: GalaxyBox) -> Box:
    """The box a survey cutout would have around ``galaxy``: a square centred on it, whose
    side makes the galaxy cover the fraction of the frame it covers in training
    (:data:`~galaxy_core.data.galaxy_finder.TRAINING_RADIUS_FRACTION`), cut back to the
    picture, and never smaller than the galaxy's own outline. Clicking a candidate on the
    Classify page picks this box, so the region is framed like the cutouts the network learnt
    from rather than cut tight around the light."""
    width, height = galaxy.frame
    half = max(galaxy.radius / TRAINING_RADIUS_FRACTION, 2 * MIN_SIDE) / 2
    left, top, right, bottom = galaxy.box
    x0 = max(0, min(left, math.floor(galaxy.x - half)))
    y0 = max(0, min(top, math.floor(galaxy.y - half)))
    x1 = min(width, max(right, math.ceil(galaxy.x + half)))
    y1 = min(height, max(bottom, math.ceil(galaxy.y + half)))
    return Box(x0, y0, x1, y1)


def touches_edge(galaxy: GalaxyBox) -> bool:
    """Whether the galaxy's outline reaches the edge of the frame (cut by it, most likely)."""
    width, height = galaxy.frame
    left, top, right, bottom = galaxy.box
    return left <= 0 or top <= 0 or right >= width or bottom >= height


def reasons_to_ask(candidates: Sequence[GalaxyBox]) -> list[str]:
    """Why the finder's own choice (the first of ``candidates``,
    :func:`~galaxy_core.data.galaxy_finder.find_candidates`) may not be the galaxy meant, in
    words; empty when it is a safe guess: one bright source, near the centre, inside the frame.
    """
    if not candidates:
        return []
    reasons = []
    if len(candidates) > 1:
        reasons.append(f"the picture holds {len(candidates)} bright sources")
    first = candidates[0]
    if first.offset > OFF_CENTRE:
        reasons.append("the galaxy is off-centre")
    if touches_edge(first):
        reasons.append("the galaxy touches the edge of the picture")
    return reasons


__all__ = ["BOX_COLUMNS", "Box", "BoxError", "box_for_file", "box_from_cells", "check_box",
           "crop_to_box", "cutout_box", "parse_box", "reasons_to_ask", "touches_edge",
           "upright_size"]
