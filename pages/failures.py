"""Failures: where the model goes wrong, each galaxy beside its Grad-CAM.

The cards are drawn first (galaxy images only take a file read each); the Grad-CAM maps missing
from the disk cache (``dashboard.explain``) are then computed in one pass and drawn into them."""

from dashboard.ui import require_app

require_app()  # first: a page opened on its own reroutes through app.py before any heavy
#                 import (torch, through dashboard.models: ~4 s on a server's first visit)

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import explain, models, paths
from dashboard.ui import one_line, upscale
from galaxy_core.errors import GalaxyError
from galaxy_core.explain.gradcam import map_grid_text, overlay
from galaxy_core.model.store import report_dir

SETS = {"failures": "Most confident failures", "uncertain": "Least confident successes",
        "wrong": "All misclassified", "cell": "One cell of the matrix"}
SORTS = {"confidence_high": "Confidence, highest first",
         "confidence_low": "Confidence, lowest first",
         "p_spiral": "P(spiral), highest first", "subclass": "Galaxy Zoo subclass"}
VIEWS = {"cards": "Cards", "table": "Table"}
OPENED_KEY = "failures_opened"  # the table selection whose dialog was opened already
CARD_SIZE = 192

st.title("Where does the model fail?")
st.caption("Galaxies of the held-out test set the model got wrong with high confidence, and "
           "ones it got right but only just, each beside the Grad-CAM of its predicted class.")
choice, loaded = models.current_loaded()
model_key = models.model_key(loaded)
report = models.report(choice, "test")
if report is None:
    st.warning(f"{paths.show(choice.path)} has no test report "
               f"({report_dir(choice.path, 'test').name}), so there are no "
               "failures to show. Finished training runs write one automatically.")
    st.stop()
classes = report["classes"]
positive = f"p_{classes[1]}"
leaf = explain.subclasses()


def with_confidence(row: dict) -> dict:
    """Rows of report['predictions'] carry only P(positive); add both probabilities, the
    confidence and the Galaxy Zoo subclass."""
    row = {**row, "subclass": row.get("subclass") or leaf.get(str(row.get("objid")), "")}
    if "confidence" in row:
        return row
    p = float(row[positive])
    probs = {f"p_{classes[0]}": 1 - p, positive: p}
    return {**row, **probs, "confidence": probs[f"p_{row['predicted']}"]}


which = st.segmented_control("Show", list(SETS), default="failures", format_func=SETS.get,
                             key="failures_set") or "failures"
if which == "cell":
    a, b, _ = st.columns([1, 1, 2])
    cell_true = a.selectbox("Labelled", classes, key="failures_cell_true",
                            help="The row of the confusion matrix (Galaxy Zoo's label).")
    cell_guess = b.selectbox("Predicted", classes, index=min(1, len(classes) - 1),
                             key="failures_cell_guess",
                             help="The column of the confusion matrix (the model's answer).")
f2, f3, f4, f5, f6 = st.columns([1.2, 1.1, 1.1, 0.6, 1.0])
true_classes = f2.multiselect("Labelled as", classes, default=classes,
                              disabled=which == "cell")
low, high = f3.slider("Model confidence", 0.5, 1.0, (0.5, 1.0), 0.01,
                      help="The calibrated probability of the class the model chose.")
order = f4.selectbox("Sort by", list(SORTS), format_func=SORTS.get, key="failures_sort")
limit = f5.number_input("Show at most", 3, 48, 12, 3, help="Cards drawn (the table lists all).")
view = f6.segmented_control("View", list(VIEWS), default="cards", format_func=VIEWS.get,
                            key="failures_view") or "cards"

images = paths.report_images(report)
listed = {"failures": report.get("confident_failures", []),
          "uncertain": report.get("uncertain_successes", [])}
if which in listed and images.missing:
    # The report's two lists are the whole test set's; on a machine without one survey's images
    # (GZ2 on a fresh clone) they may hold none that can be shown, so the same lists are made
    # again from the per-galaxy predictions of the galaxies that are here.
    here = [with_confidence(r) for r in report.get("predictions", [])
            if images.has(r.get("image"))]
    wrong = which == "failures"
    rows = sorted((r for r in here if (r["true"] != r["predicted"]) == wrong),
                  key=lambda r: -r["confidence"] if wrong else r["confidence"])
    rows = rows[:max(len(listed[which]), 1)]
    st.caption(f"The {' and '.join(images.missing)} images are not on this machine: these are "
               f"the {SETS[which].lower()} among the {len(here)} test galaxies from "
               f"{', '.join(images.sources) or 'elsewhere'}.")
elif which in listed:
    rows = listed[which]
elif which == "wrong":
    rows = [r for r in report.get("predictions", []) if r["true"] != r["predicted"]]
else:
    rows = [r for r in report.get("predictions", [])
            if r["true"] == cell_true and r["predicted"] == cell_guess]
rows = [with_confidence(r) for r in rows]
rows = [r for r in rows if (which == "cell" or r["true"] in true_classes)
        and low <= r["confidence"] <= high]
sorters = {"confidence_high": lambda r: -r["confidence"],
           "confidence_low": lambda r: r["confidence"],
           "p_spiral": lambda r: -float(r.get("p_spiral", 0.0)),
           "subclass": lambda r: (r["subclass"] or "~", -r["confidence"])}
rows.sort(key=sorters[order])
st.caption(f"{len(rows)} galaxies match" + (f"; showing {min(len(rows), int(limit))}."
                                            if view == "cards" else "."))

if images.refused:
    st.warning(images.refused)
if images.missing:
    here = [r for r in rows if images.has(r.get("image"))]
    if len(here) < len(rows):
        st.caption(f"{len(rows) - len(here)} of these galaxies come from "
                   f"{' and '.join(images.missing)}, whose images are not on this machine; the "
                   f"{len(here)} from {', '.join(images.sources) or 'elsewhere'} are shown.")
    rows = here
if images.folder is None and not images.sources:
    st.warning(f"Galaxy images not found (looked in {paths.show(paths.gz1_images())}"
               + ("" if images.refused or not report.get("image_dir")
                  else f" and {one_line(report['image_dir'], 120)}") + "). "
               + paths.set_data_hint())
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.stop()


def galaxy_input(row: dict) -> np.ndarray:
    """The model input of a report row's galaxy; GalaxyError for a name pointing outside the
    image folder (nothing is read then) or a file that cannot be read."""
    path = images.file(row.get("image"))
    return explain.catalogue_input(loaded, model_key, str(path))


def side_by_side(image: np.ndarray, cam: np.ndarray | None, size: int = CARD_SIZE) -> np.ndarray:
    """The galaxy and its Grad-CAM as one picture, so a card shows them next to each other; a
    dark tile stands in for a map not computed yet."""
    gap = np.full((size, 6, 3), 14, dtype=np.uint8)
    right = (np.asarray(upscale(cam, size)) if cam is not None
             else np.full((size, size, 3), 30, dtype=np.uint8))
    return np.hstack([np.asarray(upscale(image, size)), gap, right])


@st.dialog("Galaxy details", width="large")
def details(row: dict) -> None:
    explain.show_galaxy(loaded, model_key, row, classes, images)


def subclass_words(code: str) -> str:
    """A GZ1 leaf code in words; a GZ2 class ("disk, edge-on") is words already."""
    return explain.SUBCLASSES.get(code, code) if code else ""


if view == "table":
    table = pd.DataFrame([{
        "objid": r["objid"], "subclass": subclass_words(r["subclass"]), "labelled": r["true"],
        "predicted": r["predicted"], "confidence": r["confidence"],
        "p_spiral": r.get("p_spiral")} for r in rows],
        columns=["objid", "subclass", "labelled", "predicted", "confidence", "p_spiral"])
    table_key = f"failures_table_{which}"
    event = st.dataframe(
        table, hide_index=True, on_select="rerun", selection_mode="single-row", key=table_key,
        column_config={
            "objid": st.column_config.TextColumn("SDSS objid"),
            "subclass": st.column_config.TextColumn("Subclass",
                                                    help="Galaxy Zoo 1's finer class."),
            "confidence": st.column_config.ProgressColumn("Confidence", format="%.3f",
                                                          min_value=0.5, max_value=1),
            "p_spiral": st.column_config.NumberColumn("P(spiral)", format="%.3f")})
    st.caption("Select a row to open the galaxy: its full cutout, Grad-CAM and SkyServer page.")
    picked = tuple(event.selection.rows) if event is not None else ()
    if not picked:
        st.session_state.pop(OPENED_KEY, None)
    elif st.session_state.get(OPENED_KEY) != (table_key, picked) and picked[0] < len(rows):
        st.session_state[OPENED_KEY] = (table_key, picked)  # opened once, not on every rerun
        details(rows[picked[0]])
    st.stop()

shown = rows[:int(limit)]
if not shown:
    st.info("No galaxies match these filters.")
    st.stop()

progress_slot = st.empty()
stored = explain.read_maps(explain.cache_path(loaded), explain.cache_key(loaded))
pending = []  # (row, model input, target, the card's picture slot)
per_row = 3
for start in range(0, len(shown), per_row):
    for col, row in zip(st.columns(per_row), shown[start:start + per_row]):
        with col.container(border=True):
            slot = st.empty()
            try:
                arr = galaxy_input(row)
            except GalaxyError as exc:
                slot.error(one_line(exc))
            else:
                target = classes.index(row["predicted"])
                cam = stored.get(explain.map_id(row["objid"], target))
                slot.image(side_by_side(arr, None if cam is None else overlay(arr, cam)),
                           alt=f"Galaxy {row['objid']} and Grad-CAM")
                if cam is None:
                    pending.append((row, arr, target, slot))
            wrong = row["true"] != row["predicted"]
            mark = ":red[:material/close:]" if wrong else ":green[:material/check:]"
            words = subclass_words(row["subclass"])
            sub = f" ({words})" if words and words != row["true"] else ""
            st.markdown(f"{mark} labelled **{row['true']}**{sub}, predicted "
                        f"**{row['predicted']}** ({row['confidence']:.0%})")
            if st.button("Details", key=f"details_{which}_{row['objid']}",
                         icon=":material/open_in_full:"):
                details(row)
st.caption("Each card: the galaxy as the model sees it, then the Grad-CAM of the predicted "
           "class (red: what pushed the network to its answer; the map has "
           f"{map_grid_text(loaded)}, smoothed).")

if pending:
    bar = progress_slot.progress(0.0, text=f"Computing {len(pending)} Grad-CAM maps…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Computed {done} of {total} Grad-CAM maps")

    maps = explain.report_maps(loaded, [(r["objid"], arr, t) for r, arr, t, _ in pending],
                               progress)
    for row, arr, target, slot in pending:
        slot.image(side_by_side(arr, overlay(arr, maps[explain.map_id(row["objid"], target)])),
                   alt=f"Galaxy {row['objid']} and Grad-CAM")
    progress_slot.empty()
