"""Find the galaxy in a picture: where it is, how big, and how bright the sky around it is.

Used to frame model inputs (``crop_radii`` in the config), to re-frame foreign pictures
(:mod:`galaxy_core.predict.survey_match`) and to measure galaxy size in benchmarks. Pure image
measurement: no model, no survey-specific decisions.

How :data:`TRAINING_RADIUS_FRACTION` was measured: 300 GZ1 training cutouts (every 20th file of
``gz1_sdss/images`` sorted by name, 423x423 JPEG) were run through :func:`find_galaxy`. Galaxy
radius (90 % light radius inside the galaxy's outline, see :class:`GalaxyBox`) / image side: median
0.113, quartiles 0.098-0.125, 5-95 % 0.082-0.186, 98 % 0.248, 99 % 0.35 (the tail is galaxies
merged with a neighbour or a bright star). The tight spread is by design: Galaxy Zoo scaled every
cutout to the galaxy's Petrosian radius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

TRAINING_RADIUS_FRACTION = 0.113
"""Median galaxy radius (:attr:`GalaxyBox.radius`) / image side in the training cutouts."""

K_NOISE = 3.0
"""Detection threshold in units of the (smoothed) sky noise above the sky level."""
PEAK_FRACTION = 0.1
"""The galaxy's outline is also held at this fraction of its peak above sky, so its measured size
does not grow with exposure depth (a deep Hubble image shows faint outskirts SDSS never sees)."""
CENTRE_SCALE = 0.05
"""Distance from the frame centre (fraction of the side) at which a source's score halves: survey
cutouts put their target exactly in the middle, so a brighter star off to the side must not win."""
MIN_AREA = 5
"""Regions smaller than this (pixels) are noise, not sources."""
DETECT_MAX_SIDE = 1024
"""Bigger images are reduced to about this side before detection: same answer, far less time."""


@dataclass(frozen=True)
class GalaxyBox:
    """Where the galaxy is in an image, in pixels of that image (x right, y down)."""

    x: float
    """Flux-weighted centre, column."""
    y: float
    """Flux-weighted centre, row."""
    radius: float
    """Extent: radius holding 90 % of the galaxy's sky-subtracted light inside its outline (the
    connected region above max(3 sky sigma, 10 % of its peak) after smoothing)."""
    half_light_radius: float
    """Radius holding 50 % of that light."""
    box: tuple[int, int, int, int]
    """Bounding box of the outline: (left, top, right, bottom), right/bottom exclusive."""
    frame: tuple[int, int]
    """(width, height) of the image it was found in."""
    found: bool = True
    """False when no source stood out of the sky; the box then describes the frame centre."""

    @property
    def fraction(self) -> float:
        """Radius as a fraction of the image's shorter side: the number compared with training."""
        return self.radius / min(self.frame)

    @property
    def offset(self) -> float:
        """Distance of the centre from the frame centre, as a fraction of the shorter side."""
        width, height = self.frame
        return float(np.hypot(self.x - width / 2, self.y - height / 2) / min(width, height))



def luminance(img: Image.Image) -> np.ndarray:
    """Mean of R, G, B as float32 (H, W): a colour-neutral brightness for detection."""
    return np.asarray(img.convert("RGB"), dtype=np.float32).mean(axis=2)


def _darkest_strip(plane: np.ndarray) -> np.ndarray:
    """Pixels of the darkest of the four border strips (a tenth of the side deep).

    Only the border is used because a galaxy may cover most of the frame; the darkest strip
    because a press image may crop the galaxy, or a bright star may sit, on one side.
    """
    height, width = plane.shape[:2]
    depth = max(2, min(height, width) // 10)
    strips = (plane[:depth], plane[-depth:], plane[:, :depth], plane[:, -depth:])
    return min(strips, key=lambda s: float(np.median(s.mean(axis=-1) if s.ndim == 3 else s)))


def sky_level(lum: np.ndarray) -> tuple[float, float]:
    """Robust (level, noise) of the sky: median and 1.4826 x MAD of the darkest border strip."""
    values = _darkest_strip(lum).ravel()
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    return median, max(1.4826 * mad, 0.5)


def sky_colour(img: Image.Image) -> tuple[int, int, int]:
    """Per-channel median of the darkest border strip: the colour to pad with."""
    strip = _darkest_strip(np.asarray(img.convert("RGB")))
    red, green, blue = (int(round(float(np.median(strip[..., c])))) for c in range(3))
    return red, green, blue


def find_galaxy(img: Image.Image) -> GalaxyBox:
    """Find the largest bright connected source near the centre of ``img``.

    Smooth, threshold above a robust sky level (median/MAD of the border), label connected
    regions with scipy.ndimage and score each by its sky-subtracted flux divided by
    1 + (distance/:data:`CENTRE_SCALE`)^2, the distance of its nearest pixel to the frame centre
    (survey cutouts and press images both centre their target). The chosen region is then
    re-thresholded at :data:`PEAK_FRACTION` of its own peak so that the outline means the same in
    shallow and deep images, and so that a star merged into the galaxy's faint halo splits off.
    """
    factor = detect_factor(img)
    found = _find_in(luminance(detect_copy(img)))
    if factor == 1:
        return found
    left, top, right, bottom = found.box
    return GalaxyBox(x=found.x * factor, y=found.y * factor, radius=found.radius * factor,
                     half_light_radius=found.half_light_radius * factor,
                     box=(left * factor, top * factor, min(right * factor, img.width),
                          min(bottom * factor, img.height)),
                     frame=img.size, found=found.found)


def _find_in(lum: np.ndarray) -> GalaxyBox:
    """:func:`find_galaxy` on a luminance array."""
    height, width = lum.shape
    smooth = ndimage.gaussian_filter(lum, max(1.0, min(height, width) / 250))
    level, _ = sky_level(lum)
    _, noise = sky_level(smooth)
    above = smooth - level
    floor = max(K_NOISE * noise, 2.0)
    region = _pick_source(above, above > floor)
    if region is None:
        return _not_found(width, height)
    outline = region
    for _ in range(3):  # the peak decides the outline, the outline decides whose peak it is
        threshold = max(floor, PEAK_FRACTION * float(above[outline].max()))
        inner = _pick_source(above, (above > threshold) & region)
        if inner is None or np.array_equal(inner, outline):
            break
        outline = inner
    return _measure(above, outline, width, height)


def _pick_source(above: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Mask of the connected region of ``mask`` with the best centre-weighted flux, or None."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return None
    height, width = above.shape
    index = np.arange(1, count + 1)
    flux = ndimage.sum_labels(above, labels, index)
    area = ndimage.sum_labels(np.ones_like(above), labels, index)
    rows, cols = np.ogrid[:height, :width]
    to_centre = np.hypot(cols + 0.5 - width / 2, rows + 0.5 - height / 2) / min(height, width)
    distance = _nearest(to_centre, labels, count)  # nearest pixel: big galaxies cover it
    score = np.where(area >= MIN_AREA, flux, 0.0) / (1.0 + (distance / CENTRE_SCALE) ** 2)
    if not score.max() > 0:
        return None
    return labels == index[np.argmax(score)]


def _nearest(to_centre: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Each region's smallest ``to_centre``: what ``ndimage.minimum`` gives, in one pass over
    the labelled pixels instead of a sort of the whole frame (that sort was most of the time a
    prediction spent reading a cutout)."""
    inside = labels > 0
    nearest = np.full(count + 1, np.inf)
    np.minimum.at(nearest, labels[inside], np.broadcast_to(to_centre, labels.shape)[inside])
    return nearest[1:]


def _not_found(width: int, height: int) -> GalaxyBox:
    """A box meaning 'nothing stands out': centred, sized like a typical training galaxy."""
    radius = TRAINING_RADIUS_FRACTION * min(width, height)
    return GalaxyBox(x=width / 2, y=height / 2, radius=radius, half_light_radius=radius / 2,
                     box=(0, 0, width, height), frame=(width, height), found=False)


def _measure(above: np.ndarray, outline: np.ndarray, width: int, height: int) -> GalaxyBox:
    """Centre, 50 % and 90 % light radii and bounding box of one outlined source."""
    rows, cols = np.nonzero(outline)
    weights = np.clip(above[rows, cols], 0, None).astype(np.float64)
    total = weights.sum()
    if total <= 0:
        return _not_found(width, height)
    x = float((cols * weights).sum() / total) + 0.5  # pixel centres, so a frame centre is w/2
    y = float((rows * weights).sum() / total) + 0.5
    r = np.hypot(cols + 0.5 - x, rows + 0.5 - y)
    order = np.argsort(r)
    cumulative = np.cumsum(weights[order]) / total
    last = len(order) - 1
    r50 = float(r[order][min(int(np.searchsorted(cumulative, 0.5)), last)])
    r90 = float(r[order][min(int(np.searchsorted(cumulative, 0.9)), last)])
    box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    return GalaxyBox(x=x, y=y, radius=max(r90, 1.0), half_light_radius=max(r50, 0.5), box=box,
                     frame=(width, height))



def detect_factor(img: Image.Image) -> int:
    """Integer reduction that brings ``img`` to at most :data:`DETECT_MAX_SIDE` (1 if already)."""
    return max(1, math.ceil(max(img.size) / DETECT_MAX_SIDE))


def detect_copy(img: Image.Image) -> Image.Image:
    """The reduced RGB copy detection works on (see :data:`DETECT_MAX_SIDE`)."""
    factor = detect_factor(img)
    rgb = img.convert("RGB")
    return rgb.reduce(factor) if factor > 1 else rgb

