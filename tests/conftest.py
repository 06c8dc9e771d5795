"""Shared fixtures. Everything synthetic is drawn here by the tests themselves; the real data in
``../shared/data`` is used only by tests marked ``realdata`` and skipped when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from galaxy_core.locations import default_data_root

SYNTHETIC_NOTE = "# SYNTHETIC test fixture written by tests/conftest.py, not real Galaxy Zoo data"


KINDS = ("elliptical", "spiral", "gaussian")
_LOOKS = {  # kind -> (colour, peak brightness, sky level per channel, sky noise)
    "elliptical": ((1.0, 0.85, 0.6), 230.0, (6.0, 6.0, 6.0), 3.0),
    "spiral": ((0.6, 0.7, 1.0), 230.0, (6.0, 6.0, 6.0), 3.0),
    "gaussian": ((1.05, 1.0, 0.85), 180.0, (4.0, 4.0, 5.0), 3.0),
}


def draw_galaxy(kind: str, size: int = 64, seed: int = 0, *, width: int | None = None,
                height: int | None = None, centre: tuple[float, float] | None = None,
                radius: float | None = None, amp: float | None = None,
                sky: tuple[float, float, float] | None = None, noise: float | None = None,
                stars: int = 0, grey_noise: bool | None = None) -> Image.Image:
    """The one synthetic galaxy of the tests: light of ``kind`` on a noisy dark sky, in
    continuous pixel coordinates (pixel ``i`` covers ``[i, i + 1)``, so its centre is ``i + 0.5``).

    ``elliptical``  a smooth exponential blob (axis ratio 0.7-1), random orientation, warm colour
    ``spiral``      a flattened exponential disk (axis ratio 0.6) with two logarithmic arms, blue
    ``gaussian``    a round 2-D Gaussian of sigma ``radius``, centred exactly on ``centre``: the
                    profile whose centre and light radii the survey-matching tests know exactly

    The frame is ``size`` square unless ``width``/``height`` say otherwise. Ellipticals and
    spirals sit within a pixel or so of the middle (drawn from ``seed``) unless ``centre`` is
    given; their scale length ``radius`` defaults to a tenth of the frame. ``amp`` is the peak
    brightness (0 draws empty sky), ``sky`` the background per channel, ``noise`` its standard
    deviation (per channel for ellipticals and spirals, the same in all three channels for
    ``gaussian`` unless ``grey_noise`` says otherwise), and ``stars`` adds that many small bright
    point sources at random places.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    colour, default_amp, default_sky, default_noise = _LOOKS[kind]
    amp = default_amp if amp is None else amp
    sky = default_sky if sky is None else sky
    noise = default_noise if noise is None else noise
    grey_noise = (kind == "gaussian") if grey_noise is None else grey_noise
    width, height = width or size, height or size
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    if centre is None:
        centre = (width / 2, height / 2) if kind == "gaussian" else \
            (width / 2 + rng.normal(0, 1), height / 2 + rng.normal(0, 1))
    dx, dy = xs - centre[0], ys - centre[1]
    scale = min(width, height) / 10 if radius is None else radius
    if kind == "gaussian":
        light = np.exp(-(dx**2 + dy**2) / (2 * scale**2))
    else:
        angle = rng.uniform(0, np.pi)
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        if kind == "elliptical":
            light = np.exp(-np.hypot(u, v / rng.uniform(0.7, 1.0)) / scale)
        else:
            r = np.hypot(u, v / 0.6)
            arms = 0.5 * (1 + np.cos(2 * np.arctan2(v, u) - 1.5 * np.log1p(r / scale * 3)))
            light = np.exp(-r / (1.6 * scale)) * (0.3 + 0.7 * arms)
    light = amp * light
    for _ in range(stars):
        sx, sy = rng.uniform(0, width), rng.uniform(0, height)
        light += rng.uniform(40, 120) * np.exp(-((xs - sx) ** 2 + (ys - sy) ** 2) / (2 * 1.5**2))
    pixels = (np.asarray(sky, dtype=np.float64) + light[..., None] * np.asarray(colour)
              + rng.normal(0, noise, (height, width, 1 if grey_noise else 3)))
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), mode="RGB")


def gaussian_galaxy(width: int, height: int, cx: float, cy: float, sigma: float,
                    **looks) -> Image.Image:
    """A round Gaussian galaxy of ``sigma`` at (``cx``, ``cy``) on a ``width`` x ``height``
    frame: :func:`draw_galaxy` of kind ``gaussian`` (``amp``, ``sky``, ``noise``, ``stars``,
    ``seed`` pass through)."""
    return draw_galaxy("gaussian", width=width, height=height, centre=(cx, cy), radius=sigma,
                       **looks)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = default_data_root()
    if not (root / "gz1_sdss" / "gz1_classes.csv").is_file():
        pytest.skip(f"real data not found at {root} (set GALAXY_DATA to use it)")
    return root


def write_gz1_fixture(folder: Path, n_per_class: int = 12, size: int = 64) -> dict[str, Path]:
    """Synthetic GZ1 table 2, GZ2 filename mapping, leaf table and images (by asset id and by
    OBJID), with a few planted problems recorded in the returned dict's ``expect`` entries."""
    images_gz2 = folder / "images_gz2"
    images_gz1 = folder / "images_gz1"
    images_gz2.mkdir(parents=True)
    images_gz1.mkdir(parents=True)
    rows, mapping, leaf = [], [], []
    objid0 = 587722981741363200  # realistic 18-digit SDSS ids (beyond float precision)
    kinds = ["elliptical"] * n_per_class + ["spiral"] * n_per_class + ["uncertain"] * 3
    for i, kind in enumerate(kinds):
        objid = objid0 + i
        p_el = {"elliptical": 0.9, "spiral": 0.05, "uncertain": 0.5}[kind]
        p_cs = {"elliptical": 0.05, "spiral": 0.92, "uncertain": 0.4}[kind]
        rows.append({"OBJID": objid, "RA": "00:00:00.41", "DEC": "-10:22:25.7", "NVOTE": 30,
                     "P_EL": p_el, "P_CW": p_cs / 3, "P_ACW": p_cs / 3, "P_EDGE": p_cs / 3,
                     "P_DK": 0.05, "P_MG": 0.0, "P_CS": p_cs, "P_EL_DEBIASED": p_el,
                     "P_CS_DEBIASED": p_cs, "SPIRAL": int(kind == "spiral"),
                     "ELLIPTICAL": int(kind == "elliptical"), "UNCERTAIN": int(kind == "uncertain")})
        asset = 1000 + i
        mapping.append({"objid": objid, "sample": "original", "asset_id": asset})
        leaf.append({"OBJID": objid, "CLASS": {"elliptical": 0, "spiral": 1 + i % 3,
                                               "uncertain": 4 + i % 2}[kind]})
        img = draw_galaxy("elliptical" if kind == "uncertain" else kind, size, seed=i)
        img.save(images_gz2 / f"{asset}.jpg", quality=92)
        img.save(images_gz1 / f"{objid}.jpeg", quality=92)
    # Planted problems: one missing image, one unreadable image, one exact duplicate image.
    (images_gz2 / "1000.jpg").unlink()
    (images_gz1 / f"{objid0}.jpeg").unlink()
    (images_gz2 / "1001.jpg").write_bytes(b"not a jpeg at all")
    (images_gz1 / f"{objid0 + 1}.jpeg").write_bytes(b"not a jpeg at all")
    dup_src = n_per_class  # first spiral
    (images_gz2 / f"{1000 + dup_src + 1}.jpg").write_bytes((images_gz2 / f"{1000 + dup_src}.jpg").read_bytes())
    (images_gz1 / f"{objid0 + dup_src + 1}.jpeg").write_bytes(
        (images_gz1 / f"{objid0 + dup_src}.jpeg").read_bytes())
    paths = {"catalogue": folder / "GalaxyZoo1_DR_table2.csv",
             "mapping": folder / "gz2_filename_mapping.csv",
             "leaf": folder / "gz1_classes.csv", "images_gz2": images_gz2,
             "images_gz1": images_gz1}
    for key, frame in (("catalogue", rows), ("mapping", mapping), ("leaf", leaf)):
        pd.DataFrame(frame).to_csv(paths[key], index=False)
    (folder / "README_SYNTHETIC.txt").write_text(SYNTHETIC_NOTE + "\n")
    return paths


@pytest.fixture
def gz1_fixture(tmp_path: Path) -> dict[str, Path]:
    return write_gz1_fixture(tmp_path / "synthetic")


@pytest.fixture(autouse=True)
def _few_threads():
    """Two cores: keep tests from oversubscribing when run beside other work."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(previous)
