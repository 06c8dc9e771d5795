"""Grad-CAM overlays and catalogue model inputs for the pages, cached per model and image; the
maps of a report's galaxies cached on disk; one galaxy's details (the dialog of the Failures and
Evaluate pages).

Sits above ``models`` (its stamp), ``serving`` (maps from shared passes),
``paths`` and ``ui``; none imports it.

Maps on disk: the Failures page shows up to 48 galaxies, each with the Grad-CAM of its predicted
class. They are computed once, in one pass after the cards are drawn, and kept in
``<model>/report_test/gradcam_cache.npz`` (beside the report they illustrate), keyed by the
model's stamp (``models.stamp``: its weight and model.json times) and by the map's recipe (the
default layer and method of ``galaxy_core.explain.gradcam``): a retrained model or another
recipe makes the file stale and it is replaced. The file is written atomically
(``galaxy_core.io_utils.atomic_write``); a model folder that cannot be written (read-only) keeps
the maps in this process instead.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import paths
from dashboard.charts import probability_figure
from dashboard.models import stamp
from dashboard.serving import class_map, class_maps
from dashboard.ui import one_line, upscale
from galaxy_core.data.imageio import load_image
from galaxy_core.data.prepared import KEPT_TABLE
from galaxy_core.errors import GalaxyError
from galaxy_core.explain import gradcam as cams
from galaxy_core.explain.gradcam import overlay
from galaxy_core.io_utils import atomic_write
from galaxy_core.model.store import LoadedModel, report_dir
from galaxy_core.predict.classify import model_input

log = logging.getLogger("galaxy_dashboard")

CAM_CACHE_FILE = "gradcam_cache.npz"
SKYSERVER = "https://skyserver.sdss.org/dr16/en/tools/explore/summary.aspx?id={objid}"
SUBCLASSES = {"EL": "elliptical", "CW": "clockwise spiral", "ACW": "anticlockwise spiral",
              "EDGE": "edge-on disc", "DK": "don't know", "MG": "merger"}
"""Galaxy Zoo 1's leaf classes (the prepared table's ``leaf_class``), in words: the spirals are
split by the way their arms wind on the sky, and discs seen edge-on (no arms visible) are a
third kind of spiral."""

_cache_lock = threading.Lock()
_in_memory: dict[tuple[str, str], dict[str, np.ndarray]] = {}


@st.cache_data(max_entries=512, show_spinner=False)
def cam_overlay(_loaded: LoadedModel, model_key: str, image: np.ndarray,
                target: int) -> np.ndarray:
    """Grad-CAM of ``target`` on ``image`` (uint8, as the model saw it), blended over it.
    ``model_key`` (``models.model_key``) keys the cache; the model itself is left out of it."""
    image = np.array(image)  # cached arrays come back read-only
    return overlay(image, class_map(_loaded, image, target))


@st.cache_data(max_entries=512, show_spinner=False)
def catalogue_input(_loaded: LoadedModel, model_key: str, path: str) -> np.ndarray:
    """A catalogue galaxy's model input, built exactly as in training (no survey matching)."""
    return model_input(_loaded, load_image(Path(path)), survey="off")[0]


def cam_caption(loaded: LoadedModel, class_name: str) -> str:
    """What the map shows, and how coarse it is (students otherwise read the smooth colours
    as pixel-sharp)."""
    return (f"Grad-CAM for '{class_name}': red areas pushed the network towards {class_name}, "
            f"blue ones did not. The map has {cams.map_grid_text(loaded)}, smoothed.")


# --- maps of a report's galaxies, on disk --------------------------------------------------------
def recipe() -> str:
    """What a map depends on besides the model: the library's default layer and method."""
    return f"{cams.DEFAULT_LAYER}-{cams.DEFAULT_METHOD}"


def cache_key(loaded: LoadedModel) -> str:
    return f"{stamp(Path(loaded.path)):.6f}:{recipe()}"


def cache_path(loaded: LoadedModel, part: str = "test") -> Path:
    return report_dir(Path(loaded.path), part) / CAM_CACHE_FILE


def map_id(objid: object, target: int) -> str:
    return f"{objid}:{int(target)}"


def read_maps(path: Path, key: str) -> dict[str, np.ndarray]:
    """The maps stored at ``path`` for ``key`` ({} for a missing, unreadable or stale file), as
    float maps in [0, 1]."""
    memory = _in_memory.get((str(path), key))
    if memory is not None:
        return dict(memory)
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return {}
            ids, maps = [str(i) for i in data["ids"]], data["maps"]
    except (OSError, ValueError, KeyError):
        return {}
    return {i: m.astype(np.float32) / 255 for i, m in zip(ids, maps)}


def write_maps(path: Path, key: str, new: dict[str, np.ndarray]) -> bool:
    """Add ``new`` maps to the file at ``path`` (atomically; a stale file is replaced). False
    when the folder cannot be written: the maps are then kept in this process."""
    with _cache_lock:
        stored = read_maps(path, key)
        stored.update(new)
        ids = sorted(stored)
        maps = np.stack([np.round(np.clip(stored[i], 0, 1) * 255).astype(np.uint8)
                         for i in ids]) if ids else np.zeros((0, 1, 1), np.uint8)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, key=np.array(key), ids=np.array(ids), maps=maps)
        try:
            atomic_write(path, lambda handle: handle.write(buffer.getvalue()))
        except OSError as exc:
            log.warning("cannot write the Grad-CAM cache %s: %s", path, exc)
            _in_memory[(str(path), key)] = {i: m.astype(np.float32) / 255
                                            for i, m in zip(ids, maps)}
            return False
        _in_memory.pop((str(path), key), None)
        return True


def compute_maps(loaded: LoadedModel, images: Sequence[np.ndarray], targets: Sequence[int],
                 progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """Grad-CAM maps of ``images`` (model inputs) for ``targets``: through the same shared
    passes as the Classify page's maps (``serving.class_maps``)."""
    return class_maps(loaded, list(images), [int(t) for t in targets], progress)


def report_maps(loaded: LoadedModel, wanted: Sequence[tuple[object, np.ndarray, int]],
                progress: Callable[[int, int], None] | None = None,
                part: str = "test") -> dict[str, np.ndarray]:
    """Maps for ``wanted`` (objid, model input, target class) of one report's galaxies: those
    on disk are read, the others computed in one pass and added to the file."""
    path, key = cache_path(loaded, part), cache_key(loaded)
    have = read_maps(path, key)
    missing = [(map_id(o, t), image, t) for o, image, t in wanted if map_id(o, t) not in have]
    if missing:
        made = compute_maps(loaded, [m[1] for m in missing], [m[2] for m in missing], progress)
        new = {m[0]: cam for m, cam in zip(missing, made)}
        write_maps(path, key, new)
        have.update(new)
    return {map_id(o, t): have[map_id(o, t)] for o, _, t in wanted}


# --- one galaxy's details ------------------------------------------------------------------------
def skyserver_url(objid: object) -> str | None:
    """The SDSS SkyServer page of an object id (digits only: a report is a file anyone could
    edit, so anything else gets no link)."""
    text = str(objid).strip()
    return SKYSERVER.format(objid=text) if re.fullmatch(r"\d{1,20}", text) else None


@lru_cache(maxsize=8)
def _leaf_table(path: str, version: float) -> dict[str, str]:
    try:
        table = pd.read_csv(path, dtype={"objid": str}, usecols=["objid", "leaf_class"])
    except (OSError, ValueError):
        return {}
    table = table.dropna()
    return dict(zip(table["objid"].astype(str), table["leaf_class"].astype(str)))


def subclasses() -> dict[str, str]:
    """objid -> Galaxy Zoo 1 leaf class (``EL``, ``CW``, ``ACW``, ``EDGE``) from every prepared
    dataset the dashboard knows (GALAXY_PREPARED first)."""
    found: dict[str, str] = {}
    for folder in reversed(paths.prepared_folders()):
        table = folder / KEPT_TABLE
        try:
            version = table.stat().st_mtime
        except OSError:
            continue
        found.update(_leaf_table(str(table), version))
    return found


def subclass_text(code: str | None) -> str:
    if not code:
        return "not recorded (a prepared table without leaf classes)"
    return f"{SUBCLASSES[code]} ({code})" if code in SUBCLASSES else code


def show_galaxy(loaded: LoadedModel, model_key: str, row: dict[str, Any], classes: list[str],
                images: paths.ReportImages) -> None:
    """The body of a galaxy's dialog: the full cutout, the model input and the Grad-CAM of the
    predicted class, the Galaxy Zoo subclass, the probabilities and a SkyServer link."""
    a, b, c = st.columns(3)
    if images.folder is None and not images.sources:
        st.warning("The galaxy images are not on this machine. " + paths.set_data_hint())
    else:
        try:
            path = images.file(row.get("image"))
            cutout = load_image(path)
            a.image(cutout, caption=f"Full SDSS cutout ({cutout.width}×{cutout.height} px)",
                    width="stretch")
            arr = catalogue_input(loaded, model_key, str(path))
            b.image(upscale(arr), caption="As the model sees it (centre crop)", width="stretch")
            predicted = row.get("predicted")
            if predicted in classes:
                c.image(upscale(cam_overlay(loaded, model_key, arr, classes.index(predicted))),
                        caption=cam_caption(loaded, predicted), width="stretch")
        except GalaxyError as exc:
            st.error(one_line(exc))
    objid = one_line(row.get("objid"), 40).replace("`", "'")
    url = skyserver_url(row.get("objid"))
    code = row.get("subclass") or subclasses().get(str(row.get("objid")))
    conf = row.get("confidence")
    st.markdown(
        f"**SDSS objid** `{objid}`"
        + (f" · [open on SkyServer (DR16)]({url})" if url else "")
        + f"  \n**Galaxy Zoo label** {row.get('true')} · **subclass** {subclass_text(code)}"
        + f"  \n**Predicted** {row.get('predicted')}"
        + (f" ({conf:.1%})" if isinstance(conf, float) else ""))
    probs = {k: row[f"p_{k}"] for k in classes if isinstance(row.get(f"p_{k}"), float)}
    if len(probs) == len(classes):
        st.plotly_chart(probability_figure(probs), key="detail_probs")
