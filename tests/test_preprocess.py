"""The crop every model input goes through: fixed, and sized on the galaxy (``crop_radii``).

Galaxies are the synthetic Gaussians of ``conftest.gaussian_galaxy`` on a 423 px survey-like frame.
"""

from __future__ import annotations

import numpy as np
import pytest

from galaxy_core.data.preprocess import (
    ADAPTIVE_CROP_RANGE,
    crop_and_resize,
    crop_fraction_for,
)
from galaxy_core.data.galaxy_finder import find_galaxy
from tests.conftest import gaussian_galaxy

SIDE = 423


def light_radius(pixels: np.ndarray) -> float:
    """Second-moment radius of the sky-subtracted light, as a fraction of the side."""
    lum = pixels.astype(np.float64).mean(axis=2)
    lum = lum - np.median(lum[:4])
    lum[lum < 0.05 * lum.max()] = 0.0  # no sky noise in the moment
    ys, xs = np.mgrid[0:lum.shape[0], 0:lum.shape[1]] + 0.5
    total = lum.sum()
    cx, cy = (lum * xs).sum() / total, (lum * ys).sum() / total
    return float(np.sqrt((lum * ((xs - cx) ** 2 + (ys - cy) ** 2)).sum() / total) / lum.shape[0])


def test_fixed_crop_ignores_the_galaxy() -> None:
    small = gaussian_galaxy(SIDE, SIDE, SIDE / 2, SIDE / 2, sigma=8.0)
    assert crop_fraction_for(small, 0.4) == 0.4
    assert crop_fraction_for(small, 0.4, crop_radii=0.0) == 0.4


@pytest.mark.parametrize("sigma", [18.0, 25.0, 35.0])  # real cutouts: 0.08-0.15 of the side
def test_adaptive_crop_scales_with_the_galaxy(sigma: float) -> None:
    img = gaussian_galaxy(SIDE, SIDE, SIDE / 2, SIDE / 2, sigma=sigma)
    fraction = crop_fraction_for(img, 0.4, crop_radii=3.6)
    assert fraction == pytest.approx(3.6 * find_galaxy(img).fraction)


def test_adaptive_crop_shows_small_and_large_galaxies_at_one_scale() -> None:
    sizes = {}
    for sigma in (16.0, 32.0):
        img = gaussian_galaxy(SIDE, SIDE, SIDE / 2, SIDE / 2, sigma=sigma, noise=0.5)
        fixed = light_radius(crop_and_resize(img, 0.4, 96))
        adaptive = light_radius(crop_and_resize(img, 0.4, 96, crop_radii=3.6))
        sizes[sigma] = (fixed, adaptive)
    fixed_ratio = sizes[32.0][0] / sizes[16.0][0]
    adaptive_ratio = sizes[32.0][1] / sizes[16.0][1]
    assert fixed_ratio > 1.8  # a fixed crop keeps the 2x difference in size
    assert adaptive_ratio == pytest.approx(1.0, abs=0.15)


def test_blank_sky_falls_back_to_the_fixed_crop() -> None:
    blank = gaussian_galaxy(SIDE, SIDE, SIDE / 2, SIDE / 2, sigma=8.0, amp=0.0)
    assert crop_fraction_for(blank, 0.4, crop_radii=3.6) == 0.4


def test_huge_galaxy_is_clamped() -> None:
    huge = gaussian_galaxy(SIDE, SIDE, SIDE / 2, SIDE / 2, sigma=70.0)
    assert crop_fraction_for(huge, 0.4, crop_radii=3.6) == ADAPTIVE_CROP_RANGE[1]
    tiny = gaussian_galaxy(SIDE, SIDE, SIDE / 2, SIDE / 2, sigma=2.0, amp=250.0)
    assert crop_fraction_for(tiny, 0.4, crop_radii=3.6) == ADAPTIVE_CROP_RANGE[0]
    assert crop_and_resize(tiny, 0.4, 64, crop_radii=3.6).shape == (64, 64, 3)
