"""Failures: where the model goes wrong, each galaxy beside its Grad-CAM."""

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import models, paths
from dashboard.charts import probability_figure
from dashboard.explain import cam_caption, cam_overlay, catalogue_input
from dashboard.ui import one_line, require_app, upscale
from galaxy_core.errors import GalaxyError
from galaxy_core.model.store import report_dir

SETS = {"failures": "Most confident failures", "uncertain": "Least confident successes",
        "wrong": "All misclassified"}

require_app()
st.title("Where does the model fail?")
st.caption("Galaxies of the held-out test set the model got wrong with high confidence, and "
           "ones it got right but only just, each beside the Grad-CAM of its predicted class.")
choice, loaded = models.current_loaded()
report = models.report(choice, "test")
if report is None:
    st.warning(f"{paths.show(choice.path)} has no test report "
               f"({report_dir(choice.path, 'test').name}), so there are no "
               "failures to show. Finished training runs write one automatically.")
    st.stop()
classes = report["classes"]
positive = f"p_{classes[1]}"


def with_confidence(row: dict) -> dict:
    """Rows of report['predictions'] carry only P(positive); add both probabilities."""
    if "confidence" in row:
        return row
    p = float(row[positive])
    probs = {f"p_{classes[0]}": 1 - p, positive: p}
    return {**row, **probs, "confidence": probs[f"p_{row['predicted']}"]}


which = st.segmented_control("Show", list(SETS), default="failures",
                             format_func=SETS.get) or "failures"
f2, f3, f4 = st.columns([1.2, 1.2, 0.6])
true_classes = f2.multiselect("Labelled as", classes, default=classes)
low, high = f3.slider("Model confidence", 0.5, 1.0, (0.5, 1.0), 0.01,
                      help="The calibrated probability of the class the model chose.")
limit = f4.number_input("Show at most", 3, 48, 12, 3)

if which == "failures":
    rows = report.get("confident_failures", [])
elif which == "uncertain":
    rows = report.get("uncertain_successes", [])
else:
    rows = sorted((with_confidence(r) for r in report.get("predictions", [])
                   if r["true"] != r["predicted"]), key=lambda r: -r["confidence"])
rows = [with_confidence(r) for r in rows]
rows = [r for r in rows if r["true"] in true_classes and low <= r["confidence"] <= high]
st.caption(f"{len(rows)} galaxies match; showing {min(len(rows), int(limit))}.")

images = paths.report_images(report)
if images.refused:
    st.warning(images.refused)
image_dir = images.folder
if image_dir is None:
    st.warning(f"Galaxy images not found (looked in {paths.show(paths.gz1_images())}"
               + ("" if images.refused or not report.get("image_dir")
                  else f" and {one_line(report['image_dir'], 120)}") + "). "
               + paths.set_data_hint())
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.stop()


def galaxy_input(row: dict) -> np.ndarray:
    """The model input of a report row's galaxy; GalaxyError for a name pointing outside the
    image folder (nothing is read then) or a file that cannot be read."""
    path = paths.report_image(image_dir, row.get("image"))
    return catalogue_input(loaded, models.model_key(loaded), str(path))


def side_by_side(image, cam, size: int = 192):
    """The galaxy and its Grad-CAM as one picture, so a card shows them next to each other."""
    gap = np.full((size, 6, 3), 14, dtype=np.uint8)
    return np.hstack([np.asarray(upscale(image, size)), gap, np.asarray(upscale(cam, size))])


@st.dialog("Galaxy details", width="large")
def details(row: dict) -> None:
    a, b = st.columns(2)
    try:
        arr = galaxy_input(row)
        a.image(upscale(arr), caption="As the model sees it")
        b.image(upscale(cam_overlay(loaded, models.model_key(loaded), arr,
                                    classes.index(row["predicted"]))),
                caption=cam_caption(row["predicted"]))
    except GalaxyError as exc:
        st.error(one_line(exc))
    file_name = one_line(row.get("image"), 120).replace("`", "'")
    st.markdown(f"**SDSS objid** `{row['objid']}`  \n**Galaxy Zoo label** {row['true']}  \n"
                f"**Predicted** {row['predicted']} ({row['confidence']:.1%})  \n"
                f"**File** `{file_name}`")
    st.plotly_chart(probability_figure({c: row[f"p_{c}"] for c in classes}), key="detail_probs")


shown = rows[:int(limit)]
if shown:
    bar = st.progress(0.0, text="Computing Grad-CAM maps…")
    per_row = 3
    for start in range(0, len(shown), per_row):
        for col, row in zip(st.columns(per_row), shown[start:start + per_row]):
            with col.container(border=True):
                try:
                    arr = galaxy_input(row)
                    cam = cam_overlay(loaded, models.model_key(loaded), arr,
                                      classes.index(row["predicted"]))
                except GalaxyError as exc:
                    st.error(one_line(exc))
                else:
                    st.image(side_by_side(arr, cam), alt=f"Galaxy {row['objid']} and Grad-CAM")
                wrong = row["true"] != row["predicted"]
                mark = ":red[:material/close:]" if wrong else ":green[:material/check:]"
                st.markdown(f"{mark} labelled **{row['true']}**, predicted **{row['predicted']}** "
                            f"({row['confidence']:.0%})")
                if st.button("Details", key=f"details_{which}_{row['objid']}",
                             icon=":material/open_in_full:"):
                    details(row)
        bar.progress(min(1.0, (start + per_row) / len(shown)), text="Computing Grad-CAM maps…")
    bar.empty()
    st.caption("Each card: the galaxy as the model sees it, then the Grad-CAM of the predicted "
               "class (red: what pushed the network to its answer).")
else:
    st.info("No galaxies match these filters.")
