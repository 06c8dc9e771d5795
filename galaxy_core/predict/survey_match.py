"""Make foreign galaxy pictures look like the SDSS cutouts the model was trained on.

The model learnt from Galaxy Zoo cutouts: 423-424 px squares with the galaxy small and central in
a wide sky border, blurred by SDSS seeing. A Hubble or amateur press image shows the same kind of
galaxy filling a 1000 px frame, razor sharp. Fed as is, the model's fixed centre crop sees only a
bulge in detail the network never met, and its answer means little. :func:`match_to_survey`
re-frames such a picture around the galaxy so that the galaxy covers the same fraction of the
frame as in training and, optionally, degrades it to SDSS resolution, noise and sky level.

How the ``TRAINING_*`` constants were measured: 300 GZ1 training cutouts (every 20th file of
``gz1_sdss/images`` sorted by name, 423x423 JPEG) were run through :func:`find_galaxy`,
:func:`_psf_fwhm` and :func:`sky_level` of this module. Galaxy radius (90 % light radius inside the
galaxy's outline, see :class:`GalaxyBox`) / image side: median 0.113, quartiles 0.098-0.125,
5-95 % 0.082-0.186, 98 % 0.248, 99 % 0.35 (the tail is galaxies merged with a neighbour or a
bright star). The tight spread is by design: Galaxy Zoo scaled every cutout to the galaxy's
Petrosian radius. The half-light radius is 0.064 of the side. The galaxy centre lies within 0.011
of the side from the frame centre in 75 % of cutouts (95 %: 0.055). Resolution: per cutout, the
20th percentile FWHM of compact sources peaking 8 sigma to 80 levels above the sky (the sharpest
of them are stars; brighter ones look fat in the asinh-stretched JPEGs): measurable in 256 of the
300, median 6.3 px, quartiles 5.3-7.5, i.e. about 0.13 of the galaxy radius: cutouts are soft,
SDSS seeing magnified by the per-galaxy rescaling. Sky: level median 3.0 (of 255), noise
(1.4826 MAD) median 3.0, correlated over a few pixels and nearly the same in R, G and B.
The four press images in ``seed_examples`` measure 0.30-0.47 (radius / shorter side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

SURVEY_SIZE = 424
"""Side of the matched output: the GZ2 cutout size (GZ1 cutouts are 423 px at the same scale)."""

TRAINING_RADIUS_FRACTION = 0.113
"""Median galaxy radius (:attr:`GalaxyBox.radius`) / image side in the training cutouts."""
SURVEY_MAX_FRACTION = 0.30
"""Largest radius fraction still called survey-like: between the training 98th (0.25) and 99th
(0.35) percentiles, and below every press image among the seed examples (0.30-0.47)."""
FILLING_MAX_OFFSET = 0.15
"""A big source counts as a frame-filling target only if centred this well (fraction of the side).
Press images centre their galaxy (seed examples: offset <= 0.06); in training cutouts, a big
detection off-centre is a bright star's halo merged with the target (12 of 13 such cases in a
606-cutout check, offsets 0.22-0.29), not a reason to re-frame."""
SURVEY_SIDE_RANGE = (384, 480)
"""Square-ish images with sides in this range (GZ cutouts: 423-424 px) may be survey cutouts."""
SURVEY_MAX_ASPECT = 1.1
TRAINING_PSF_FWHM = 6.3
"""Median FWHM (px) of stars in the 423 px training cutouts: the resolution to degrade to."""
TRAINING_SKY_LEVEL = 3.0
"""Median sky brightness (0..255) of the training cutouts."""
TRAINING_SKY_NOISE = 3.0
"""Median sky noise (0..255, 1.4826 x MAD) of the training cutouts."""

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
PSF_MAX_PEAK = 80.0
"""Stars peaking higher than this above the sky (0..255) are not used to measure resolution."""
NOISE_CORRELATION = 2.0
"""Gaussian sigma (px) that correlates the added noise: SDSS cutouts are resampled, so their sky
noise comes in blobs (a 3x3 mean keeps 0.91 of its standard deviation; white noise keeps 0.33)."""
DETECT_MAX_SIDE = 1024
"""Bigger images are reduced to about this side before detection: same answer, far less time."""
SOURCE_FWHM_FALLBACK = 2.0
"""Assumed resolution (px) of a foreign image when no star can be measured in it."""
MODES = ("auto", "on", "off")


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


# --- measuring ---------------------------------------------------------------------------------


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
    factor = _detect_factor(img)
    found = _find_in(luminance(_detect_copy(img)))
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
    distance = ndimage.minimum(to_centre, labels, index)  # nearest pixel: big galaxies cover it
    score = np.where(area >= MIN_AREA, flux, 0.0) / (1.0 + (distance / CENTRE_SCALE) ** 2)
    if not score.max() > 0:
        return None
    return labels == index[np.argmax(score)]


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


def _psf_fwhm(lum: np.ndarray, max_sources: int = 200) -> float | None:
    """FWHM (px) of the sharpest compact sources: a star-based resolution estimate.

    Peaks 8 sky sigma above the sky but at most :data:`PSF_MAX_PEAK` above it are used, where
    display stretches are still nearly linear (bright stars look fat in asinh-stretched JPEGs).
    For each, the area above half its peak (connected to it, inside a 25 px window) gives
    FWHM = 2 sqrt(area / pi); the 20th percentile over sources keeps stars and drops galaxies.
    None when fewer than 3 are usable.
    """
    level, noise = sky_level(lum)
    smooth = ndimage.gaussian_filter(lum, 0.7)
    height = smooth - level
    peaks = (smooth == ndimage.maximum_filter(smooth, size=7)) & (height > 8 * noise) \
        & (height < PSF_MAX_PEAK)
    rows, cols = np.nonzero(peaks)
    fwhms = []
    half = 12
    for r, c in list(zip(rows, cols))[:max_sources]:
        r0, c0 = max(r - half, 0), max(c - half, 0)
        window = height[r0:r + half + 1, c0:c + half + 1]
        blob, _ = ndimage.label(window > height[r, c] / 2)
        mine = blob == blob[r - r0, c - c0]
        if mine[0].any() or mine[-1].any() or mine[:, 0].any() or mine[:, -1].any():
            continue  # not compact: part of something bigger than the window
        fwhms.append(2 * np.sqrt(mine.sum() / np.pi))
    if len(fwhms) < 3:
        return None
    measured = float(np.percentile(fwhms, 20))
    return float(np.sqrt(max(measured**2 - (2.3548 * 0.7) ** 2, 1.0)))  # undo the 0.7 px smoothing


# --- deciding and matching ---------------------------------------------------------------------


def is_survey_like(img: Image.Image, galaxy: GalaxyBox | None = None) -> bool:
    """True for an SDSS/Galaxy Zoo-like cutout, which should be fed to the model untouched.

    That means square-ish, 384-480 px, and no frame-filling galaxy: no source bigger than in
    nearly all training cutouts (:data:`SURVEY_MAX_FRACTION`) sitting in the middle
    (:data:`FILLING_MAX_OFFSET`). A press image fails on size, on its central galaxy's size, or
    both. On 606 GZ1 training cutouts (every 10th) this answers True for all 606.
    Pass ``galaxy`` to reuse a :func:`find_galaxy` result.
    """
    width, height = img.size
    low, high = SURVEY_SIDE_RANGE
    if not (low <= min(width, height) and max(width, height) <= high):
        return False
    if max(width, height) > SURVEY_MAX_ASPECT * min(width, height):
        return False
    galaxy = galaxy or find_galaxy(img)
    filling = galaxy.found and galaxy.fraction > SURVEY_MAX_FRACTION \
        and galaxy.offset <= FILLING_MAX_OFFSET
    return not filling


def match_to_survey(img: Image.Image, degrade: bool = True,
                    galaxy: GalaxyBox | None = None) -> Image.Image:
    """Re-frame ``img`` so its galaxy fills the frame as in training; 424x424 RGB.

    A square of side radius / :data:`TRAINING_RADIUS_FRACTION` is cut around the galaxy's centre,
    padded with the image's own sky colour where it runs past the edges, and resized with an
    anti-aliasing filter (Pillow's ``resize`` with a float ``box``, so huge pads never exist at
    full resolution). With ``degrade`` the result is also brought to SDSS conditions: sky shifted
    to the training level, Gaussian blur up to the training star FWHM (in quadrature with what the
    source already has after rescaling) and, where the sky is smoother than SDSS, fixed-seed noise
    up to the training sky noise, so the same input always gives the same output.
    """
    rgb = img.convert("RGB")
    galaxy = galaxy or find_galaxy(rgb)
    side = max(galaxy.radius / TRAINING_RADIUS_FRACTION, 1.0)
    zoom = SURVEY_SIZE / side
    pad = sky_colour(rgb)
    canvas = Image.new("RGB", (SURVEY_SIZE, SURVEY_SIZE), pad)
    left, top = galaxy.x - side / 2, galaxy.y - side / 2
    x0, y0 = max(0.0, left), max(0.0, top)
    x1, y1 = min(float(rgb.width), left + side), min(float(rgb.height), top + side)
    ox0, oy0 = round((x0 - left) * zoom), round((y0 - top) * zoom)
    ox1, oy1 = round((x1 - left) * zoom), round((y1 - top) * zoom)
    if ox1 > ox0 and oy1 > oy0:
        part = rgb.resize((ox1 - ox0, oy1 - oy0), Image.Resampling.LANCZOS,
                          box=(x0, y0, x1, y1), reducing_gap=3.0)
        canvas.paste(part, (ox0, oy0))
    if not degrade:
        return canvas
    source_fwhm = (_psf_fwhm(luminance(_detect_copy(rgb))) or SOURCE_FWHM_FALLBACK) \
        * _detect_factor(rgb)
    return degrade_to_survey(canvas, source_fwhm=max(source_fwhm * zoom, 1.0), sky=pad)


def _detect_factor(img: Image.Image) -> int:
    """Integer reduction that brings ``img`` to at most :data:`DETECT_MAX_SIDE` (1 if already)."""
    return max(1, math.ceil(max(img.size) / DETECT_MAX_SIDE))


def _detect_copy(img: Image.Image) -> Image.Image:
    """The reduced RGB copy detection works on (see :data:`DETECT_MAX_SIDE`)."""
    factor = _detect_factor(img)
    rgb = img.convert("RGB")
    return rgb.reduce(factor) if factor > 1 else rgb


def degrade_to_survey(img: Image.Image, source_fwhm: float = 1.0,
                      sky: tuple[int, int, int] | None = None, seed: int = 0) -> Image.Image:
    """Give an already re-framed 424 px image SDSS sky level, resolution and noise.

    ``source_fwhm`` is the resolution the image already has, in its own pixels; blur is added in
    quadrature up to :data:`TRAINING_PSF_FWHM`. The sky (``sky`` or measured) is mapped to
    :data:`TRAINING_SKY_LEVEL` with 255 kept at 255, channel by channel.
    """
    rgb = img.convert("RGB")
    pixels = np.asarray(rgb, dtype=np.float32)
    sky_rgb = np.array(sky if sky is not None else sky_colour(rgb), dtype=np.float32)
    target = np.float32(TRAINING_SKY_LEVEL)
    scale = (255 - target) / np.maximum(255 - sky_rgb, 1.0)
    pixels = target + (pixels - sky_rgb) * scale
    sigma = math.sqrt(max(TRAINING_PSF_FWHM**2 - source_fwhm**2, 0.0)) / 2.3548
    if sigma > 0.3:
        pixels = ndimage.gaussian_filter(pixels, sigma=(sigma, sigma, 0))
    _, noise = sky_level(pixels.mean(axis=2))
    extra = math.sqrt(max(TRAINING_SKY_NOISE**2 - noise**2, 0.0))
    if extra > 0.3:
        grain = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=pixels.shape[:2]),
                                        NOISE_CORRELATION)
        grain *= extra / max(float(grain.std()), 1e-6)
        pixels = pixels + grain[..., None].astype(np.float32)  # gray: SDSS JPEG noise is mostly
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), mode="RGB")


def prepare_for_model(img: Image.Image, mode: str = "auto") -> tuple[Image.Image, bool]:
    """The image to feed the model and whether survey matching was applied.

    ``mode``: ``auto`` matches only images that are not :func:`is_survey_like` (so training-like
    cutouts reach the model exactly as in training), ``on`` always matches, ``off`` never does.
    """
    if mode not in MODES:
        raise ValueError(f"survey matching mode must be one of {', '.join(MODES)}, got {mode!r}")
    rgb = img.convert("RGB")
    if mode == "off":
        return rgb, False
    galaxy = find_galaxy(rgb)
    if mode == "auto" and is_survey_like(rgb, galaxy):
        return rgb, False
    return match_to_survey(rgb, degrade=True, galaxy=galaxy), True
