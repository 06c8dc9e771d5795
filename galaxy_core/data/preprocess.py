"""The one crop-and-resize used for training, evaluation and prediction alike.

Training and inference must see galaxies at the same scale, so every path that feeds the model
goes through :func:`crop_and_resize` with the settings stored in the model's ``model.json``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from galaxy_core.config import Config
from galaxy_core.data.galaxy_finder import find_galaxy


def centre_crop(img: Image.Image, fraction: float) -> Image.Image:
    """Keep the central square whose side is ``fraction`` of the shorter image side."""
    if not 0 < fraction <= 1:
        raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")
    side = max(1, round(min(img.width, img.height) * fraction))
    left = (img.width - side) // 2
    top = (img.height - side) // 2
    return img.crop((left, top, left + side, top + side))


ADAPTIVE_CROP_RANGE = (0.2, 0.8)
"""Limits on an adaptive crop's side (fraction of the cutout): a missed or merged detection can
then at worst halve or double the usual framing."""


def crop_fraction_for(img: Image.Image, crop_fraction: float, crop_radii: float = 0.0) -> float:
    """The crop side to use for ``img``: fixed, or ``crop_radii`` galaxy radii when that is > 0.

    Galaxy Zoo cut every image to the galaxy's Petrosian radius, yet the visible galaxy still
    varies from 0.07 to 0.26 of the side (1-99 %), and the smallest are the most misclassified.
    Sizing the crop on the galaxy's own 90 %-light radius shows every galaxy at the same scale.
    """
    if crop_radii <= 0:
        return crop_fraction
    galaxy = find_galaxy(img)
    if not galaxy.found:
        return crop_fraction
    low, high = ADAPTIVE_CROP_RANGE
    return float(np.clip(crop_radii * galaxy.fraction, low, high))


def frame_for_model(img: Image.Image, config: Config) -> np.ndarray:
    """:func:`crop_and_resize` with the framing ``config`` (a model's) stores."""
    return crop_and_resize(img, config.crop_fraction, config.image_size, config.crop_radii)


def crop_and_resize(img: Image.Image, crop_fraction: float, size: int,
                    crop_radii: float = 0.0) -> np.ndarray:
    """Centre-crop then resize with an area-averaging filter; returns uint8 HxWx3."""
    rgb = img.convert("RGB")
    cropped = centre_crop(rgb, crop_fraction_for(rgb, crop_fraction, crop_radii))
    resized = cropped.resize((size, size), Image.Resampling.BOX if cropped.width >= size * 2
                             else Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)
