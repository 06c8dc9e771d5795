"""Shared fixtures. Everything synthetic is drawn here by the tests themselves; the real data in
``../shared/data`` is used only by tests marked ``realdata`` and skipped when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from galaxy_core.config import default_data_root

SYNTHETIC_NOTE = "# SYNTHETIC test fixture written by tests/conftest.py, not real Galaxy Zoo data"


def draw_galaxy(kind: str, size: int = 64, seed: int = 0) -> Image.Image:
    """A crude but learnable galaxy: ellipticals are smooth round blobs, spirals are flattened
    disks with two arms; both on a noisy dark sky."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    cx, cy = size / 2 + rng.normal(0, 1), size / 2 + rng.normal(0, 1)
    dx, dy = xx - cx, yy - cy
    angle = rng.uniform(0, np.pi)
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    scale = size / 10
    if kind == "elliptical":
        r = np.hypot(u, v / rng.uniform(0.7, 1.0))
        light = np.exp(-(r / scale) ** 1.0)
        colour = np.array([1.0, 0.85, 0.6])
    else:
        r = np.hypot(u, v / 0.6)
        theta = np.arctan2(v, u)
        arms = 0.5 * (1 + np.cos(2 * theta - 1.5 * np.log1p(r / scale * 3)))
        light = np.exp(-r / (1.6 * scale)) * (0.3 + 0.7 * arms)
        colour = np.array([0.6, 0.7, 1.0])
    img = light[..., None] * colour * 230 + rng.normal(6, 3, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


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
