"""Make foreign galaxy pictures look like the SDSS cutouts the model was trained on.

The model learnt from Galaxy Zoo cutouts: 423-424 px squares with the galaxy small and central in
a wide sky border, blurred by SDSS seeing. A Hubble or amateur press image shows the same kind of
galaxy filling a 1000 px frame, razor sharp. Fed as is, the model's fixed centre crop sees only a
bulge in detail the network never met, and its answer means little. :func:`match_to_survey`
re-frames such a picture around the galaxy so that the galaxy covers the same fraction of the
frame as in training and, optionally, degrades it to SDSS resolution, noise and sky level.

How the ``TRAINING_*`` constants were measured: 300 GZ1 training cutouts (every 20th file of
``gz1_sdss/images`` sorted by name, 423x423 JPEG) were run through :func:`find_galaxy`,
:func:`_psf_fwhm` and :func:`sky_level` (:mod:`galaxy_core.data.galaxy_finder`). Galaxy radius (90 % light radius inside the
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

import numpy as np
from PIL import Image
from scipy import ndimage

from galaxy_core.data.galaxy_finder import (
    TRAINING_RADIUS_FRACTION,
    GalaxyBox,
    detect_copy,
    detect_factor,
    find_galaxy,
    luminance,
    sky_colour,
    sky_level,
)

SURVEY_SIZE = 424
"""Side of the matched output: the GZ2 cutout size (GZ1 cutouts are 423 px at the same scale)."""

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
THUMBNAIL_MIN_SIDE = 200
"""Square-ish images from this side up to :data:`SURVEY_SIDE_RANGE` may be survey thumbnails
(a cutout shrunk, as catalogues ship 224 px ones) when their resolution says so
(:data:`THUMBNAIL_MIN_FWHM`). Matching such a thumbnail re-frames and re-blurs a picture that is
framed as in training already: on 400 GZ2 test galaxies at 224 px, balanced accuracy 90.6% with
matching against 91.5% without (90.9% for the same galaxies at full size)."""
THUMBNAIL_MIN_FWHM = 0.0105
"""Smallest star width (FWHM / shorter side) of a survey thumbnail: SDSS seeing spans about 1.8%
of a cutout's side at any size. Fitted on the fit halves: 300 training-part SDSS cutouts shrunk
to 200-300 px (5th percentile 0.0091-0.0111; a star is measured in 80-87% of them) and the
ESA/Hubble development pictures up to 480 px (all but one of 37 below 0.0100). A thumbnail where
no star can be measured is matched, as before."""
SURVEY_MAX_ASPECT = 1.1
TRAINING_PSF_FWHM = 6.3
"""Median FWHM (px) of stars in the 423 px training cutouts: the resolution to degrade to."""
TRAINING_SKY_LEVEL = 3.0
"""Median sky brightness (0..255) of the training cutouts."""
TRAINING_SKY_NOISE = 3.0
"""Median sky noise (0..255, 1.4826 x MAD) of the training cutouts."""

PSF_MAX_PEAK = 80.0
"""Stars peaking higher than this above the sky (0..255) are not used to measure resolution."""
NOISE_CORRELATION = 2.0
"""Gaussian sigma (px) that correlates the added noise: SDSS cutouts are resampled, so their sky
noise comes in blobs (a 3x3 mean keeps 0.91 of its standard deviation; white noise keeps 0.33)."""
SOURCE_FWHM_FALLBACK = 2.0
"""Assumed resolution (px) of a foreign image when no star can be measured in it."""
MODES = ("auto", "on", "off")


# --- measuring ---------------------------------------------------------------------------------



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

    That means square-ish, 384-480 px (or a thumbnail of 200 px up with SDSS's resolution for
    its size, :data:`THUMBNAIL_MIN_FWHM`), and no frame-filling galaxy: no source bigger than in
    nearly all training cutouts (:data:`SURVEY_MAX_FRACTION`) sitting in the middle
    (:data:`FILLING_MAX_OFFSET`). A press image fails on size, on its central galaxy's size, or
    both. On 606 GZ1 training cutouts (every 10th) this answers True for all 606.
    Pass ``galaxy`` to reuse a :func:`find_galaxy` result.
    """
    width, height = img.size
    low, high = SURVEY_SIDE_RANGE
    if not (THUMBNAIL_MIN_SIDE <= min(width, height) and max(width, height) <= high):
        return False
    if max(width, height) > SURVEY_MAX_ASPECT * min(width, height):
        return False
    galaxy = galaxy or find_galaxy(img)
    filling = galaxy.found and galaxy.fraction > SURVEY_MAX_FRACTION \
        and galaxy.offset <= FILLING_MAX_OFFSET
    if filling:
        return False
    return min(width, height) >= low or _survey_resolution(img)


def _survey_resolution(img: Image.Image) -> bool:
    """Whether a picture smaller than a cutout is blurred as an SDSS cutout is, relative to its
    side (:data:`THUMBNAIL_MIN_FWHM`): a shrunk cutout is, a small press picture is sharper."""
    fwhm = _psf_fwhm(luminance(img))
    return fwhm is not None and fwhm / min(img.size) >= THUMBNAIL_MIN_FWHM


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
    source_fwhm = (_psf_fwhm(luminance(detect_copy(rgb))) or SOURCE_FWHM_FALLBACK) \
        * detect_factor(rgb)
    return degrade_to_survey(canvas, source_fwhm=max(source_fwhm * zoom, 1.0), sky=pad)



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


def prepare_for_model(img: Image.Image, mode: str = "auto",
                      galaxy: GalaxyBox | None = None) -> tuple[Image.Image, bool]:
    """The image to feed the model and whether survey matching was applied.

    ``mode``: ``auto`` matches only images that are not :func:`is_survey_like` (so training-like
    cutouts reach the model exactly as in training), ``on`` always matches, ``off`` never does.
    Matching makes any picture look like sky around a source, so whether the input is a galaxy
    picture at all must be judged on the original
    (:mod:`galaxy_core.predict.plausibility`), not on this output. Pass ``galaxy`` to reuse a
    :func:`find_galaxy` result for the same image.
    """
    if mode not in MODES:
        raise ValueError(f"survey matching mode must be one of {', '.join(MODES)}, got {mode!r}")
    rgb = img.convert("RGB")
    if mode == "off":
        return rgb, False
    galaxy = galaxy or find_galaxy(rgb)
    if mode == "auto" and is_survey_like(rgb, galaxy):
        return rgb, False
    return match_to_survey(rgb, degrade=True, galaxy=galaxy), True
