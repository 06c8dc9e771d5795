"""Find the galaxy in a picture: where it is, how big, and how bright the sky around it is.

Used to frame model inputs (``crop_radii`` in the config), to re-frame foreign pictures
(:mod:`galaxy_core.predict.survey_match`) and to measure galaxy size in benchmarks. Pure image
measurement: no model, no survey-specific decisions. :func:`find_candidates` lists every bright
source instead of choosing one, so that a person can point at the galaxy they mean (the Classify
page's chooser, :mod:`galaxy_core.data.box`).

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
from functools import lru_cache

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
MAX_CANDIDATES = 8
"""At most this many sources are offered to choose from (a press picture of a cluster would
otherwise outline dozens of stars and knots)."""
CANDIDATE_FLUX_FRACTION = 0.2
"""A source is offered as a candidate only if its flux is at least this fraction of the
brightest source's: faint background specks are not what anyone means to point at. On 100 GZ1
training cutouts (every 60th file of ``gz1_sdss/images``) 78 show one source at 0.2, 86 at 0.3,
43 at 0.05 (the others: a neighbour galaxy or a star in the cutout)."""


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
    """Mean of R, G, B as float32 (H, W): a colour-neutral brightness for detection. (Three
    uint8 values add up exactly in float32 and one division rounds the same as a float32 mean
    does, for every possible sum, so this is exactly ``mean(axis=2)`` at a seventh of the
    cost.)"""
    pixels = np.asarray(img.convert("RGB"))
    total = pixels[..., 0].astype(np.float32)
    total += pixels[..., 1]
    total += pixels[..., 2]
    total /= np.float32(3)
    return total


def _border_strips(plane: np.ndarray) -> tuple[np.ndarray, ...]:
    """The four border strips, a tenth of the shorter side deep (at least 2 pixels)."""
    height, width = plane.shape[:2]
    depth = max(2, min(height, width) // 10)
    return plane[:depth], plane[-depth:], plane[:, :depth], plane[:, -depth:]


def _darkest_strip(plane: np.ndarray) -> tuple[np.ndarray, float]:
    """The darkest of the four border strips, and its median brightness.

    Only the border is used because a galaxy may cover most of the frame; the darkest strip
    because a press image may crop the galaxy, or a bright star may sit, on one side.
    """
    strips = _border_strips(plane)
    medians = [float(np.median(s.mean(axis=-1) if s.ndim == 3 else s)) for s in strips]
    darkest = int(np.argmin(medians))
    return strips[darkest], medians[darkest]


def _sky_stats(lum: np.ndarray) -> tuple[float, float]:
    """(median, median absolute deviation) of the darkest border strip of a luminance array."""
    strip, median = _darkest_strip(lum)
    return median, float(np.median(np.abs(strip - median)))


def _noise(mad: float) -> float:
    """Sky noise (1.4826 x MAD, at least half a level) from a median absolute deviation."""
    return max(1.4826 * mad, 0.5)


def sky_level(lum: np.ndarray) -> tuple[float, float]:
    """Robust (level, noise) of the sky: median and 1.4826 x MAD of the darkest border strip."""
    median, mad = _sky_stats(lum)
    return median, _noise(mad)


def sky_colour(img: Image.Image) -> tuple[int, int, int]:
    """Per-channel median of the darkest border strip: the colour to pad with."""
    strip, _ = _darkest_strip(np.asarray(img.convert("RGB")))
    red, green, blue = (int(round(float(np.median(strip[..., c])))) for c in range(3))
    return red, green, blue


@dataclass(frozen=True)
class Detection:
    """:func:`detect`'s answer with the measurements it was made from, so the picture checks of
    :mod:`galaxy_core.predict.plausibility` reuse them instead of measuring the same frame again
    (they need the same luminance, smoothing and sky statistics)."""

    galaxy: GalaxyBox
    factor: int
    """The reduction of the detection copy (:func:`detect_factor`)."""
    lum: np.ndarray
    """Luminance of the detection copy."""
    smooth: np.ndarray
    """``lum`` smoothed as detection smooths it."""
    sky: float
    """Sky level of ``lum`` (:func:`sky_level`)."""
    sky_mad: float
    """Median absolute deviation of ``lum``'s darkest border strip (0: an exactly flat sky)."""
    smooth_noise: float
    """Sky noise of ``smooth``."""

    @property
    def noise(self) -> float:
        """Sky noise of ``lum`` (:func:`sky_level`)."""
        return _noise(self.sky_mad)


def smoothing_sigma(height: int, width: int) -> float:
    """Gaussian sigma (px) detection smooths with: about a 250th of the shorter side."""
    return max(1.0, min(height, width) / 250)


def find_galaxy(img: Image.Image) -> GalaxyBox:
    """Find the largest bright connected source near the centre of ``img``.

    Smooth, threshold above a robust sky level (median/MAD of the border), label connected
    regions with scipy.ndimage and score each by its sky-subtracted flux divided by
    1 + (distance/:data:`CENTRE_SCALE`)^2, the distance of its nearest pixel to the frame centre
    (survey cutouts and press images both centre their target). The chosen region is then
    re-thresholded at :data:`PEAK_FRACTION` of its own peak so that the outline means the same in
    shallow and deep images, and so that a star merged into the galaxy's faint halo splits off.
    """
    return detect(img).galaxy


def detect(img: Image.Image) -> Detection:
    """:func:`find_galaxy`, keeping what it measured on the way."""
    factor, lum, smooth, level, mad, smooth_mad = _measure_sky(img)
    found = _to_full_size(_find_in(smooth - level, _noise(smooth_mad)), factor, img)
    return Detection(galaxy=found, factor=factor, lum=lum, smooth=smooth, sky=level,
                     sky_mad=mad, smooth_noise=_noise(smooth_mad))


def find_candidates(img: Image.Image, limit: int = MAX_CANDIDATES) -> list[GalaxyBox]:
    """Every bright source of ``img`` a person might mean, :func:`find_galaxy`'s choice first.

    The same detection as :func:`find_galaxy` (smoothing, sky, threshold, connected regions),
    but instead of keeping the one source that wins the centre-weighted score, every region of
    at least :data:`MIN_AREA` pixels and :data:`CANDIDATE_FLUX_FRACTION` of the brightest
    source's flux is kept, brightest first, at most ``limit``. Each is outlined as
    :func:`find_galaxy` outlines its choice (held at :data:`PEAK_FRACTION` of its own peak),
    except that the piece kept inside a region is the one nearest that region's peak rather
    than the frame centre. The first entry is exactly :func:`find_galaxy`'s answer when it found
    a source; an empty list means nothing stood out of the sky.
    """
    factor, _, smooth, level, _, smooth_mad = _measure_sky(img)
    found = _candidates_in(smooth - level, _noise(smooth_mad), limit)
    return [_to_full_size(galaxy, factor, img) for galaxy in found]


def _measure_sky(img: Image.Image) -> tuple[int, np.ndarray, np.ndarray, float, float, float]:
    """What detection works on: the reduction factor, the luminance of the reduced copy, its
    smoothed copy, the sky level and median absolute deviation of the luminance, and the
    smoothed copy's median absolute deviation."""
    factor = detect_factor(img)
    lum = luminance(detect_copy(img))
    height, width = lum.shape
    smooth = ndimage.gaussian_filter(lum, smoothing_sigma(height, width))
    level, mad = _sky_stats(lum)
    _, smooth_mad = _sky_stats(smooth)
    return factor, lum, smooth, level, mad, smooth_mad


def _to_full_size(found: GalaxyBox, factor: int, img: Image.Image) -> GalaxyBox:
    """A box measured on the reduced detection copy, in pixels of ``img`` itself."""
    if factor == 1:
        return found
    left, top, right, bottom = found.box
    return GalaxyBox(x=found.x * factor, y=found.y * factor, radius=found.radius * factor,
                     half_light_radius=found.half_light_radius * factor,
                     box=(left * factor, top * factor, min(right * factor, img.width),
                          min(bottom * factor, img.height)),
                     frame=img.size, found=found.found)


@dataclass(frozen=True)
class _Region:
    """A connected source: its mask inside its bounding box, and where that box is."""

    rows: slice
    cols: slice
    mask: np.ndarray


def _find_in(above: np.ndarray, noise: float) -> GalaxyBox:
    """:func:`find_galaxy` on a smoothed, sky-subtracted luminance array and its sky noise."""
    height, width = above.shape
    to_centre = _to_centre(height, width)
    floor = _floor(noise)
    region = _pick_source(above, above > floor, to_centre)
    if region is None:
        return _not_found(width, height)
    return _outlined(above, region, floor, to_centre)


def _floor(noise: float) -> float:
    """The detection threshold above the sky for a smoothed frame of sky noise ``noise``."""
    return max(K_NOISE * noise, 2.0)


def _outlined(above: np.ndarray, region: _Region, floor: float,
              distance: np.ndarray) -> GalaxyBox:
    """One detected region, outlined at :data:`PEAK_FRACTION` of its peak and measured.

    When that threshold splits the region, the piece kept is the one with the best flux
    weighted by ``distance`` (a frame-sized map: to the frame centre for :func:`find_galaxy`,
    to the region's own peak for :func:`find_candidates`). The refinements only ever keep
    pixels of the region, so they run inside its bounding box: the same regions, labelled in
    the same order, at a fraction of the cost."""
    height, width = above.shape
    box = (region.rows, region.cols)
    above_in, distance_in = above[box], distance[box]
    outline = region.mask
    for _ in range(3):  # the peak decides the outline, the outline decides whose peak it is
        threshold = max(floor, PEAK_FRACTION * float(above_in[outline].max()))
        inner = _pick_source(above_in, (above_in > threshold) & region.mask, distance_in)
        if inner is None:
            break
        inner_mask = np.zeros_like(outline)
        inner_mask[inner.rows, inner.cols] = inner.mask
        if np.array_equal(inner_mask, outline):
            break
        outline = inner_mask
    return _measure(above, outline, region.rows.start, region.cols.start, width, height)


def _candidates_in(above: np.ndarray, noise: float, limit: int) -> list[GalaxyBox]:
    """:func:`find_candidates` on a smoothed, sky-subtracted luminance array and its noise."""
    height, width = above.shape
    to_centre = _to_centre(height, width)
    floor = _floor(noise)
    regions = _label_regions(above, above > floor, to_centre)
    if regions is None:
        return []
    usable = np.where(regions.area >= MIN_AREA, regions.flux, 0.0)
    chosen = regions.best()
    if chosen is None:
        return []
    bright = [int(i) + 1 for i in np.argsort(-usable, kind="stable")
              if usable[i] > 0 and usable[i] >= CANDIDATE_FLUX_FRACTION * usable.max()]
    order = [chosen] + [label for label in bright if label != chosen]
    found = []
    for label in order[:max(1, limit)]:
        region = regions.region(label)
        if label == chosen:
            found.append(_outlined(above, region, floor, to_centre))
            continue
        peak = np.unravel_index(int(np.argmax(np.where(regions.labels == label, above,
                                                       -np.inf))), above.shape)
        found.append(_outlined(above, region, floor, _to_point(height, width, *peak)))
    return [galaxy for galaxy in found if galaxy.found]


def _to_point(height: int, width: int, row: int, col: int) -> np.ndarray:
    """Distance of each pixel centre from pixel (``row``, ``col``)'s, as a fraction of the
    shorter side (the map :func:`_to_centre` is for the frame centre)."""
    rows, cols = np.ogrid[:height, :width]
    return np.hypot(cols - col, rows - row) / min(height, width)


@lru_cache(maxsize=8)
def _to_centre(height: int, width: int) -> np.ndarray:
    """Distance of each pixel centre from the frame centre, as a fraction of the shorter side
    (read-only: shared by every frame of this size)."""
    rows, cols = np.ogrid[:height, :width]
    distance = np.hypot(cols + 0.5 - width / 2, rows + 0.5 - height / 2) / min(height, width)
    distance.flags.writeable = False
    return distance


@dataclass(frozen=True)
class _Regions:
    """The connected regions of a mask, with each one's sky-subtracted flux, area and nearest
    pixel to the frame centre (index ``label - 1``)."""

    labels: np.ndarray
    where: np.ndarray
    """Flat indices of the labelled pixels."""
    region_of: np.ndarray
    """The label of each of those pixels."""
    flux: np.ndarray
    area: np.ndarray
    distance: np.ndarray

    def best(self) -> int | None:
        """The label with the best centre-weighted flux (:data:`CENTRE_SCALE`), or None when
        no region is big and bright enough."""
        score = np.where(self.area >= MIN_AREA, self.flux, 0.0) / (
            1.0 + (self.distance / CENTRE_SCALE) ** 2)
        if not score.max() > 0:
            return None
        return int(np.argmax(score)) + 1

    def region(self, label: int) -> _Region:
        """Region ``label``'s mask inside its bounding box."""
        rows, cols = np.divmod(self.where[self.region_of == label], self.labels.shape[1])
        box = (slice(int(rows.min()), int(rows.max()) + 1),
               slice(int(cols.min()), int(cols.max()) + 1))
        return _Region(box[0], box[1], self.labels[box] == label)


def _label_regions(above: np.ndarray, mask: np.ndarray, to_centre: np.ndarray) -> _Regions | None:
    """Label the connected regions of ``mask`` and gather each one's flux, area and nearest
    pixel to the centre, over the labelled pixels only (a small part of the frame), in raster
    order as ``ndimage.sum_labels`` adds them, so the sums are the same to the last bit. None
    when the mask is empty."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return None
    where = np.flatnonzero(labels)
    region_of = labels.ravel()[where]
    flux = np.bincount(region_of, weights=above.ravel()[where], minlength=count + 1)[1:]
    area = np.bincount(region_of, minlength=count + 1)[1:]
    distance = np.full(count + 1, np.inf)  # nearest pixel: big galaxies cover the centre
    np.minimum.at(distance, region_of, to_centre.ravel()[where])
    return _Regions(labels, where, region_of, flux, area, distance[1:])


def _pick_source(above: np.ndarray, mask: np.ndarray,
                 to_centre: np.ndarray) -> _Region | None:
    """The connected region of ``mask`` with the best centre-weighted flux, or None."""
    regions = _label_regions(above, mask, to_centre)
    chosen = None if regions is None else regions.best()
    return None if chosen is None else regions.region(chosen)


def _not_found(width: int, height: int) -> GalaxyBox:
    """A box meaning 'nothing stands out': centred, sized like a typical training galaxy."""
    radius = TRAINING_RADIUS_FRACTION * min(width, height)
    return GalaxyBox(x=width / 2, y=height / 2, radius=radius, half_light_radius=radius / 2,
                     box=(0, 0, width, height), frame=(width, height), found=False)


def _measure(above: np.ndarray, outline: np.ndarray, top: int, left: int, width: int,
             height: int) -> GalaxyBox:
    """Centre, 50 % and 90 % light radii and bounding box of one outlined source (``outline``
    is its mask inside the box whose top-left pixel is (``top``, ``left``))."""
    rows, cols = np.nonzero(outline)
    rows, cols = rows + top, cols + left
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

