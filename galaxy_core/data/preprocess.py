"""The one crop-and-resize used for training, evaluation and prediction alike.

Training and inference must see galaxies at the same scale, so every path that feeds the model
goes through :func:`crop_and_resize` with the settings stored in the model's ``model.json``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def centre_crop(img: Image.Image, fraction: float) -> Image.Image:
    """Keep the central square whose side is ``fraction`` of the shorter image side."""
    if not 0 < fraction <= 1:
        raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")
    side = max(1, round(min(img.width, img.height) * fraction))
    left = (img.width - side) // 2
    top = (img.height - side) // 2
    return img.crop((left, top, left + side, top + side))


def crop_and_resize(img: Image.Image, crop_fraction: float, size: int) -> np.ndarray:
    """Centre-crop then resize with an area-averaging filter; returns uint8 HxWx3."""
    cropped = centre_crop(img.convert("RGB"), crop_fraction)
    resized = cropped.resize((size, size), Image.Resampling.BOX if cropped.width >= size * 2
                             else Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)
