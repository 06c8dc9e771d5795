"""The Classify page's "Which galaxy?" chooser: the picture with the galaxies the finder sees
outlined, where a click picks one and a drag draws a box (issue 23, part 2).

The finding and the box are galaxy_core's (:func:`~galaxy_core.data.galaxy_finder.
find_candidates`, :mod:`galaxy_core.data.box`); this module only draws them and turns a click
or a drag on the shown picture into a box. The clicking and dragging is the maintained
``streamlit-image-coordinates`` component, not one of our own; a radio and a text field do the
same without a mouse (and are what the tests drive: a component's value cannot be set from
``AppTest``).

Every box here is in pixels of the file at full resolution, upright (what ``galaxy predict
--box`` takes and the CSV's ``box`` column records), even when the page works on a copy the
loader or the large-upload path averaged down: :class:`Pointing` converts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from galaxy_core.data.box import Box, BoxError, crop_to_box, cutout_box, parse_box, reasons_to_ask
from galaxy_core.data.galaxy_finder import GalaxyBox, find_candidates

SHOWN_SIDE = 640
"""Longest side (px) of the picture the chooser shows."""
DRAG_MIN = 6
"""A press and release further apart than this (shown px) is a drag, drawing a box; closer, a
click, picking the galaxy under it."""
AUTO = "auto"
"""The chooser's first option: the whole picture, the page choosing the galaxy itself."""
BOX = "box"
"""The option for a box the person drew or typed."""
CANDIDATE_COLOUR = (120, 200, 255)
CHOSEN_COLOUR = (255, 196, 0)


@dataclass
class Pointing:
    """One picture's candidates and the geometry between its three sizes: the file's full
    resolution (``full_size``, where boxes live), the copy the page holds (``picture``), and
    the copy it shows (:meth:`shown`)."""

    picture: Image.Image
    full_size: tuple[int, int]
    candidates: list[GalaxyBox] = field(default_factory=list)

    @classmethod
    def of(cls, picture: Image.Image, full_size: tuple[int, int] | None = None) -> Pointing:
        rgb = picture.convert("RGB")
        return cls(rgb, full_size or rgb.size, find_candidates(rgb))

    @property
    def reasons(self) -> list[str]:
        """Why the page's own choice may not be the galaxy meant (empty: ask nothing)."""
        return reasons_to_ask(self.candidates)

    def _to_full(self, box: Box) -> Box:
        return box if self.picture.size == self.full_size else box.scaled(self.picture.size,
                                                                          self.full_size)

    def candidate_box(self, number: int) -> Box:
        """The box picking candidate ``number`` (1-based) means: framed like a survey cutout
        (:func:`~galaxy_core.data.box.cutout_box`), in full-resolution pixels."""
        return self._to_full(cutout_box(self.candidates[number - 1]))

    def outline(self, number: int) -> Box:
        """Candidate ``number``'s own outline (its light, not the cutout around it), in
        full-resolution pixels."""
        left, top, right, bottom = self.candidates[number - 1].box
        return self._to_full(Box(left, top, right, bottom))

    def scale(self) -> float:
        """Shown pixels per full-resolution pixel."""
        return min(1.0, SHOWN_SIDE / max(self.picture.size)) * self.picture.width \
            / self.full_size[0]

    def shown(self, chosen: Box | None) -> Image.Image:
        """The picture at most :data:`SHOWN_SIDE` px, each candidate outlined and numbered, and
        the region being classified (``chosen``; None: the whole picture) drawn thick."""
        factor = min(1.0, SHOWN_SIDE / max(self.picture.size))
        image = self.picture.resize((max(1, round(self.picture.width * factor)),
                                     max(1, round(self.picture.height * factor))),
                                    Image.Resampling.LANCZOS) if factor < 1 else self.picture.copy()
        draw = ImageDraw.Draw(image)
        scale = self.scale()
        for number in range(1, len(self.candidates) + 1):
            x0, y0, x1, y1 = (v * scale for v in _corners(self.outline(number)))
            draw.rectangle((x0, y0, x1, y1), outline=CANDIDATE_COLOUR, width=1)
            draw.text((x0 + 3, y0 + 2), str(number), fill=CANDIDATE_COLOUR)
        if chosen is not None:
            x0, y0, x1, y1 = (v * scale for v in _corners(chosen))
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=CHOSEN_COLOUR, width=3)
        return image

    def region_at(self, event: dict | None) -> tuple[str, Box | None]:
        """What a click or drag on :meth:`shown` (the component's value) chose: (the chooser's
        option, its box), or ("", None) when it chose nothing (a click on empty sky).

        A drag draws a box (clipped to the picture); a click picks the candidate whose
        outline, or failing that whose cutout, holds the point, the nearest one if several do.
        """
        if not event or "x1" not in event:
            return "", None
        ratio = event.get("width") or 0
        shown_width = max(1, round(self.picture.width * min(1.0, SHOWN_SIDE
                                                            / max(self.picture.size))))
        stretch = shown_width / ratio if ratio else 1.0  # the browser may draw it narrower
        scale = self.scale() / stretch
        xs = sorted((event["x1"] / scale, event["x2"] / scale))
        ys = sorted((event["y1"] / scale, event["y2"] / scale))
        width, height = self.full_size
        if max(abs(event["x2"] - event["x1"]), abs(event["y2"] - event["y1"])) > DRAG_MIN:
            box = Box(max(0, int(xs[0])), max(0, int(ys[0])), min(width, int(xs[1]) + 1),
                      min(height, int(ys[1]) + 1))
            try:
                return BOX, parse_box(box.text, "the box drawn")
            except BoxError:
                return "", None
        x, y = xs[0], ys[0]
        for holds in (self.outline, self.candidate_box):
            inside = [n for n in range(1, len(self.candidates) + 1) if holds(n).contains(x, y)]
            if inside:
                full = self._to_full_point
                best = min(inside, key=lambda n: (full(self.candidates[n - 1])[0] - x) ** 2
                           + (full(self.candidates[n - 1])[1] - y) ** 2)
                return str(best), self.candidate_box(best)
        return "", None

    def _to_full_point(self, galaxy: GalaxyBox) -> tuple[float, float]:
        factor = self.full_size[0] / self.picture.width
        return galaxy.x * factor, galaxy.y * factor

    def crop(self, box: Box) -> Image.Image:
        """The region ``box`` of the picture (for checking a typed box, and for showing it)."""
        return crop_to_box(self.picture, box, self.full_size)


def _corners(box: Box) -> tuple[int, int, int, int]:
    return box.x0, box.y0, box.x1, box.y1


def option_label(option: str, pointing: Pointing, custom: str) -> str:
    """The chooser's words for one of its options."""
    if option == AUTO:
        return "The whole picture (the page picks galaxy 1)" if pointing.candidates \
            else "The whole picture"
    if option == BOX:
        return f"Your box {custom}"
    galaxy = pointing.candidates[int(option) - 1]
    width = galaxy.frame[0]
    side = "left" if galaxy.x < width / 3 else "right" if galaxy.x > 2 * width / 3 else "middle"
    return f"Galaxy {option} ({side})"


def options(pointing: Pointing, custom: str) -> list[str]:
    """The chooser's options: the whole picture, each candidate, and the box drawn or typed."""
    return [AUTO, *(str(n) for n in range(1, len(pointing.candidates) + 1)),
            *([BOX] if custom else [])]


def choice_box(option: str, pointing: Pointing, custom: str) -> str:
    """The region an option means, as the ``box`` text stored and recorded ("" for the whole
    picture)."""
    if option == AUTO:
        return ""
    if option == BOX:
        return custom
    return pointing.candidate_box(int(option)).text


def typed_box(text: str, pointing: Pointing) -> Box:
    """A box typed as ``x0,y0,x1,y1``, checked against the picture (raises
    :class:`~galaxy_core.data.box.BoxError` in one line)."""
    box = parse_box(text, "the box")
    pointing.crop(box)  # checks it lies inside the picture
    return box



__all__ = ["AUTO", "BOX", "Pointing", "choice_box", "option_label", "options", "typed_box"]
