"""Survey matching on synthetic galaxies, and on the real seed examples when present.

The synthetic galaxies are round 2-D Gaussians on a noisy dark sky (``conftest.gaussian_galaxy``),
for which the expected measurements follow from the definition of GalaxyBox: the outline is the
isophote at 10 % of the peak, which holds 90 % of a Gaussian's light, so the 90 % radius inside
it is sqrt(2 ln(1/0.19)) sigma = 1.82 sigma and the 50 % radius 1.09 sigma (sigma widened by
the detection smoothing).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from galaxy_core.data.galaxy_finder import (
    TRAINING_RADIUS_FRACTION,
    GalaxyBox,
    find_galaxy,
    luminance,
    sky_level,
)
from galaxy_core.data.imageio import read_image
from galaxy_core.predict.survey_match import (
    SURVEY_SIZE,
    TRAINING_PSF_FWHM,
    TRAINING_SKY_LEVEL,
    _psf_fwhm,
    degrade_to_survey,
    is_survey_like,
    match_to_survey,
    prepare_for_model,
)
from tests.conftest import gaussian_galaxy

DATA = Path(os.environ.get("GALAXY_DATA")
            or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared data not present")


def expected_radii(sigma: float, side: int) -> tuple[float, float]:
    """(90 %, 50 %) light radii find_galaxy should report for a Gaussian of ``sigma``."""
    smoothing = max(1.0, side / 250)
    seen = math.hypot(sigma, smoothing)
    return math.sqrt(2 * math.log(1 / 0.19)) * seen, math.sqrt(2 * math.log(1 / 0.55)) * seen


@pytest.mark.parametrize(("cx", "cy", "sigma"), [(150.0, 260.0, 12.0), (300.5, 140.0, 20.0),
                                                 (212.0, 212.0, 30.0), (110.0, 320.0, 8.0),
                                                 (330.0, 300.0, 15.0)])
def test_find_galaxy_recovers_centre_and_size(cx: float, cy: float, sigma: float) -> None:
    img = gaussian_galaxy(424, 424, cx, cy, sigma, stars=6, seed=int(cx))
    galaxy = find_galaxy(img)
    r90, r50 = expected_radii(sigma, 424)
    assert galaxy.found
    assert abs(galaxy.x - cx) < 1.5 and abs(galaxy.y - cy) < 1.5, galaxy
    assert galaxy.radius == pytest.approx(r90, rel=0.12)
    assert galaxy.half_light_radius == pytest.approx(r50, rel=0.12)
    left, top, right, bottom = galaxy.box
    assert left < cx < right and top < cy < bottom
    assert galaxy.frame == (424, 424)


def test_brighter_star_off_centre_does_not_win() -> None:
    """Survey cutouts centre their target; a brighter compact source at the side is not it."""
    img = np.asarray(gaussian_galaxy(424, 424, 212, 212, 10, amp=60), dtype=np.float64)
    ys, xs = np.mgrid[0:424, 0:424] + 0.5
    img = img + (250 * np.exp(-((xs - 350) ** 2 + (ys - 80) ** 2) / (2 * 6.0**2)))[..., None]
    galaxy = find_galaxy(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)))
    assert abs(galaxy.x - 212) < 2 and abs(galaxy.y - 212) < 2


def test_blank_sky_is_not_found_and_still_matches() -> None:
    img = gaussian_galaxy(500, 400, 0, 0, 1, amp=0.0)
    galaxy = find_galaxy(img)
    assert not galaxy.found
    assert (galaxy.x, galaxy.y) == (250, 200)
    out = match_to_survey(img)
    assert out.size == (SURVEY_SIZE, SURVEY_SIZE) and out.mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "RGBA", "RGB"])
def test_any_mode_and_tiny_sizes_are_accepted(mode: str) -> None:
    for size in ((8, 8), (9, 40), (64, 48)):
        img = gaussian_galaxy(*size, size[0] / 2, size[1] / 2, 2).convert(mode)
        assert isinstance(find_galaxy(img), GalaxyBox)
        out, applied = prepare_for_model(img, "auto")
        assert applied and out.size == (SURVEY_SIZE, SURVEY_SIZE) and out.mode == "RGB"


def test_frame_filling_galaxy_is_matched_to_training_fraction() -> None:
    img = gaussian_galaxy(1200, 900, 610, 440, 180, stars=40, seed=3)
    before = find_galaxy(img)
    assert before.fraction > 0.3
    assert not is_survey_like(img)
    for degrade in (False, True):
        out = match_to_survey(img, degrade=degrade)
        assert out.size == (SURVEY_SIZE, SURVEY_SIZE) and out.mode == "RGB"
        after = find_galaxy(out)
        assert after.fraction == pytest.approx(TRAINING_RADIUS_FRACTION, rel=0.2)
        assert after.offset < 0.02
    assert match_to_survey(img).tobytes() == match_to_survey(img).tobytes(), "deterministic"
    out, applied = prepare_for_model(img, "auto")
    assert applied and out.size == (SURVEY_SIZE, SURVEY_SIZE)


def test_big_central_galaxy_in_a_survey_sized_frame_is_not_survey_like() -> None:
    img = gaussian_galaxy(424, 424, 212, 212, 90)
    assert find_galaxy(img).fraction > 0.3
    assert not is_survey_like(img)


def test_padding_uses_the_sky_colour() -> None:
    sky = (20.0, 12.0, 30.0)
    img = gaussian_galaxy(900, 600, 450, 300, 120, sky=sky, noise=1.0)
    out = np.asarray(match_to_survey(img, degrade=False), dtype=np.int32)
    for corner in (out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]):
        assert np.abs(corner - np.array(sky)).max() <= 2


def test_small_central_galaxy_is_left_alone() -> None:
    img = gaussian_galaxy(424, 424, 212, 212, 12, stars=8, seed=5)
    assert is_survey_like(img)
    out, applied = prepare_for_model(img, "auto")
    assert not applied and out.tobytes() == img.tobytes()
    out, applied = prepare_for_model(img, "off")
    assert not applied and out.tobytes() == img.tobytes()
    out, applied = prepare_for_model(img, "on")
    assert applied and out.size == (SURVEY_SIZE, SURVEY_SIZE)
    with pytest.raises(ValueError, match="auto, on, off"):
        prepare_for_model(img, "sometimes")


def test_wrong_sizes_are_not_survey_like() -> None:
    small_galaxy = dict(sigma=5.0)
    assert not is_survey_like(gaussian_galaxy(1000, 1000, 500, 500, **small_galaxy))
    assert not is_survey_like(gaussian_galaxy(424, 300, 212, 150, **small_galaxy))
    assert not is_survey_like(gaussian_galaxy(200, 200, 100, 100, **small_galaxy))


def test_degrade_reaches_survey_resolution_sky_and_noise() -> None:
    """Sharp stars on a clean black sky come out at SDSS star width, sky level and noise."""
    rng = np.random.default_rng(7)
    pixels = np.full((SURVEY_SIZE, SURVEY_SIZE, 3), 12.0)
    ys, xs = np.mgrid[0:SURVEY_SIZE, 0:SURVEY_SIZE] + 0.5
    sigma = 1.2
    for _ in range(25):
        sx, sy = rng.uniform(40, SURVEY_SIZE - 40, 2)
        pixels += (240 * np.exp(-((xs - sx) ** 2 + (ys - sy) ** 2) / (2 * sigma**2)))[..., None]
    sharp = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    out = degrade_to_survey(sharp, source_fwhm=2.3548 * sigma)
    lum = luminance(out)
    fwhm = _psf_fwhm(lum)
    assert fwhm is not None and fwhm == pytest.approx(TRAINING_PSF_FWHM, rel=0.25)
    level, noise = sky_level(lum)
    assert abs(level - TRAINING_SKY_LEVEL) <= 2 and 1.5 <= noise <= 5


# --- real images ---------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize("name", ["elliptical_to_test.jpg", "elliptical_to_test_ii.jpg",
                                  "spiral_to_test.jpg", "spiral_to_test_ii.jpg"])
def test_press_seed_examples_are_matched(name: str) -> None:
    loaded = read_image(DATA / "seed_examples" / name)
    assert loaded.format == "PNG"
    assert any("content is PNG" in note for note in loaded.notes)
    assert not is_survey_like(loaded.image)
    out = match_to_survey(loaded.image)
    assert out.size == (SURVEY_SIZE, SURVEY_SIZE) and out.mode == "RGB"
    assert find_galaxy(out).fraction == pytest.approx(TRAINING_RADIUS_FRACTION, rel=0.35)


@needs_data
def test_survey_cutouts_are_survey_like() -> None:
    paths = [DATA / "seed_examples" / "1254.jpg", DATA / "seed_examples" / "1380.jpg"]
    paths += sorted((DATA / "gz1_sdss" / "images").glob("*.jpeg"))[:20]
    assert len(paths) == 22
    for path in paths:
        img = read_image(path).image
        assert is_survey_like(img), path.name
        out, applied = prepare_for_model(img, "auto")
        assert not applied and out is not None


@needs_data
def test_survey_cutouts_shrunk_to_thumbnails_are_survey_like_press_thumbnails_are_not() -> None:
    """A catalogue's 224 px thumbnail of an SDSS cutout is framed as in training, and matching
    it cost a point of balanced accuracy (THUMBNAIL_MIN_FWHM); a small press picture with
    sharper stars for its size is still matched."""
    paths = sorted((DATA / "gz1_sdss" / "images").glob("*.jpeg"))[:30]
    kept = 0
    for path in paths:
        shrunk = read_image(path).image.resize((224, 224), Image.Resampling.LANCZOS)
        kept += is_survey_like(shrunk)
        assert not is_survey_like(shrunk.resize((160, 160), Image.Resampling.LANCZOS))
    assert kept >= 0.7 * len(paths), kept  # a star is measured in about 80% of them
    # a 300 px ESA/Hubble picture of a small galaxy among stars, and the same shrunk to 224 px:
    # framed like a cutout, but its stars are a third as wide for its size
    press = read_image(DATA / "hubble_dev" / "heic1318a.jpg").image
    for picture in (press, press.resize((224, 224), Image.Resampling.LANCZOS)):
        assert find_galaxy(picture).fraction < 0.3 and _psf_fwhm(luminance(picture)) is not None
        assert not is_survey_like(picture)
